#!/usr/bin/env python3
"""Scores an exported model on mixtures of unseen instruments: detection by enrolment, family presence.

    python recipes/Polyphonic/evaluate.py hparams/poly_baseline.yaml --model results/demo/model \\
        --data_folder corpora/rendered-default [--real_folder ../shared/data/nsynth-test-dev] [--key=value ...]

Any export works: a single-note model (the baseline) or one trained on mixtures by
``recipes/Polyphonic/train.py``. The validation mixtures (the corpus's nsynth-valid)
choose the family-presence thresholds; the test mixtures (nsynth-test: instruments
never seen in training) and the real notes' mixtures are scored with them. Writes
``polyphonic.json``, ``polyphonic.md``, ``by_sources.png`` and each set's
``<set>_mixtures.json`` manifest to the output folder. See recipes/Polyphonic/README.md.
"""

import sys

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml

from timbre_lobes.polyphonic.evaluate import check_config, evaluate_on_mixtures, mixture_folders
from timbre_lobes.scripts import RERUN, run_script
from timbre_lobes.serving.inference import TimbreEncoder, check_model_folder


def main(argv):
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    with open(hparams_file) as handle:
        hparams = load_hyperpyyaml(handle, overrides)
    # Every input is checked before anything is written: a wrong path or setting leaves nothing behind.
    check_config(hparams)
    check_model_folder(hparams["model"])
    folders = mixture_folders(hparams["data_folder"], hparams["real_folder"])
    model = TimbreEncoder.from_hparams(source=hparams["model"], run_opts={"device": run_opts.get("device", "cpu")})
    scored, summary = evaluate_on_mixtures(model, folders, hparams["output_folder"], hparams)
    print(summary)
    print(f"\nPolyphonic results in {hparams['output_folder']}")
    return scored


if __name__ == "__main__":
    run_script(main, sys.argv[1:], "evaluate.py", errors=(FileNotFoundError, ValueError), interrupted=RERUN)
