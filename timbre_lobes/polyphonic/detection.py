"""Scoring polyphonic mixtures: instrument detection by enrolment and family presence, by number of sources.

Instrument detection is target-speaker detection in overlapped speech, for
instruments: a trial pairs a mixture with an enrolled instrument (the mean
embedding of a few of its isolated notes) and asks "is it playing here?". Targets
are mixtures holding the instrument, non-targets mixtures that do not; the
figures are the EER and minDCF of speaker verification
(:func:`timbre_lobes.scoring.verification.eer_and_min_dcf`), overall and for
mixtures of each number of sources. Family presence is multi-label
classification, scored with scikit-learn's F1 and average precision (mAP).

A mixture is scored through windows: each window (a [window, emb] row of
embeddings) is compared with each enrolment and the best window counts
(:func:`window_scores`), so an instrument that plays in one part of the clip is found there.
"""

import numpy as np
from sklearn.metrics import average_precision_score, f1_score

from timbre_lobes.scoring.evaluation import cluster_bootstrap
from timbre_lobes.scoring.verification import eer_and_min_dcf


def _unit(x):
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def enrolment_embeddings(note_embeddings):
    """One enrolment embedding per instrument: the mean of its notes' length-normalised embeddings.

    Arguments
    ---------
    note_embeddings : dict
        ``{instrument: [n_notes, emb] array}``.

    Returns
    -------
    (list of str, np.ndarray)
        The instruments (sorted) and their ``[n_instruments, emb]`` unit-length embeddings.
    """
    names = sorted(note_embeddings)
    if not names:
        raise ValueError("no enrolment notes")
    return names, _unit(np.stack([_unit(note_embeddings[n]).mean(axis=0) for n in names]))


def window_scores(windows, enrolled):
    """Cosine scores of one mixture against enrolments, the best window for each.

    Arguments
    ---------
    windows : np.ndarray
        ``[n_windows, emb]`` embeddings of the mixture's windows (one row: the whole clip).
    enrolled : np.ndarray
        ``[n_instruments, emb]`` enrolment embeddings.

    Returns
    -------
    np.ndarray
        ``[n_instruments]``: for each enrolment, the highest cosine over the windows.

    Example
    -------
    >>> window_scores(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[0.0, 2.0]]))
    array([1.])
    """
    windows = _unit(np.atleast_2d(windows))
    return (windows @ _unit(np.atleast_2d(enrolled)).T).max(axis=0)


def presence_matrix(mixtures, names, field):
    """``[n_mixtures, len(names)]`` 0/1 matrix: is ``names[j]`` among mixture ``i``'s sources' ``field``?"""
    index = {name: j for j, name in enumerate(names)}
    truth = np.zeros((len(mixtures), len(names)), dtype=np.int64)
    for i, mixture in enumerate(mixtures):
        for source in mixture["sources"]:
            if source[field] in index:
                truth[i, index[source[field]]] = 1
    return truth


def _by_count(mixtures):
    counts = np.array([m["n_sources"] for m in mixtures])
    return [(int(n), counts == n) for n in sorted(set(counts.tolist()))]


def detection_scores(scores, truth, mixtures):
    """EER and minDCF of instrument-presence trials, overall and by number of sources.

    Arguments
    ---------
    scores : np.ndarray
        ``[n_mixtures, n_instruments]`` trial scores (every mixture against every enrolment).
    truth : np.ndarray
        The same shape, 1 where the enrolled instrument plays in the mixture.
    mixtures : list of dict
        The mixtures (their ``n_sources``), in the rows' order.

    Returns
    -------
    dict
        ``{"all": stats, "by_sources": {n: stats}}``; stats = ``EER`` (%), ``minDCF``
        (p_target 0.01, normalised), ``threshold`` (the EER threshold), ``n_targets``,
        ``n_nontargets``. A subset without both kinds of trial gets ``None``.
    """

    def stats(mask):
        labels, values = truth[mask].ravel(), scores[mask].ravel()
        if labels.size == 0 or labels.min() == labels.max():
            return None
        found = eer_and_min_dcf(labels, values)
        return {
            "EER": 100.0 * found["eer"],
            "minDCF": found["min_dcf"],
            "threshold": found["eer_threshold"],
            "n_targets": int(labels.sum()),
            "n_nontargets": int(labels.size - labels.sum()),
        }

    everything = np.ones(len(mixtures), dtype=bool)
    return {"all": stats(everything), "by_sources": {n: stats(mask) for n, mask in _by_count(mixtures)}}


def best_threshold(truth, scores):
    """The decision threshold on ``scores`` that maximises micro-F1 against ``truth`` (multi-label)."""
    candidates = np.unique(np.quantile(scores, np.linspace(0.0, 1.0, 201)))
    f1s = [f1_score(truth, scores >= t, average="micro", zero_division=0) for t in candidates]
    return float(candidates[int(np.argmax(f1s))])


def family_presence_scores(scores, truth, mixtures, threshold, labels):
    """Multi-label family presence: F1 at ``threshold`` and mAP, overall and by number of sources.

    Arguments
    ---------
    scores : np.ndarray
        ``[n_mixtures, n_families]`` presence scores (higher = more likely present).
    truth : np.ndarray
        The same shape, 1 where a note of the family plays.
    mixtures : list of dict
        The mixtures, in the rows' order.
    threshold : float
        A family is called present when its score is at least this.
    labels : list of str
        The families, in the columns' order.

    Returns
    -------
    dict
        ``{"all": stats, "by_sources": {n: stats}, "threshold": threshold}``; stats =
        ``micro_f1``, ``macro_f1``, ``micro_mAP``, ``macro_mAP`` (the macro figures over
        the families present at least once in the subset) and ``per_family_f1``.
    """
    decisions = scores >= threshold

    def stats(mask):
        t, s, d = truth[mask], scores[mask], decisions[mask]
        present = t.sum(axis=0) > 0
        if not present.any():
            return None
        return {
            "micro_f1": float(f1_score(t, d, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(t[:, present], d[:, present], average="macro", zero_division=0)),
            "micro_mAP": float(average_precision_score(t, s, average="micro")),
            "macro_mAP": float(average_precision_score(t[:, present], s[:, present], average="macro")),
            "per_family_f1": {
                labels[j]: float(f1_score(t[:, j], d[:, j], zero_division=0)) for j in np.flatnonzero(present)
            },
        }

    everything = np.ones(len(mixtures), dtype=bool)
    return {
        "all": stats(everything),
        "by_sources": {n: stats(mask) for n, mask in _by_count(mixtures)},
        "threshold": float(threshold),
    }


def rates_at(scores, truth, threshold):
    """Miss and false-alarm rates (%) of the decisions ``scores >= threshold``.

    Example
    -------
    >>> rates_at(np.array([0.9, 0.2, 0.6, 0.1]), np.array([1, 1, 0, 0]), 0.5)
    {'threshold': 0.5, 'miss_rate': 50.0, 'false_alarm_rate': 50.0}
    """
    scores, truth = np.asarray(scores).ravel(), np.asarray(truth).ravel().astype(bool)
    decided = scores >= threshold
    miss = 100.0 * float((~decided[truth]).mean()) if truth.any() else float("nan")
    false_alarm = 100.0 * float(decided[~truth].mean()) if (~truth).any() else float("nan")
    return {"threshold": float(threshold), "miss_rate": miss, "false_alarm_rate": false_alarm}


def instrument_intervals(
    scores,
    truth,
    names,
    family_scores,
    family_truth,
    family_threshold,
    mixtures,
    n_resamples=1000,
    confidence=0.95,
    seed=0,
):
    """Confidence intervals of the overall detection EER and family micro-F1 / micro-mAP, instruments resampled.

    Mixtures of one note set share its few instruments (the real NSynth sample has 25),
    so the mixtures are not independent draws; as :func:`timbre_lobes.scoring.evaluation.
    instrument_bootstrap` does for single notes, the *instruments* are resampled
    (:func:`~timbre_lobes.scoring.evaluation.cluster_bootstrap`). A detection trial
    belongs to its enrolled instrument and counts as often as that instrument was drawn.
    A mixture counts the product of its instruments' counts (as the pigeonhole
    bootstrap weights an item of crossed factors, Owen 2007): it is present in a
    resample only when all its instruments are, so the family intervals are wide.

    Arguments
    ---------
    scores, truth : np.ndarray
        ``[n_mixtures, n_instruments]`` detection scores and 0/1 truth (columns: ``names``).
    names : list of str
        The enrolled instruments.
    family_scores, family_truth : np.ndarray
        ``[n_mixtures, n_families]`` presence scores and 0/1 truth.
    family_threshold : float
        The presence decision threshold (F1).
    mixtures : list of dict
        The mixtures (their sources' ``instrument``), in the rows' order.
    n_resamples, confidence, seed
        As :func:`~timbre_lobes.scoring.evaluation.instrument_bootstrap`.

    Returns
    -------
    dict
        ``EER_ci`` ([low, high], %), ``family_micro_f1_ci``, ``family_micro_mAP_ci``,
        ``ci_level``, ``ci_instruments``. An interval too few resamples could score
        (a few instruments, every mixture dropped) is None.
    """
    statistics, n_clusters = _resampled_statistics(
        scores, truth, names, family_scores, family_truth, family_threshold, mixtures
    )
    result = {"ci_level": confidence, "ci_instruments": n_clusters}
    for key, statistic in zip(("EER_ci", "family_micro_f1_ci", "family_micro_mAP_ci"), statistics):
        result[key] = cluster_bootstrap(n_clusters, statistic, n_resamples, confidence, seed)
    return result


def _clusters(names, mixtures):
    """Each enrolled instrument's cluster index, and each mixture's instruments' (an instrument without
    enrolment still clusters its mixtures)."""
    index = {name: j for j, name in enumerate(names)}
    for mixture in mixtures:
        for source in mixture["sources"]:
            index.setdefault(source["instrument"], len(index))
    return len(index), [[index[s["instrument"]] for s in m["sources"]] for m in mixtures]


def _resampled_statistics(scores, truth, names, family_scores, family_truth, family_threshold, mixtures):
    """The EER, family micro-F1 and micro-mAP as functions of the instruments' resample counts."""
    n_clusters, members = _clusters(names, mixtures)
    truth = np.asarray(truth)
    labels, values = truth.ravel(), np.asarray(scores).ravel()
    trial_cluster = np.tile(np.arange(truth.shape[1]), truth.shape[0])  # each trial's enrolled instrument
    decisions = np.asarray(family_scores) >= family_threshold

    def eer(counts):
        weight = counts[trial_cluster]
        kept = weight > 0
        if labels[kept].min() == labels[kept].max():
            return np.nan
        return 100.0 * eer_and_min_dcf(labels[kept], values[kept], sample_weight=weight[kept])["eer"]

    def mixture_weights(counts):
        return np.array([np.prod(counts[m]) for m in members], dtype=np.float64)

    def micro_f1(counts):
        weight = mixture_weights(counts)
        if not weight.any():
            return np.nan
        return float(f1_score(family_truth, decisions, average="micro", sample_weight=weight, zero_division=0))

    def micro_map(counts):
        weight = mixture_weights(counts)
        if not weight.any():
            return np.nan
        return float(average_precision_score(family_truth, family_scores, average="micro", sample_weight=weight))

    return (eer, micro_f1, micro_map), n_clusters


def paired_differences(first, second, truth, names, family_truth, mixtures, n_resamples=1000, confidence=0.95, seed=0):
    """Second model minus first on the same mixtures: detection EER, family micro-F1 and micro-mAP, paired intervals.

    Both models' figures are computed on each resample of the instruments (as
    :func:`instrument_intervals` draws them), so what the two share (which instruments
    are hard) cancels out of the difference; a 95 % interval that excludes 0 says the
    difference is larger than the draw of instruments explains.

    Arguments
    ---------
    first, second : dict
        Each ``{"detection": [n_mixtures, n_instruments] scores, "family": [n_mixtures,
        n_families] presence scores, "family_threshold": float}``.
    truth : np.ndarray
        ``[n_mixtures, n_instruments]`` 0/1 detection truth (columns: ``names``).
    names : list of str
        The enrolled instruments.
    family_truth : np.ndarray
        ``[n_mixtures, n_families]`` 0/1.
    mixtures : list of dict
        The mixtures (their sources' ``instrument``), in the rows' order.
    n_resamples, confidence, seed
        As :func:`instrument_intervals`.

    Returns
    -------
    dict
        ``EER``, ``family_micro_f1``, ``family_micro_mAP``: each ``{"difference": second
        - first, "ci": [low, high] or None}``; ``ci_level``, ``ci_instruments``.

    Example
    -------
    >>> mixtures = [{"sources": [{"instrument": "a"}]}, {"sources": [{"instrument": "b"}]}] * 4
    >>> truth = np.array([[1, 0], [0, 1]] * 4)
    >>> model = {"detection": truth + 0.1, "family": truth * 1.0, "family_threshold": 0.5}
    >>> found = paired_differences(model, model, truth, ["a", "b"], truth, mixtures, n_resamples=100)
    >>> found["EER"]["difference"], found["EER"]["ci"]
    (0.0, [0.0, 0.0])
    """
    both = [
        _resampled_statistics(m["detection"], truth, names, m["family"], family_truth, m["family_threshold"], mixtures)
        for m in (first, second)
    ]
    n_clusters = both[0][1]
    full = np.ones(n_clusters, dtype=np.int64)
    result = {"ci_level": confidence, "ci_instruments": n_clusters}
    for k, key in enumerate(("EER", "family_micro_f1", "family_micro_mAP")):
        a, b = both[0][0][k], both[1][0][k]

        def difference(counts, a=a, b=b):
            return b(counts) - a(counts)

        result[key] = {
            "difference": float(difference(full)),
            "ci": cluster_bootstrap(n_clusters, difference, n_resamples, confidence, seed),
        }
    return result
