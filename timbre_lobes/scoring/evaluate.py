"""Scoring an exported model on any NSynth-format folder: verification EER/minDCF and family F1.

The notes are embedded by the extraction step (:mod:`timbre_lobes.serving.extract`,
cached in the output folder), classified by the model's family head, and scored
on verification trials drawn with the recipes' protocol
(:data:`timbre_lobes.scoring.verification.DEFAULT_PROTOCOL`, fixed seed), so
another model evaluated on the same folder meets the same trials. The output
folder gets the extraction's files and:

* ``enrolments.txt``, ``trials.txt``: the trial list;
* ``results.json``: EER (%), minDCF, family micro/macro-F1, confusion matrix,
  counts, the model and the machine (:func:`timbre_lobes.scoring.evaluation.results_record`);
* ``family_confusion.png``.

``recipes/NSynth/evaluate.py`` is its command line; the benchmark calls it for
the real-data scenarios.
"""

import json
import os
import time

import numpy as np
import torch

from timbre_lobes.atomic import write_json
from timbre_lobes.data.augment import span_words
from timbre_lobes.data.nsynth import resolve_note_folder
from timbre_lobes.scoring import evaluation
from timbre_lobes.scoring.verification import DEFAULT_PROTOCOL, protocol_trials, write_trials


def evaluate_model(
    model_folder,
    nsynth_folder,
    output_folder=None,
    enrol_notes=DEFAULT_PROTOCOL["enrol_notes"],
    enrolments_per_instrument=DEFAULT_PROTOCOL["enrolments_per_instrument"],
    targets_per_note=DEFAULT_PROTOCOL["targets_per_note"],
    nontargets_per_note=DEFAULT_PROTOCOL["nontargets_per_note"],
    trial_seed=DEFAULT_PROTOCOL["trial_seed"],
    batch_size=32,
    device="cpu",
    verbose=True,
    eval_seconds="model",
):
    """Scores an exported model on an NSynth-format folder and writes the result files.

    Arguments
    ---------
    model_folder : str
        An export of ``train.py`` (``timbre_lobes.serving.export``).
    nsynth_folder : str
        ``examples.json`` + ``audio/`` (or a corpus root, whose ``nsynth-test`` is used).
    output_folder : str, optional
        Where the files go; default ``evaluate-<folder name>`` beside ``model_folder``.
    enrol_notes, enrolments_per_instrument, targets_per_note, nontargets_per_note, trial_seed : int
        Verification protocol, see :func:`timbre_lobes.scoring.verification.make_trials`.
    batch_size : int
        Notes embedded at once.
    device : str
        Torch device of the model.
    verbose : bool
        Print the results table (and a progress bar while embedding, on a terminal).
    eval_seconds : float or None or "model"
        The span of each note embedded, in s from its start: ``"model"`` = the
        export's own (``eval_seconds`` of its training run; whole notes for exports
        that predate it), ``None`` = whole notes, a number = the first that many
        seconds (e.g. to see what the span does: ``benchmarks/note_span.py``).

    Returns
    -------
    dict
        The results record also written to ``results.json``.

    Raises
    ------
    timbre_lobes.data.nsynth.DataFolderError
        The folder holds no examples.json or no usable note.
    FileNotFoundError
        The model folder is missing or incomplete.
    """
    from timbre_lobes.serving.extract import extract_embeddings
    from timbre_lobes.serving.inference import TimbreEncoder

    start = time.time()
    note_folder = resolve_note_folder(nsynth_folder)
    name = os.path.basename(os.path.normpath(note_folder))
    if output_folder is None:
        output_folder = os.path.join(os.path.dirname(os.path.abspath(model_folder)), f"evaluate-{name}")
    model = TimbreEncoder.from_hparams(source=model_folder, run_opts={"device": device})
    if eval_seconds != "model":
        from timbre_lobes.training import check_eval_seconds

        model.eval_seconds = check_eval_seconds(eval_seconds)
    extraction = extract_embeddings(
        model, note_folder, output_folder, batch_size=batch_size, progress=None if verbose else False
    )
    embed_seconds = time.time() - start

    # The family label space: the model's, then any family of the data it does not know (always wrong).
    labels = list(model.family_labels)
    labels += sorted({row["family"] for row in extraction.labels} - set(labels))
    ids = [row["id"] for row in extraction.labels]
    collector = evaluation.Collector()
    embeddings = torch.from_numpy(extraction.embeddings)
    probs = model.family_probabilities(embeddings)
    family_out = np.zeros((len(ids), len(labels)), dtype=np.float32)
    family_out[:, : probs.shape[1]] = probs
    truth = torch.tensor([[labels.index(row["family"])] for row in extraction.labels])
    collector.add(ids, embeddings.unsqueeze(1), torch.from_numpy(family_out).unsqueeze(1), truth)
    instruments = {row["id"]: row["instrument"] for row in extraction.labels}

    protocol = {
        "enrol_notes": enrol_notes,
        "enrolments_per_instrument": enrolments_per_instrument,
        "targets_per_note": targets_per_note,
        "nontargets_per_note": nontargets_per_note,
        "trial_seed": trial_seed,
    }
    enrolments, trials = protocol_trials(instruments, protocol)
    write_trials(
        enrolments, trials, os.path.join(output_folder, "enrolments.txt"), os.path.join(output_folder, "trials.txt")
    )
    cohort = None
    if "instrument_head" in model.mods:  # s-norm cohort: the training instruments' prototypes
        from timbre_lobes.training import head_prototypes

        cohort = head_prototypes(model.mods["instrument_head"])
    stats = evaluation.evaluate_collected(
        collector, enrolments, trials, labels=labels, cohort=cohort, instruments=instruments
    )

    info = _model_info(model_folder)
    record = evaluation.results_record(
        stats,
        system=info.get("system", "unnamed"),
        seed=None,
        wall_seconds=time.time() - start,
        device=device,
        model=os.path.abspath(model_folder),
        model_id=model.model_id or info.get("model_id"),
        data_folder=os.path.abspath(note_folder),
        n_instruments=len(set(instruments.values())),
        n_skipped=len(extraction.skipped),
        embeddings_reused=extraction.reused,
        embed_notes_per_s=None if extraction.reused else round(len(ids) / max(embed_seconds, 1e-9), 2),
        protocol=protocol,
        eval_seconds=model.eval_seconds,
    )
    write_json(os.path.join(output_folder, "results.json"), record)
    evaluation.plot_confusion(
        record["family_confusion"],
        os.path.join(output_folder, "family_confusion.png"),
        title=f"{record['system']}: family identification ({name})",
        labels=labels,
    )
    if verbose:
        print(
            f"{record['system']} on {note_folder}: {stats['n_notes']} notes of {record['n_instruments']} "
            f"instruments, {stats['n_target_trials']} target + {stats['n_nontarget_trials']} non-target "
            f"trials, {len(extraction.skipped)} notes skipped; {span_words(model.eval_seconds)} embedded"
        )
        print(evaluation.format_results_table([record]))
        print(f"Wrote {os.path.join(output_folder, 'results.json')}")
    return record


def _model_info(model_folder):
    path = os.path.join(model_folder, "model_info.json")
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError):
        return {}
