"""How much do a front end's features move when a note gets an inaudible change? (no training)

    python docs/experiments/feature_floor.py FOLDER [FOLDER ...] [N]
    python docs/experiments/feature_floor.py FOLDER [FOLDER ...] [N] --systems melspec,transMel,...

For N notes of each NSynth-format folder, a front end gives features of the note
and of copies made by benchmarks/robustness.py (-70 dBFS noise, 8-bit WAV, -20 dB,
MP3). Features are standardised with the originals' global mean/std per filter (as
the models' GlobalNormalization does) and the mean absolute change is reported.
``--std-floor F`` floors each filter's std at F times the median filter's: a filter
at the floor in every original has zero variance, and any change there (8-bit
quantisation noise near Nyquist) would otherwise dominate the mean (default 0:
std + 1e-5, as in finding 13).

* Without ``--systems``: the mel-initialised transform layer at the demo's sizes
  (80 filters, 50 ms, 20 ms hop), for each dynamic_range_db in RANGES (None =
  today's log(energy + 1e-6)); the share of the originals' feature cells at the
  floor says how much of each note it flattens.
* With ``--systems``: each system's ``compute_features`` built from its
  ``hparams/<system>.yaml`` with the CPU budget's overrides
  (benchmarks/cpu_budget.yaml, the benchmark's sizes), untrained, with
  dynamic_range_db null and 60.
"""

import argparse
import importlib.util
import os
import tempfile

import numpy as np
import soundfile as sf
import torch
from hyperpyyaml import load_hyperpyyaml

from timbre_lobes.lobes.frontend import TransformLayer

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.join(HERE, "..", "..")


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


robustness = _load("robustness")

KINDS = ["noise -70 dBFS", "8-bit WAV", "-20 dB", "MP3"]
RANGES = [None, 100, 80, 60, 50, 40]
SYSTEM_RANGES = [None, 60]


def transform_layers():
    return {r: TransformLayer(out_channels=80, kernel_size=801, stride=320, dynamic_range_db=r) for r in RANGES}


def system_front_end(system, dynamic_range_db, output_folder):
    """``hparams/<system>.yaml``'s front end at the CPU budget's (benchmark) sizes."""
    budget = _load("budget")
    overrides = budget.system_overrides(budget.load_budget(os.path.join(REPO, "benchmarks", "cpu_budget.yaml")), system)
    lines = [arg[2:].replace("=", ": ", 1) for arg in overrides]
    lines += [
        f"output_folder: {output_folder}",
        f"dynamic_range_db: {'null' if dynamic_range_db is None else dynamic_range_db}",
    ]
    with open(os.path.join(REPO, "hparams", f"{system}.yaml")) as handle:
        return load_hyperpyyaml(handle, "\n".join(lines))["compute_features"].eval()


def note_features(front_ends, folder, n):
    """{setting: {kind: [features of each note]}} for the originals and their copies."""
    notes = robustness.pick_notes(folder, n)
    feats = {r: {k: [] for k in ["orig", *KINDS]} for r in front_ends}
    with tempfile.TemporaryDirectory() as tmp:
        for i, path in enumerate(notes):
            signal, rate = sf.read(path, dtype="float64")
            versions = {"orig": signal}
            for kind in KINDS:
                copy = robustness.make_copy(signal, rate, kind, tmp, f"{i}", seed=i)
                versions[kind] = sf.read(copy, dtype="float64")[0][: len(signal)]
            for kind, x in versions.items():
                x = np.pad(x, (0, len(signal) - len(x)))
                wav = torch.from_numpy(x).float()[None]
                with torch.no_grad():
                    for r, front_end in front_ends.items():
                        feats[r][kind].append(front_end(wav)[0])
    return len(notes), feats


def changes(feats, std_floor=0.0):
    """Mean absolute change of the standardised features, per copy kind; share of cells at the floor."""
    orig = torch.stack(feats["orig"])
    mean, std = orig.mean(dim=(0, 1)), orig.std(dim=(0, 1))
    std = torch.maximum(std, std_floor * std.median()) if std_floor else std + 1e-5
    z = (orig - mean) / std
    out = [(((torch.stack(feats[kind]) - mean) / std) - z).abs().mean().item() for kind in KINDS]
    return out, (orig <= orig.min() + 1e-6).float().mean().item()


def main(folders, n=20, systems=None, std_floor=0.0):
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as out:
        if systems:
            settings = {(s, r): system_front_end(s, r, out) for s in systems for r in SYSTEM_RANGES}
        else:
            settings = transform_layers()
        for folder in folders:
            count, feats = note_features(settings, folder, n)
            print(f"\n{os.path.basename(os.path.normpath(folder))}: {count} notes")
            print(("system | " if systems else "") + "dynamic range | " + " | ".join(KINDS) + " | cells at the floor")
            for key in settings:
                moved, at_floor = changes(feats[key], std_floor)
                system, r = key if systems else (None, key)
                at_floor = 0.0 if r is None else at_floor
                print(
                    (f"{system} | " if systems else "")
                    + f"{r} dB | "
                    + " | ".join(f"{c:.3f}" for c in moved)
                    + f" | {100 * at_floor:.1f} %"
                )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", help="NSynth-format folders (examples.json + audio/), then N")
    parser.add_argument("--systems", help="comma-separated hparams/ YAML names; default: the transform layer alone")
    parser.add_argument("--std-floor", type=float, default=0.0, help="floor on each filter's std, x the median's")
    args = parser.parse_args()
    folders, count = args.folders, 20
    if len(folders) > 1 and folders[-1].isdigit():
        folders, count = folders[:-1], int(folders[-1])
    main(folders, count, args.systems.split(",") if args.systems else None, args.std_floor)
