#!/usr/bin/env python3
"""Evaluates an exported model on any NSynth-format folder: verification EER/minDCF and family F1.

    python recipes/NSynth/evaluate.py --model results/melspec/1986/model \\
        --data_folder ../shared/data/nsynth-test-dev [--output DIR] [--trial_seed 1234]

``--model`` is the folder ``train.py`` exports (``<output_folder>/model``);
``--data_folder`` is a folder holding ``examples.json`` and ``audio/`` (one split
of the official release, ``../shared/data/nsynth-test-dev``, or a rendered
corpus's ``nsynth-test``); a corpus root holding ``nsynth-test/`` is read as its
test split.

Every usable note is embedded as ``train.py`` evaluates its test split: its first
``eval_seconds`` (the model's: the span of a note its training crops came from; whole
notes for older exports; ``--eval_seconds`` to choose, ``whole`` for whole notes), no
silence trimming, by the extraction step
(:mod:`timbre_lobes.serving.extract`: ``embeddings.npy`` + ``labels.csv`` in the
output folder, reused by a second run), and classified by the model's family head. The verification trials
are drawn with :func:`timbre_lobes.scoring.verification.make_trials` (fixed seed, the
same protocol sizes as the recipe's YAMLs) and written beside the results, so
another model evaluated on the same folder with the same seed meets the same
trials. The output folder gets:

* ``enrolments.txt``, ``trials.txt``: the trial list;
* ``results.json``: EER (%), minDCF, family micro/macro-F1, confusion matrix,
  counts, the model and the machine (:func:`timbre_lobes.scoring.evaluation.results_record`);
* ``family_confusion.png``;
* ``embeddings.npy``, ``labels.csv``, ``extraction.json``: the extraction;
* ``skipped.txt``: notes left out (bad metadata, unreadable, wrong rate, silent) and why.

The default output folder is ``evaluate-<data folder name>`` beside the model
folder. :func:`timbre_lobes.scoring.evaluate.evaluate_model` does the same from Python
(the benchmark uses it).
"""

import argparse
import sys

from timbre_lobes.argtypes import note_span
from timbre_lobes.scoring.protocol import DEFAULT_PROTOCOL
from timbre_lobes.scripts import RERUN, run_script
from timbre_lobes.serving.cli import positive_int


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
    parser.add_argument(
        "--eval_seconds",
        type=note_span,
        default="model",
        help="the span of each note embedded, in s from its start: a number, 'whole', or 'model' (the default: "
        "the model's own eval_seconds)",
    )
    parser.add_argument("--batch_size", type=positive_int, default=32, help="notes embedded at once")
    parser.add_argument("--device", default="cpu")
    return parser.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    from timbre_lobes.scoring.evaluate import evaluate_model  # torch and speechbrain: only past --help

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
        eval_seconds=args.eval_seconds,
    )


if __name__ == "__main__":
    run_script(main, sys.argv[1:], "evaluate.py", errors=(FileNotFoundError, ValueError), interrupted=RERUN)
