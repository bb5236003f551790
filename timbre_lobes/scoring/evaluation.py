"""Scoring a trained system: verification EER/minDCF, family identification F1, result files."""

import os
import platform
import time

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, f1_score

from timbre_lobes.atomic import save_figure, write_json
from timbre_lobes.data.nsynth_labels import FAMILIES
from timbre_lobes.scoring.verification import eer_and_min_dcf, score_trials

#: Instrument identification on the closed set counts a note right when its instrument is among this many best.
TOP_K = 5


class Collector:
    """Accumulates per-note embeddings and family outputs (and instrument outputs, on the closed set) over batches."""

    def __init__(self):
        self.ids = []
        self.embeddings = {}
        self.family_pred = []
        self.family_true = []
        self.instrument_ranked = []
        self.instrument_true = []

    def add(self, ids, embeddings, family_out, family_labels, instrument_out=None, instrument_labels=None):
        """Stores a batch.

        Arguments
        ---------
        ids : list of str
        embeddings : torch.Tensor
            [batch, 1, emb_dim].
        family_out : torch.Tensor
            [batch, 1, n_families] scores.
        family_labels : torch.Tensor
            [batch, 1] family indices.
        instrument_out : torch.Tensor, optional
            [batch, 1, n_instruments] scores of the instrument head (notes of training instruments);
            its :data:`TOP_K` best rows are kept, best first.
        instrument_labels : torch.Tensor, optional
            [batch, 1] instrument indices (with ``instrument_out``).
        """
        self.ids.extend(ids)
        embeddings = embeddings.detach().squeeze(1).cpu()
        for note_id, emb in zip(ids, embeddings):
            self.embeddings[note_id] = emb
        self.family_pred.extend(family_out.detach().squeeze(1).argmax(dim=-1).cpu().tolist())
        self.family_true.extend(family_labels.detach().reshape(-1).cpu().tolist())
        if instrument_out is not None:
            scores = instrument_out.detach().squeeze(1).float()
            ranked = scores.topk(min(TOP_K, scores.shape[-1]), dim=-1).indices
            self.instrument_ranked.extend(ranked.cpu().tolist())
            self.instrument_true.extend(instrument_labels.detach().reshape(-1).cpu().tolist())


def family_scores(true, pred, labels=FAMILIES):
    """Family identification: micro-F1, macro-F1 over the families present, confusion matrix.

    Arguments
    ---------
    true, pred : list of int
        [notes] true and predicted family indices (rows of the family head).
    labels : sequence of str
        The family label space, index -> name (default NSynth's 11 families);
        the confusion matrix is ``len(labels)`` x ``len(labels)``.

    Returns
    -------
    dict
        ``family_micro_f1``, ``family_macro_f1``, ``families_present`` (names of
        the true families, in index order) and ``family_confusion`` (rows: true,
        columns: predicted).

    Example
    -------
    >>> s = family_scores([0, 0, 1, 2], [0, 1, 1, 2])
    >>> s["family_micro_f1"], round(s["family_macro_f1"], 3)
    (0.75, 0.778)
    >>> s = family_scores([0, 0, 1, 2], [0, 1, 1, 2], labels=["low", "mid", "high"])
    >>> s["families_present"], s["family_confusion"]
    (['low', 'mid', 'high'], [[1, 1, 0], [0, 1, 0], [0, 0, 1]])
    """
    present = sorted(set(true))
    return {
        "family_micro_f1": float(f1_score(true, pred, average="micro")),
        "family_macro_f1": float(f1_score(true, pred, labels=present, average="macro", zero_division=0)),
        "families_present": [labels[i] for i in present],
        "family_confusion": confusion_matrix(true, pred, labels=list(range(len(labels)))).tolist(),
    }


def instrument_bootstrap(
    trial_labels,
    trial_scores,
    trial_instruments,
    family_true,
    family_pred,
    note_instruments,
    n_resamples=1000,
    confidence=0.95,
    seed=0,
):
    """Confidence intervals of EER and family micro-F1 from resampling instruments (a cluster bootstrap).

    Notes of one instrument are not independent: a test set of 25 instruments
    is about 25 draws, however many notes each has. So the bootstrap resamples
    *instruments* with replacement (``scipy.stats.bootstrap``, percentile
    intervals) and counts each trial and each note as many times as its
    instrument was drawn (a trial belongs to its test note's instrument). With
    few instruments the intervals are wide; read differences inside them as noise.

    Arguments
    ---------
    trial_labels, trial_scores : array-like
        [n_trials] 0/1 and scores.
    trial_instruments : sequence of str
        [n_trials] instrument of each trial's test note.
    family_true, family_pred : sequence of int
        [n_notes] true and predicted families.
    note_instruments : sequence of str
        [n_notes] instrument of each note.
    n_resamples : int
        Bootstrap resamples.
    confidence : float
        Confidence level of the intervals.
    seed : int
        Seed of the resampling.

    Returns
    -------
    dict
        ``EER_ci`` ([low, high], percent) and ``family_micro_f1_ci`` ([low, high]),
        ``ci_level`` and ``ci_instruments`` (the number of instruments resampled).
        A resample with no target or no non-target trial is skipped; an interval
        that too few resamples could score is None (:func:`cluster_bootstrap`).

    Example
    -------
    >>> labels = np.array([1, 0, 1, 0, 1, 0]); scores = np.array([0.9, 0.1, 0.8, 0.3, 0.2, 0.7])
    >>> ci = instrument_bootstrap(labels, scores, list("aabbcc"), [0, 0, 1], [0, 0, 0], list("abc"), 200)
    >>> ci["ci_instruments"], ci["EER_ci"][0] <= 33.4 <= ci["EER_ci"][1]
    (3, True)
    """
    names = sorted(set(trial_instruments) | set(note_instruments))
    index = {name: i for i, name in enumerate(names)}
    trial_cluster = np.array([index[n] for n in trial_instruments])
    note_cluster = np.array([index[n] for n in note_instruments])
    trial_labels, trial_scores = np.asarray(trial_labels), np.asarray(trial_scores)

    def eer(counts):
        try:
            return 100.0 * eer_and_min_dcf(trial_labels, trial_scores, sample_weight=counts[trial_cluster])["eer"]
        except ValueError:  # no target or no non-target trial drawn
            return np.nan

    def micro_f1(counts):
        return float(f1_score(family_true, family_pred, average="micro", sample_weight=counts[note_cluster]))

    result = {"ci_level": confidence, "ci_instruments": len(names)}
    for key, statistic in (("EER_ci", eer), ("family_micro_f1_ci", micro_f1)):
        result[key] = cluster_bootstrap(len(names), statistic, n_resamples, confidence, seed)
    return result


def with_ci(value, ci, spec):
    """``18.36 [12.10, 25.00]``: a figure and its confidence interval (the figure alone without one).

    Example
    -------
    >>> with_ci(18.364, [12.1, 25.0], ".2f"), with_ci(0.5, None, ".3f")
    ('18.36 [12.10, 25.00]', '0.500')
    """
    return format(value, spec) if not ci else f"{value:{spec}} [{ci[0]:{spec}}, {ci[1]:{spec}}]"


def cluster_bootstrap(n_clusters, statistic, n_resamples=1000, confidence=0.95, seed=0):
    """Percentile interval of a statistic when whole clusters (instruments) are resampled.

    Each resample draws ``n_clusters`` cluster indices with replacement; the statistic is
    given how often each cluster was drawn and weights its items by it. A resample the
    statistic cannot score (NaN: e.g. no target trial drawn) is skipped, not averaged in
    (``scipy.stats.bootstrap`` would turn the whole interval into NaN, so the resampling
    is done here; the interval is the percentile interval of Efron & Tibshirani 1993).

    Arguments
    ---------
    n_clusters : int
        Clusters resampled (e.g. the test instruments).
    statistic : callable
        ``counts [n_clusters] int array -> float``; NaN for a draw it cannot score.
    n_resamples, confidence, seed
        As :func:`instrument_bootstrap`.

    Returns
    -------
    list of float or None
        ``[low, high]``; None when fewer than half of the resamples could be scored
        (too few clusters for an interval to mean anything).

    Example
    -------
    >>> values = np.array([1.0, 2.0, 3.0, 4.0])
    >>> low, high = cluster_bootstrap(4, lambda counts: float(np.average(values, weights=counts)), 500)
    >>> 1.0 <= low < 2.5 < high <= 4.0
    True
    >>> cluster_bootstrap(4, lambda counts: np.nan, 100) is None
    True
    """
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_clusters, size=(n_resamples, n_clusters))
    values = np.array([statistic(np.bincount(d, minlength=n_clusters)) for d in draws], dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) < max(1, n_resamples // 2):
        return None
    tail = 100.0 * (1.0 - confidence) / 2.0
    return [float(np.percentile(values, tail)), float(np.percentile(values, 100.0 - tail))]


def evaluate_collected(collector, enrolments, trials, labels=FAMILIES, cohort=None, instruments=None):
    """All evaluation figures from collected embeddings and the split's trial list.

    Trials whose notes were not collected (e.g. skipped at preparation) are dropped.
    EER is in percent, as the paper reports it. ``labels`` names the family
    indices (the family head's label space); they are kept as ``family_labels``.
    With a ``cohort`` ([n, emb_dim] impostor embeddings, e.g. the training
    instruments' rows of the instrument head), the adaptive-s-norm figures are
    added as ``EER_snorm``, ``minDCF_snorm`` and ``eer_threshold_snorm``. With
    ``instruments`` (note id -> instrument), the confidence intervals of
    :func:`instrument_bootstrap` are added (``EER_ci``, ``family_micro_f1_ci``, ...).
    """
    kept = [
        t for t in trials if t[2] in collector.embeddings and all(n in collector.embeddings for n in enrolments[t[1]])
    ]
    targets, scores = score_trials(collector.embeddings, enrolments, kept)
    verification = eer_and_min_dcf(targets, scores)
    stats = {
        "EER": 100.0 * verification["eer"],
        "minDCF": verification["min_dcf"],
        "eer_threshold": verification["eer_threshold"],
        "n_target_trials": int(targets.sum()),
        "n_nontarget_trials": int(len(targets) - targets.sum()),
        "n_notes": len(collector.embeddings),
    }
    if cohort is not None and len(kept):
        _, normed = score_trials(collector.embeddings, enrolments, kept, cohort=cohort)
        snorm = eer_and_min_dcf(targets, normed)
        stats.update(
            EER_snorm=100.0 * snorm["eer"], minDCF_snorm=snorm["min_dcf"], eer_threshold_snorm=snorm["eer_threshold"]
        )
    stats.update(family_scores(collector.family_true, collector.family_pred, labels=labels))
    stats["family_labels"] = list(labels)
    if instruments is not None and len(kept):
        stats.update(
            instrument_bootstrap(
                targets,
                scores,
                [instruments[t[2]] for t in kept],
                collector.family_true,
                collector.family_pred,
                [instruments[n] for n in collector.ids],
            )
        )
    return stats


def closed_set_scores(collector, family_labels=FAMILIES):
    """The closed-set figures: instrument identification by the instrument head, family F1 by the family head.

    Arguments
    ---------
    collector : Collector
        The closed-set notes, collected with their instrument outputs.
    family_labels : sequence of str
        The family head's label space (see :func:`family_scores`).

    Returns
    -------
    dict
        ``n_notes``, ``n_instruments`` (instruments among the notes),
        ``instrument_accuracy`` (top-1), ``instrument_top5_accuracy`` (the
        instrument among the head's :data:`TOP_K` best; 1 when the head has at
        most that many rows), and :func:`family_scores`' figures.

    Example
    -------
    >>> c = Collector()
    >>> c.add(["a", "b"], torch.zeros(2, 1, 4), torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]]]),
    ...       torch.tensor([[0], [1]]), torch.tensor([[[0.9, 0.1, 0.0]], [[0.9, 0.1, 0.0]]]), torch.tensor([[0], [1]]))
    >>> s = closed_set_scores(c, family_labels=["low", "high"])
    >>> s["n_notes"], s["instrument_accuracy"], s["instrument_top5_accuracy"], s["family_micro_f1"]
    (2, 0.5, 1.0, 0.5)
    """
    if len(collector.instrument_true) != len(collector.ids):
        raise ValueError("closed_set_scores needs the instrument head's outputs of every collected note")
    true = np.asarray(collector.instrument_true)
    ranked = [list(r) for r in collector.instrument_ranked]
    stats = {
        "n_notes": len(collector.ids),
        "n_instruments": len(set(true.tolist())),
        "instrument_accuracy": float(np.mean([r[0] == t for r, t in zip(ranked, true)])),
        "instrument_top5_accuracy": float(np.mean([t in r for r, t in zip(ranked, true)])),
    }
    stats.update(family_scores(collector.family_true, collector.family_pred, labels=family_labels))
    return stats


def closed_set_predictions(collector, instrument_labels, family_labels):
    """One row per closed-set note: its instrument and family, and what the heads predicted.

    Returns
    -------
    list of dict
        ``ID, instrument, predicted_instrument, top5_instruments`` (space-separated,
        best first), ``family, predicted_family``, in the order the notes were collected.
    """
    rows = []
    for i, note_id in enumerate(collector.ids):
        ranked = [instrument_labels[k] for k in collector.instrument_ranked[i]]
        rows.append(
            {
                "ID": note_id,
                "instrument": instrument_labels[collector.instrument_true[i]],
                "predicted_instrument": ranked[0],
                "top5_instruments": " ".join(ranked),
                "family": family_labels[collector.family_true[i]],
                "predicted_family": family_labels[collector.family_pred[i]],
            }
        )
    return rows


def format_closed_set(closed):
    """One line of closed-set figures (``results.json``'s ``closed_set``), or ``closed set: off`` for None.

    Example
    -------
    >>> format_closed_set(None)
    'closed set: off'
    >>> print(format_closed_set({"n_notes": 6, "n_instruments": 6, "instrument_accuracy": 0.5,
    ...     "instrument_top5_accuracy": 1.0, "family_micro_f1": 0.5, "family_macro_f1": 0.25}))
    ... # doctest: +NORMALIZE_WHITESPACE
    closed set (6 held-out notes of 6 training instruments): instrument accuracy 0.500 (top-5 1.000),
    family micro-F1 0.500, macro-F1 0.250
    """
    if closed is None:
        return "closed set: off"
    return (
        f"closed set ({closed['n_notes']} held-out notes of {closed['n_instruments']} training instruments): "
        f"instrument accuracy {closed['instrument_accuracy']:.3f} (top-5 {closed['instrument_top5_accuracy']:.3f}), "
        f"family micro-F1 {closed['family_micro_f1']:.3f}, macro-F1 {closed['family_macro_f1']:.3f}"
    )


def format_scenarios(record):
    """The open-set (test) figures and the closed-set ones (:func:`format_closed_set`) of a results record, one line.

    Example
    -------
    >>> print(format_scenarios({"n_notes": 48, "EER": 12.5, "minDCF": 0.5, "family_micro_f1": 0.4,
    ...     "family_macro_f1": 0.3, "closed_set": None}))  # doctest: +NORMALIZE_WHITESPACE
    open set (48 notes of unseen instruments): EER 12.50 %, minDCF 0.500, family micro-F1 0.400, macro-F1 0.300 |
    closed set: off
    """
    return (
        f"open set ({record['n_notes']} notes of unseen instruments): EER {record['EER']:.2f} %, "
        f"minDCF {record['minDCF']:.3f}, family micro-F1 {record['family_micro_f1']:.3f}, "
        f"macro-F1 {record['family_macro_f1']:.3f} | {format_closed_set(record.get('closed_set'))}"
    )


def machine_description(device="cpu"):
    """CPU model, cores, torch version and the accelerator, for result files."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    desc = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "device": device}
    if str(device).startswith("cuda") and torch.cuda.is_available():
        desc["gpu"] = torch.cuda.get_device_name(0)
    return desc


def results_record(stats, system, seed, wall_seconds, device="cpu", **extra):
    """One run's results as a JSON-ready dict."""
    record = {"system": system, "seed": seed, **stats, "wall_seconds": round(wall_seconds, 1)}
    record.update(extra)
    record["machine"] = machine_description(device)
    record["date"] = time.strftime("%Y-%m-%d %H:%M:%S")
    return record


def save_results(record, output_folder):
    """Writes ``results.json`` and a family confusion-matrix picture into ``output_folder``."""
    write_json(os.path.join(output_folder, "results.json"), record)
    plot_confusion(
        record["family_confusion"],
        os.path.join(output_folder, "family_confusion.png"),
        title=f"{record['system']}: family identification (test)",
        labels=record.get("family_labels", FAMILIES),
    )


def plot_confusion(matrix, path, title="", labels=FAMILIES):
    """Saves a row-normalised family confusion matrix as a PNG.

    Arguments
    ---------
    matrix : array-like
        [n_families, n_families] counts, rows true, columns predicted
        (``family_scores``'s ``family_confusion``).
    path : str
        The PNG file (written atomically).
    title : str
        The picture's title.
    labels : sequence of str
        The families' names, index order (default NSynth's 11 families).

    Raises
    ------
    ValueError
        ``matrix`` is not ``len(labels)`` x ``len(labels)``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(labels)
    if np.shape(matrix) != (len(labels), len(labels)):
        raise ValueError(
            f"the confusion matrix is {'x'.join(map(str, np.shape(matrix)))} but there are {len(labels)} family labels"
        )
    matrix = np.asarray(matrix, dtype=float)
    rows = matrix.sum(axis=1, keepdims=True)
    norm = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    fig, ax = plt.subplots(figsize=(7, 6))
    image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted family")
    ax.set_ylabel("true family")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="share of the true family's notes")
    fig.tight_layout()
    save_figure(fig, path)


def format_results_table(records):
    """A markdown table of EER, minDCF and family F1 for several runs (Table 1 of the paper)."""
    lines = [
        "| system | EER (%) | minDCF | family micro-F1 | family macro-F1 | wall (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        lines.append(
            f"| {r['system']} | {r['EER']:.2f} | {r['minDCF']:.3f} | {r['family_micro_f1']:.3f} "
            f"| {r['family_macro_f1']:.3f} | {r['wall_seconds']:.0f} |"
        )
    return "\n".join(lines)
