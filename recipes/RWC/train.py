#!/usr/bin/env python3
"""Trains a system on RWC-MDB-I categories, from scratch or fine-tuned from an NSynth-trained model.

    python recipes/RWC/train.py hparams/RWC/scratch.yaml  [--data_folder=/path/to/RWC]
    python recipes/RWC/train.py hparams/RWC/finetune.yaml [--pretrained_model=results/demo/model]

The YAMLs are overlays of a system YAML (``--system_hparams=hparams/melspec.yaml`` picks another);
without ``--data_folder`` the rendered RWC-style stand-in corpus is used (rendered on first use,
``recipes/RWC/standin.py``). The same Brain and pipeline as the NSynth recipe: the family head
predicts the RWC category, the instrument head the training instruments (category + variation);
fine-tuning starts the front end, normalisation and encoder from the exported model
(``freeze_frontend`` keeps the front end fixed, ``pretrained_lr_scale`` slows the rest). After
each epoch the test split's category micro/macro-F1 go to ``test_f1_csv``; ``compare.py`` draws
them as the paper's Figure 2.
"""

import os
import sys

from rwc_prepare import check_rwc_folder, notes_folder_for, prepare_rwc
from speechbrain.utils.distributed import run_on_main
from transfer import TestF1Log, scaled_optimizer

from timbre_lobes import training
from timbre_lobes.lobes.embed import EMBEDDING_MODULES


def main(argv):
    # The data folder, a pretrained model and the output folder's checkpoints are checked before anything is created.
    hparams, run_opts = training.load_overlay_run(argv, check_data=check_rwc_folder)
    data_folder = hparams["data_folder"]
    if not data_folder:
        from standin import ensure_standin_corpus

        data_folder = hparams["standin_folder"]
        print(f"No --data_folder given: using the RWC-style stand-in corpus in {data_folder}.")
        run_on_main(ensure_standin_corpus, args=[data_folder])
    prep = {"notes_folder": hparams["notes_folder"], "sample_rate": hparams["sample_rate"]}
    prep.update({k: hparams[f"rwc_{k}"] for k in ("valid_share", "test_share", "seed", "category_table")})
    run_on_main(
        prepare_rwc,
        args=[data_folder, hparams["save_folder"]],
        kwargs={**prep, "skip_prep": hparams["skip_prep"], "protocol": training.protocol_of(hparams)},
    )
    notes = notes_folder_for(data_folder, hparams["notes_folder"])
    datasets, labels = training.dataio_prep(hparams, notes)
    brain = training.make_brain(hparams, run_opts, labels, data_folder)
    if hparams["pretrained_model"] and hparams["pretrained_lr_scale"] != 1:
        pretrained = [hparams[name] for name in EMBEDDING_MODULES]
        brain.opt_class = scaled_optimizer(brain.opt_class, pretrained, hparams["pretrained_lr_scale"])
    brain.epoch_end_hooks = [
        TestF1Log(
            datasets["test"],
            os.path.join(hparams["save_folder"], "test.csv"),
            hparams["test_f1_csv"],
            hparams["eval_dataloader_opts"],
            hparams["system"],
            hparams["transfer"],
        )
    ]
    brain.fit(
        brain.hparams.epoch_counter,
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=training.train_loader_options(hparams, datasets["train"]),
        valid_loader_kwargs=hparams["eval_dataloader_opts"],
    )
    brain.evaluate(datasets["test"], min_key="EER", test_loader_kwargs=hparams["eval_dataloader_opts"])
    training.finish_run(brain, hparams, labels, data_folder, valid_set=datasets["valid"], transfer=hparams["transfer"])
    return brain


if __name__ == "__main__":
    training.run_script(main, sys.argv[1:], "train.py")
