#!/usr/bin/env python3
"""Evaluates an exported model on any NSynth-format folder: verification EER/minDCF and family F1.

    python recipes/NSynth/evaluate.py --model results/melspec/1986/model \\
        --data_folder ../shared/data/nsynth-test-dev [--output DIR] [--trial_seed 1234]

``--model`` is the folder ``train.py`` exports (``<output_folder>/model``);
``--data_folder`` is a folder holding ``examples.json`` and ``audio/`` (one split
of the official release, ``../shared/data/nsynth-test-dev``, or a rendered
corpus's ``nsynth-test``); a corpus root holding ``nsynth-test/`` is read as its
test split.

Every usable note is embedded whole, as ``train.py`` evaluates its test split
(no silence trimming, no crop), by :class:`timbre_lobes.serving.inference.TimbreEncoder`
in batches, and classified by the model's family head. The verification trials
are drawn with :func:`timbre_lobes.scoring.verification.make_trials` (fixed seed, the
same protocol sizes as the recipe's YAMLs) and written beside the results, so
another model evaluated on the same folder with the same seed meets the same
trials. The output folder gets:

* ``enrolments.txt``, ``trials.txt``: the trial list;
* ``results.json``: EER (%), minDCF, family micro/macro-F1, confusion matrix,
  counts, the model and the machine (:func:`timbre_lobes.scoring.evaluation.results_record`);
* ``family_confusion.png``;
* ``skipped.txt``: notes left out (unreadable, wrong rate, silent) and why.

The default output folder is ``evaluate-<data folder name>`` beside the model
folder. :func:`evaluate_model` does the same from Python (``benchmark.py`` uses it).
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

from timbre_lobes.atomic import write_json
from timbre_lobes.data.nsynth_labels import FAMILIES, SAMPLE_RATE
from timbre_lobes.scoring import evaluation
from timbre_lobes.scoring.verification import make_trials, write_trials

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nsynth_prepare import DataFolderError, read_nsynth_folder, write_report  # noqa: E402

#: The recipe YAMLs' verification protocol (``enrol_notes`` ... ``trial_seed``).
DEFAULT_PROTOCOL = {
    "enrol_notes": 5,
    "enrolments_per_instrument": 20,
    "targets_per_note": 20,
    "nontargets_per_note": 20,
    "trial_seed": 1234,
}


def resolve_note_folder(data_folder):
    """The folder holding ``examples.json``: ``data_folder`` itself or its ``nsynth-test/``.

    Raises
    ------
    DataFolderError
        Neither holds an ``examples.json``.
    """
    if os.path.isfile(os.path.join(data_folder, "examples.json")):
        return data_folder
    test = os.path.join(data_folder, "nsynth-test")
    if os.path.isfile(os.path.join(test, "examples.json")):
        print(f"{data_folder} is a corpus root: evaluating its test split {test}")
        return test
    raise DataFolderError(
        f"{data_folder!r} holds no examples.json (nor nsynth-test/examples.json); expected an "
        "NSynth-format folder: examples.json + audio/<note_str>.wav"
    )


def evaluate_model(
    model_folder,
    nsynth_folder,
    output_folder=None,
    enrol_notes=5,
    enrolments_per_instrument=20,
    targets_per_note=20,
    nontargets_per_note=20,
    trial_seed=1234,
    batch_size=32,
    device="cpu",
    verbose=True,
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
        Print the results table.

    Returns
    -------
    dict
        The results record also written to ``results.json``.
    """
    start = time.time()
    note_folder = resolve_note_folder(nsynth_folder)
    name = os.path.basename(os.path.normpath(note_folder))
    if output_folder is None:
        output_folder = os.path.join(os.path.dirname(os.path.abspath(model_folder)), f"evaluate-{name}")
    os.makedirs(output_folder, exist_ok=True)

    problems = []
    rows = read_nsynth_folder(note_folder, note_folder, SAMPLE_RATE, problems)
    if not rows:
        raise DataFolderError(f"no usable notes in {note_folder}")

    from timbre_lobes.serving.inference import TimbreEncoder

    model = TimbreEncoder.from_hparams(source=model_folder, run_opts={"device": device})
    # Whole notes, as train.py's evaluation reads them: no leading-silence trim, no crop.
    model.max_seconds = None
    model.trim_db = None
    model.long_audio = "excerpt"
    columns = [FAMILIES.index(label) for label in model.family_labels]

    collector = evaluation.Collector()
    by_path = {os.path.join(note_folder, "audio", f"{row['ID']}.wav"): row for row in rows}
    batch = []
    embed_start = time.time()

    def flush():
        embeddings = torch.from_numpy(np.stack([e for _, e in batch]))
        probs = torch.from_numpy(model.family_probabilities(embeddings))
        family_out = torch.zeros(len(batch), len(FAMILIES))
        family_out[:, columns] = probs
        labels = torch.tensor([[row["family_id"]] for row, _ in batch])
        collector.add([row["ID"] for row, _ in batch], embeddings.unsqueeze(1), family_out.unsqueeze(1), labels)
        batch.clear()

    for result in model.iter_embed_files(list(by_path), batch_size=batch_size):
        row = by_path[result.path]
        if result.error is not None:
            problems.append((row["ID"], result.path, str(result.error)))
            continue
        batch.append((row, result.embedding))
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    embed_seconds = time.time() - embed_start
    instruments = {row["ID"]: row["instrument"] for row in rows if row["ID"] in collector.embeddings}

    enrolments, trials = make_trials(
        instruments, enrol_notes, enrolments_per_instrument, targets_per_note, nontargets_per_note, trial_seed
    )
    write_trials(
        enrolments, trials, os.path.join(output_folder, "enrolments.txt"), os.path.join(output_folder, "trials.txt")
    )
    stats = evaluation.evaluate_collected(collector, enrolments, trials)
    write_report(problems, os.path.join(output_folder, "skipped.txt"))

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
        n_skipped=len(problems),
        embed_notes_per_s=round(len(collector.embeddings) / max(embed_seconds, 1e-9), 2),
        protocol={
            "enrol_notes": enrol_notes,
            "enrolments_per_instrument": enrolments_per_instrument,
            "targets_per_note": targets_per_note,
            "nontargets_per_note": nontargets_per_note,
            "trial_seed": trial_seed,
        },
    )
    write_json(os.path.join(output_folder, "results.json"), record)
    evaluation.plot_confusion(
        record["family_confusion"],
        os.path.join(output_folder, "family_confusion.png"),
        title=f"{record['system']}: family identification ({name})",
    )
    if verbose:
        print(
            f"{record['system']} on {note_folder}: {stats['n_notes']} notes of {record['n_instruments']} "
            f"instruments, {stats['n_target_trials']} target + {stats['n_nontarget_trials']} non-target "
            f"trials, {len(problems)} notes skipped"
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


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model",
        "--source",
        dest="model",
        required=True,
        help="exported model folder (train.py's <output_folder>/model)",
    )
    parser.add_argument("--data_folder", required=True, help="NSynth-format folder: examples.json + audio/")
    parser.add_argument(
        "--output", default=None, help="output folder (default: evaluate-<data folder name> beside the model)"
    )
    parser.add_argument("--trial_seed", type=int, default=DEFAULT_PROTOCOL["trial_seed"])
    for key in ("enrol_notes", "enrolments_per_instrument", "targets_per_note", "nontargets_per_note"):
        parser.add_argument(f"--{key}", type=positive_int, default=DEFAULT_PROTOCOL[key])
    parser.add_argument("--batch_size", type=positive_int, default=32, help="notes embedded at once")
    parser.add_argument("--device", default="cpu")
    return parser.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    return evaluate_model(
        args.model,
        args.data_folder,
        args.output,
        enrol_notes=args.enrol_notes,
        enrolments_per_instrument=args.enrolments_per_instrument,
        targets_per_note=args.targets_per_note,
        nontargets_per_note=args.nontargets_per_note,
        trial_seed=args.trial_seed,
        batch_size=args.batch_size,
        device=args.device,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
