#!/usr/bin/env python3
"""Which threshold and which s-norm cohort mean the same on real notes as on rendered ones? (finding 14)

    python docs/experiments/calibration.py MODEL --corpus corpora/soundfont-default \\
        --real ../shared/data/nsynth-test-dev --hparams hparams/transMel.yaml --output DIR

For one exported model:
* thresholds: the EER threshold of the recipe's trial protocol on the rendered
  validation notes, clean and augmented (every note through the YAML's audio
  effects and noise floor, both at probability 1: "data that looks like use"),
  against the EER threshold on the real NSynth notes. For each candidate
  threshold, the miss and false-accept rates it gives on the real trials;
* s-norm cohorts (adaptive s-norm, top 200): the instrument head's weight rows
  (what evaluate_model uses), centroids of training-note embeddings (up to
  ``--per-instrument`` notes per training instrument), and those training-note
  embeddings themselves; EER / minDCF on the real and rendered test notes with
  each.
Writes calibration.json and prints a table. Research code (not run by the tests).
"""

import argparse
import collections
import json
import os
import random

import numpy as np
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.dataio import read_audio

from timbre_lobes.scoring.verification import eer_and_min_dcf, protocol_trials, score_trials
from timbre_lobes.serving.inference import TimbreEncoder
from timbre_lobes.training import head_prototypes


def read_notes(folder, per_instrument=None, seed=0):
    """(ids, instruments, signals) of an NSynth-format folder, up to per_instrument notes each."""
    with open(os.path.join(folder, "examples.json")) as handle:
        examples = json.load(handle)
    by_instrument = collections.defaultdict(list)
    for note_id, meta in sorted(examples.items()):
        by_instrument[meta["instrument_str"]].append(note_id)
    rng = random.Random(seed)
    ids = []
    for _instrument, notes in sorted(by_instrument.items()):
        ids += notes if per_instrument is None else rng.sample(notes, min(per_instrument, len(notes)))
    signals = [read_audio(os.path.join(folder, "audio", f"{n}.wav")) for n in ids]
    return ids, [examples[n]["instrument_str"] for n in ids], signals


def verification(ids, instruments, embeddings, cohort=None):
    enrolments, trials = protocol_trials(dict(zip(ids, instruments)))
    labels, scores = score_trials(dict(zip(ids, embeddings)), enrolments, trials, cohort=cohort)
    return labels, scores


def rates_at(labels, scores, threshold):
    miss = float(np.mean(scores[labels == 1] < threshold))
    false_accept = float(np.mean(scores[labels == 0] >= threshold))
    return miss, false_accept


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--real", required=True)
    parser.add_argument("--hparams", required=True)
    parser.add_argument("--per-instrument", type=int, default=4)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = TimbreEncoder.from_hparams(source=args.model)
    with open(args.hparams) as fin:
        hp = load_hyperpyyaml(fin, {"effects_prob": 1.0, "noise_floor_prob": 1.0, "output_folder": args.output})

    def embed(signals):
        return model.embed_signals(signals, batch_size=16)

    def augment(signals):
        out = []
        for signal in signals:
            wav, lens = hp["audio_effects"](signal.unsqueeze(0), torch.ones(1))
            wav, lens = hp["noise_floor"](wav, lens)
            out.append(wav[0])
        return out

    report = {"model": os.path.abspath(args.model), "hparams": args.hparams}
    valid = read_notes(os.path.join(args.corpus, "nsynth-valid"))
    test = read_notes(os.path.join(args.corpus, "nsynth-test"))
    real = read_notes(args.real)
    train = read_notes(os.path.join(args.corpus, "nsynth-train"), per_instrument=args.per_instrument)
    emb = {
        "valid": embed(valid[2]),
        "valid_augmented": embed(augment(valid[2])),
        "test": embed(test[2]),
        "real": embed(real[2]),
        "train": embed(train[2]),
    }
    real_labels, real_scores = verification(real[0], real[1], emb["real"])
    real_point = eer_and_min_dcf(real_labels, real_scores)
    thresholds = {"real EER point": real_point["eer_threshold"]}
    for key in ("valid", "valid_augmented"):
        labels, scores = verification(valid[0], valid[1], emb[key])
        thresholds[f"{key} EER point"] = eer_and_min_dcf(labels, scores)["eer_threshold"]
    exported = json.load(open(os.path.join(args.model, "model_info.json"))).get("verification_threshold")
    if exported is not None:
        thresholds["exported"] = exported
    report["thresholds"] = {
        name: {
            "threshold": t,
            "real_miss": rates_at(real_labels, real_scores, t)[0],
            "real_false_accept": rates_at(real_labels, real_scores, t)[1],
        }
        for name, t in thresholds.items()
    }
    train_instruments = np.array(train[1])
    centroids = torch.stack([emb["train"][train_instruments == i].mean(dim=0) for i in sorted(set(train[1]))])
    cohorts = {
        "none": None,
        "head weights": head_prototypes(model.mods["instrument_head"]) if "instrument_head" in model.mods else None,
        "training-note centroids": centroids,
        "training notes": emb["train"],
    }
    report["cohorts"] = {}
    for name, cohort in cohorts.items():
        if name != "none" and cohort is None:
            continue
        row = {}
        for split, notes in (("real", real), ("test", test)):
            labels, scores = verification(notes[0], notes[1], emb[split], cohort=cohort)
            stats = eer_and_min_dcf(labels, scores)
            row[split] = {
                "EER": 100 * stats["eer"],
                "minDCF": stats["min_dcf"],
                "eer_threshold": stats["eer_threshold"],
            }
        report["cohorts"][name] = row
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, "calibration.json"), "w") as out:
        json.dump(report, out, indent=2)
    print("| threshold | value | real miss | real false accept |\n|---|---:|---:|---:|")
    for name, row in report["thresholds"].items():
        print(
            f"| {name} | {row['threshold']:.3f} | {100 * row['real_miss']:.1f} % | {100 * row['real_false_accept']:.1f} % |"
        )
    print(
        "\n| s-norm cohort | real EER | real minDCF | rendered test EER | rendered minDCF |\n|---|---:|---:|---:|---:|"
    )
    for name, row in report["cohorts"].items():
        print(
            f"| {name} | {row['real']['EER']:.2f} % | {row['real']['minDCF']:.3f} | "
            f"{row['test']['EER']:.2f} % | {row['test']['minDCF']:.3f} |"
        )


if __name__ == "__main__":
    main()
