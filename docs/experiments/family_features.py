#!/usr/bin/env python3
"""How hard is family identification on this corpus, with no deep model at all?

    python docs/experiments/family_features.py [CORPUS] [--cache DIR]

Research code (not part of the toolkit; no test runs it). Every note becomes the mean
and standard deviation over time of 80 log-mel bands (SpeechBrain's ``Fbank``, 20 ms
hop, the whole 4 s note): 160 numbers. Family classifiers trained on them are scored
by family micro-F1 in two settings:

* ``unseen``: trained on the notes of the training instruments, tested on the valid
  and test instruments (what ``train.py`` and issue #3's target measure);
* ``held-out notes``: the training instruments' notes split at random, 80 % to train
  and 20 % to test, per instrument (the setting of the reference figure quoted in
  issue #3: a small ECAPA-TDNN at 0.69 micro-F1 "on held-out notes").

Classifiers: logistic regression (standardised features, C chosen on valid) and a
histogram gradient-boosted tree ensemble (scikit-learn defaults). Prints one table.
"""

import argparse
import json
import os
import sys

import numpy as np
import soundfile as sf
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from speechbrain.lobes.features import Fbank
from tqdm import tqdm

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def pooled_logmel(corpus, split, cache):
    """(ids, metadata, features (N, 160)) of one split, cached as ``<cache>/<split>_logmel.npz``."""
    with open(os.path.join(corpus, f"nsynth-{split}", "examples.json")) as handle:
        notes = json.load(handle)
    ids = sorted(notes)
    path = os.path.join(cache, f"{split}_logmel.npz")
    if os.path.exists(path):
        data = np.load(path, allow_pickle=True)
        if list(data["ids"]) == ids:
            return ids, [notes[i] for i in ids], data["feats"]
    fbank = Fbank(sample_rate=16000, n_mels=80, hop_length=20)
    feats = []
    for start in tqdm(range(0, len(ids), 64), desc=f"log-mel {split}"):
        batch = [sf.read(os.path.join(corpus, f"nsynth-{split}", "audio", f"{i}.wav"), dtype="float32")[0]
                 for i in ids[start:start + 64]]
        with torch.no_grad():
            fb = fbank(torch.from_numpy(np.stack(batch)))  # (B, frames, 80)
        feats.append(torch.cat([fb.mean(1), fb.std(1)], 1).numpy())
    feats = np.concatenate(feats)
    os.makedirs(cache, exist_ok=True)
    np.savez(path, ids=np.array(ids), feats=feats)
    return ids, [notes[i] for i in ids], feats


def micro_f1(model, x, y):
    return f1_score(y, model.predict(x), average="micro")


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpus", nargs="?", default=os.path.join(REPO, "corpora", "soundfont-default"))
    parser.add_argument("--cache", default="/tmp/family_features")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    data = {s: pooled_logmel(args.corpus, s, args.cache) for s in ("train", "valid", "test")}
    x = {s: d[2] for s, d in data.items()}
    y = {s: np.array([m["instrument_family"] for m in d[1]]) for s, d in data.items()}
    inst = np.array([m["instrument_str"] for m in data["train"][1]])

    # Held-out notes of the training instruments: 20 % of each instrument's notes.
    rng = np.random.default_rng(args.seed)
    held = np.zeros(len(inst), bool)
    for name in np.unique(inst):
        idx = np.flatnonzero(inst == name)
        held[rng.choice(idx, max(1, len(idx) // 5), replace=False)] = True

    def logreg(c):
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))

    best_c = max((0.01, 0.1, 1.0, 10.0),
                 key=lambda c: micro_f1(logreg(c).fit(x["train"], y["train"]), x["valid"], y["valid"]))
    models = {f"logistic regression (C={best_c})": lambda: logreg(best_c),
              "gradient-boosted trees": lambda: HistGradientBoostingClassifier(random_state=args.seed)}
    print(f"{len(np.unique(inst))} training instruments, {len(inst)} notes; held out {held.sum()} notes")
    print("| classifier | unseen valid | unseen test | held-out notes of training instruments |")
    print("|---|---:|---:|---:|")
    for name, make in models.items():
        unseen = make().fit(x["train"], y["train"])
        known = make().fit(x["train"][~held], y["train"][~held])
        print(f"| {name} | {micro_f1(unseen, x['valid'], y['valid']):.3f} | "
              f"{micro_f1(unseen, x['test'], y['test']):.3f} | "
              f"{micro_f1(known, x['train'][held], y['train'][held]):.3f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
