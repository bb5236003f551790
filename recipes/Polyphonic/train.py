#!/usr/bin/env python3
"""Trains a system on mixtures of notes to hear which instruments and families play, then scores it.

    python recipes/Polyphonic/train.py hparams/poly_transMel.yaml [--data_folder=/path/to/nsynth] \\
        [--pretrained_model=results/demo/model] [--key=value ...]

The YAML is an overlay of a system YAML (``system_hparams``). The corpus is prepared
as for the NSynth recipe (instrument-disjoint splits); every epoch draws new training
mixtures of 1 to ``max_sources`` training instruments, and the heads learn each
instrument's and family's presence (binary cross-entropy). Fixed validation mixtures
of the validation instruments, scored by enrolment detection (EER), select the
checkpoint. The best one is exported (``<output_folder>/model``, with
``family_output: sigmoid`` and, as ``detection_threshold``, the EER point of the
validation mixtures scored as ``evaluate.py`` and ``python -m timbre_lobes detect``
score them) and scored on the test and real mixtures as ``evaluate.py`` scores the
single-note baseline (``<output_folder>/mixtures/``; the same ``mixture_seed`` gives
the same mixtures). See recipes/Polyphonic/README.md.
"""

import csv
import os
import sys

from speechbrain.utils.distributed import if_main_process, run_on_main

# The corpus is prepared exactly as the NSynth recipe prepares it.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "NSynth"))
from nsynth_prepare import prepare_nsynth  # noqa: E402

from timbre_lobes import training  # noqa: E402
from timbre_lobes.data.nsynth import check_corpus  # noqa: E402
from timbre_lobes.polyphonic.evaluate import (  # noqa: E402
    check_config,
    evaluate_on_mixtures,
    mixture_folders,
    mixture_set,
    valid_set_name,
)
from timbre_lobes.polyphonic.mixtures import resolve_wav  # noqa: E402
from timbre_lobes.polyphonic.training import (  # noqa: E402
    COLLATE,
    MixtureDataset,
    PolyphonicBrain,
    add_slot_head,
    check_slot_settings,
    freeze_single_note_model,
)
from timbre_lobes.serving.export import export_model, family_scale  # noqa: E402
from timbre_lobes.serving.inference import TimbreEncoder  # noqa: E402
from timbre_lobes.serving.inference_yaml import export_span  # noqa: E402


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def load_teacher(folder, device, emb_dim):
    """The embedding modules of an exported single-note model, frozen, for the distillation loss.

    Raises
    ------
    FileNotFoundError
        No teacher_model, or not an export.
    ValueError
        Its embeddings are not ``emb_dim``-dimensional like the model trained here.
    """
    if not folder:
        raise FileNotFoundError("distill_weight needs a teacher_model (an exported single-note model)")
    model = TimbreEncoder.from_hparams(source=folder, run_opts={"device": str(device)})
    if model._emb_dim() != emb_dim:
        raise ValueError(f"teacher_model {folder} gives {model._emb_dim()}-d embeddings, this model {emb_dim}-d")
    teacher = model.mods
    for param in teacher.parameters():
        param.requires_grad_(False)
    return teacher.eval()


def main(argv):
    hparams, run_opts = training.load_overlay_run(
        argv, check_data=check_corpus, default_data_key="default_corpus_folder"
    )
    check_config(hparams)  # the evaluation settings, before anything is prepared
    check_slot_settings(hparams)  # and the slot head's
    data_folder = training.resolve_data_folder(hparams)
    folders = mixture_folders(data_folder, hparams["real_folder"])
    run_on_main(prepare_nsynth, kwargs=training.nsynth_prepare_options(hparams, data_folder))
    # Isolated notes: the validation notes give the export's note-to-note verification threshold.
    notes, labels = training.dataio_prep(hparams, data_folder)
    train_rows = read_rows(os.path.join(hparams["save_folder"], "train.csv"))
    train_set = MixtureDataset(
        labels,
        data_folder,
        notes=train_rows,
        n_per_epoch=hparams["mixtures_per_epoch"],
        settings=hparams["train_sampler"],
        seed=hparams["seed"],
        sample_rate=hparams["sample_rate"],
        parts=bool(hparams["distill_weight"] or hparams["slot_weight"]),
    )
    valid_mixtures, valid_enrol, valid_root = mixture_set(
        folders[valid_set_name(folders)],
        os.path.join(hparams["save_folder"], "valid_mixtures.json"),
        hparams["valid_per_count"],
        hparams["sampler"],
        n_enrol=hparams["n_enrol"],
        seed=hparams["mixture_seed"],
    )
    valid_set = MixtureDataset(labels, valid_root, mixtures=valid_mixtures, sample_rate=hparams["sample_rate"])
    add_slot_head(hparams)  # before make_brain: the checkpoints' signature holds its sizes
    hparams["family_logit_scale"] = family_scale(hparams)
    if hparams["freeze_encoder"]:  # before the Brain counts its trainable parameters
        training.add_heads(hparams, labels)
        freeze_single_note_model(hparams["modules"])
    brain = training.make_brain(hparams, run_opts, labels, data_folder, brain_class=PolyphonicBrain)
    brain.freeze_encoder = bool(hparams["freeze_encoder"])
    if hparams["slot_weight"]:  # the targets: the frozen single-note model's own embeddings of the notes
        brain.teacher = brain.modules
    elif hparams["distill_weight"]:
        brain.teacher = load_teacher(hparams["teacher_model"], brain.device, hparams["emb_dim"])
    brain.train_mixtures = train_set
    brain.valid_mixtures = valid_mixtures
    brain.valid_enrolment = {n: [resolve_wav(r["wav"], valid_root) for r in rows] for n, rows in valid_enrol.items()}
    brain.fit(
        brain.hparams.epoch_counter,
        train_set,
        valid_set,
        train_loader_kwargs={**hparams["train_dataloader_opts"], **COLLATE},
        valid_loader_kwargs={**hparams["eval_dataloader_opts"], **COLLATE},
    )
    best = brain.checkpointer.recover_if_possible(min_key="EER")
    if best is None:
        raise FileNotFoundError(f"no checkpoint in {hparams['save_folder']}: training saved none")
    if not if_main_process():  # under DDP the export and its evaluation are the main process's alone
        return None
    export_folder = hparams.get("export_folder") or os.path.join(hparams["output_folder"], "model")
    sampler = hparams["train_sampler"]
    if hparams["freeze_encoder"]:
        start = f"Built on `{hparams['pretrained_model']}` (kept as it is) and trained"
    else:
        start = f"Fine-tuned from `{hparams['pretrained_model']}`" if hparams["pretrained_model"] else "Trained"
    epochs = hparams["number_of_epochs"]
    results = {
        "data_folder": os.path.abspath(data_folder),
        "valid_mixtures": dict(best.meta),
        "training": f"{start} by `recipes/Polyphonic/train.py` on mixtures "
        f"of {sampler['min_sources']} to {sampler['max_sources']} notes of distinct training instruments "
        f"({hparams['mixtures_per_epoch']} new mixtures per epoch, {epochs} epoch{'s' if epochs != 1 else ''}): "
        f"instrument presence (weight {hparams['instrument_weight']}), family presence (weight "
        f"{hparams['family_weight']}), distillation (weight {hparams['distill_weight']}), slot embeddings "
        f"(weight {hparams['slot_weight']}); "
        + (
            f"the single-note model frozen, a slot head of {hparams['n_slots']} embeddings per mixture trained on it"
            if hparams["freeze_encoder"]
            else f"front end {'frozen' if hparams['freeze_frontend'] else 'trained'}"
        )
        + f". The checkpoint of lowest detection EER on "
        f"the validation mixtures in training's own pass ({best.meta['EER']:.2f} %) was exported; its scores on "
        "mixtures of unseen instruments, through this export, are in `mixtures/polyphonic.md` of the training "
        "output folder (the single-note test below was not run).",
    }
    out = os.path.join(hparams["output_folder"], "mixtures")
    config = {**hparams, "model": export_folder}

    # Single notes (the enrolments) are embedded over the span the pretrained model embeds them.
    span = export_span(hparams["pretrained_model"]) if hparams["pretrained_model"] else {}

    def export(settings):
        export_model(
            hparams,
            brain,
            labels["instrument"],
            results,
            export_folder,
            valid_set=notes["valid"],
            family_encoder=labels["family"],
            extra_settings={
                **span,
                "family_output": hparams["family_output"],
                "detection_window_seconds": 0.0,
                **settings,
            },
        )
        return TimbreEncoder.from_hparams(source=export_folder, run_opts={"device": str(brain.device)})

    # The detection threshold is the EER point of the validation mixtures scored as `detect` and
    # evaluate.py score them (the export's audio path, whole clips), not of training's own validation
    # pass: export, score the validation mixtures, then export again with that threshold.
    model = export({})
    valid_set = valid_set_name(folders)
    valid_scored, _ = evaluate_on_mixtures(model, {valid_set: folders[valid_set]}, out, config)
    threshold = valid_scored[valid_set]["clip"]["detection"]["all"]["threshold"]
    model = export({"detection_threshold": float(threshold)})
    print(f"Exported the model to {export_folder} (validation mixtures: EER {best.meta['EER']:.2f} % in training)")
    scored, summary = evaluate_on_mixtures(model, folders, out, config)
    print(summary)
    return scored


if __name__ == "__main__":
    training.run_script(main, sys.argv[1:], "train.py", errors=(training.RunFolderError, FileNotFoundError, ValueError))
