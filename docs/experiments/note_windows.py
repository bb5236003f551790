"""Finding 17's probe: EER and family micro-F1 of an export when it embeds only a window of each note.

    python docs/experiments/note_windows.py MODEL_FOLDER [NSYNTH_FOLDER] [--short]

Each note of the NSynth-format folder (default: the 400 real notes of
``../shared/data/nsynth-test-dev``) is read whole, cut to a window (start-stop in s,
e.g. 1.0-2.5), embedded alone (``TimbreEncoder.embed_signals``: no trim, no padding)
and scored with the recipes' protocol and trials
(:func:`timbre_lobes.scoring.evaluation.evaluate_collected`); ``mean-1.5`` is the mean
embedding of 1.5 s windows every 0.5 s over the whole note. The 0-4 s row is the
whole-note evaluation and reproduces ``evaluate.py``'s figures for exports that
predate ``eval_seconds``. ``--short``: only 0-4 s and 0-2.5 s.

``benchmarks/note_span.py`` is the maintained tool for spans from a note's start;
this probe adds windows that start later. Research code: not run by the tests.
"""

import json
import os
import sys

import numpy as np
import soundfile as sf
import torch

from timbre_lobes.scoring import evaluation
from timbre_lobes.scoring.verification import DEFAULT_PROTOCOL, protocol_trials
from timbre_lobes.serving.inference import TimbreEncoder

REAL = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "nsynth-test-dev")
WINDOWS = [(0, 4), (0, 1.5), (0, 2.5), (0.5, 2.0), (1.0, 2.5), (0, 3.0), ("mean", 1.5)]


def windows_mean(model, wav, window=1.5, hop=0.5):
    """Mean embedding of ``window``-s windows every ``hop`` s (as ``long_audio: average`` does)."""
    n, h = int(window * model.sample_rate), int(hop * model.sample_rate)
    parts = [torch.from_numpy(wav[i : i + n]) for i in range(0, max(len(wav) - n, 0) + 1, h)]
    return model.embed_signals(parts).mean(0)


def main(argv):
    short = "--short" in argv
    args = [a for a in argv if a != "--short"]
    model = TimbreEncoder.from_hparams(args[0])
    root = args[1] if len(args) > 1 else REAL
    with open(os.path.join(root, "examples.json")) as handle:
        examples = json.load(handle)
    names = sorted(examples)
    labels = list(model.family_labels)
    labels += sorted({examples[n]["instrument_family_str"] for n in names} - set(labels))
    wavs = [sf.read(os.path.join(root, "audio", f"{n}.wav"), dtype="float32")[0] for n in names]
    instruments = {n: examples[n]["instrument_str"] for n in names}
    enrolments, trials = protocol_trials(instruments, dict(DEFAULT_PROTOCOL))
    truth = torch.tensor([[labels.index(examples[n]["instrument_family_str"])] for n in names])
    for start, stop in WINDOWS[:1] + WINDOWS[2:3] if short else WINDOWS:
        if start == "mean":
            emb = torch.stack([windows_mean(model, w) for w in wavs])
        else:
            rate = model.sample_rate
            emb = model.embed_signals([torch.from_numpy(w[int(start * rate) : int(stop * rate)]) for w in wavs])
        probs = model.family_probabilities(emb)
        family_out = np.zeros((len(names), len(labels)), dtype=np.float32)
        family_out[:, : probs.shape[1]] = probs
        collector = evaluation.Collector()
        collector.add(names, emb.unsqueeze(1), torch.from_numpy(family_out).unsqueeze(1), truth)
        stats = evaluation.evaluate_collected(collector, enrolments, trials, labels=labels, instruments=instruments)
        print(f"window {start}-{stop} s: EER {stats['EER']:.2f}  family micro-F1 {stats['family_micro_f1']:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
