"""How much do transMel's input features move when a note gets an inaudible change? (no training)

    python docs/experiments/feature_floor.py RENDERED_FOLDER REAL_FOLDER [N]

For N notes of each NSynth-format folder, the mel-initialised transform layer
(the demo's sizes: 80 filters, 50 ms, 20 ms hop) gives log filter energies of the
note and of copies made by benchmarks/robustness.py (-70 dBFS noise, 8-bit WAV,
-20 dB, MP3). Features are standardised with the originals' global mean/std per
filter (as the models' GlobalNormalization does) and the mean absolute change is
reported, for each dynamic_range_db (None = today's log(energy + 1e-6)).
The share of the originals' feature cells at the floor says how much of each note it flattens.
"""

import importlib.util
import os
import sys
import tempfile

import numpy as np
import soundfile as sf
import torch

from timbre_lobes.lobes.frontend import TransformLayer

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    "robustness", os.path.join(HERE, "..", "..", "benchmarks", "robustness.py")
)
robustness = importlib.util.module_from_spec(spec)
spec.loader.exec_module(robustness)

KINDS = ["noise -70 dBFS", "8-bit WAV", "-20 dB", "MP3"]
RANGES = [None, 100, 80, 60, 50, 40]


def main(rendered, real, n=20):
    torch.manual_seed(0)
    layers = {r: TransformLayer(out_channels=80, kernel_size=801, stride=320, dynamic_range_db=r) for r in RANGES}
    for folder in (rendered, real):
        notes = robustness.pick_notes(folder, n)
        feats = {r: {k: [] for k in ["orig", *KINDS]} for r in RANGES}
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
                        for r, layer in layers.items():
                            feats[r][kind].append(layer(wav)[0])
        print(f"\n{os.path.basename(os.path.normpath(folder))}: {len(notes)} notes")
        print("dynamic range | " + " | ".join(KINDS) + " | cells at the floor")
        for r in RANGES:
            orig = torch.stack(feats[r]["orig"])
            mean, std = orig.mean(dim=(0, 1)), orig.std(dim=(0, 1)) + 1e-5
            z = (orig - mean) / std
            changes = []
            for kind in KINDS:
                zc = (torch.stack(feats[r][kind]) - mean) / std
                changes.append(f"{(zc - z).abs().mean().item():.3f}")
            at_floor = 0.0 if r is None else (orig <= orig.min() + 1e-6).float().mean().item()
            print(f"{r} dB | " + " | ".join(changes) + f" | {100 * at_floor:.1f} %")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 20)
