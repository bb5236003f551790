#!/usr/bin/env python3
"""Trains an instrument-embedding system on NSynth-format data and evaluates it.

    python recipes/NSynth/train.py hparams/transMel.yaml [--data_folder=/path/to/nsynth]

The YAML picks the system (front end, encoder, heads, margins); this script is
the same for all of them. Training learns the instrument and family heads
jointly; each epoch ends with open-set instrument verification (EER) on the
validation instruments, which selects the checkpoint kept as best. The run ends
with the test evaluation (verification EER/minDCF on the test instruments,
family identification micro/macro-F1) and the closed-set one (instrument
identification and family F1 on held-out notes of the training instruments,
``closed_set_share``), saved to results.json, and the export of
the inference model folder. ``--pretrained_model=<export folder>`` starts from a
trained model's front end and encoder (``--freeze_frontend=True`` keeps the
front end fixed).

Multi-process training: ``torchrun --nproc_per_node=N recipes/NSynth/train.py <yaml>``.
"""

import sys

from nsynth_prepare import prepare_nsynth
from speechbrain.utils.distributed import run_on_main

from timbre_lobes import training
from timbre_lobes.data.nsynth import check_corpus


def main(argv):
    # The data folder and a pretrained model are checked before anything is created.
    hparams, run_opts = training.load_run(argv, check_data=check_corpus)
    data_folder = training.resolve_data_folder(hparams)
    run_on_main(prepare_nsynth, kwargs=training.nsynth_prepare_options(hparams, data_folder))
    datasets, labels = training.dataio_prep(hparams, data_folder)
    brain = training.make_brain(hparams, run_opts, labels, data_folder)
    brain.fit(
        brain.hparams.epoch_counter,
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=training.train_loader_options(hparams, datasets["train"]),
        valid_loader_kwargs=hparams["eval_dataloader_opts"],
    )
    # The closed set (held-out notes of the training instruments), then the test split (unseen instruments).
    training.evaluate(brain, datasets, hparams["eval_dataloader_opts"])
    training.finish_run(brain, hparams, labels, data_folder, valid_set=datasets["valid"])
    return brain


if __name__ == "__main__":
    training.run_script(main, sys.argv[1:], "train.py")
