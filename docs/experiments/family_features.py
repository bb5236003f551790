#!/usr/bin/env python3
"""How hard is family identification on this corpus, with no deep model at all?

    python docs/experiments/family_features.py [CORPUS] [--cache DIR]
    python docs/experiments/family_features.py [CORPUS] --instrument-curve [--real ../shared/data/nsynth-test-dev]
    python docs/experiments/family_features.py [CORPUS] --extra-train OTHER_CORPUS [--independent-of SF]

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

Two more questions, about the data rather than the classifier (trees only):

* ``--instrument-curve``: does the unseen-instrument figure grow with the number of
  training instruments? Trains on random 25 / 50 / 75 % of the training instruments
  (three draws each) and on all of them.
* ``--extra-train OTHER_CORPUS``: adds the training notes of another rendered corpus
  (e.g. MuseScore_General rendered with ``--fractions 1 0 0``) and scores valid and
  test overall and without the instruments of the SoundFont named by
  ``--independent-of`` (default FluidR3_GM.sf2), to tell real gains from shared
  samples.
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
RECORDED_GROUPS = {"fluidr3", "timgm6mb", "generaluser", "airfont", "freepats"}
REPO = os.path.dirname(os.path.dirname(HERE))


def pooled_logmel(corpus, split, cache):
    """(ids, metadata, features (N, 160)) of one split, cached as ``<cache>/<split>_logmel.npz``."""
    return pooled_logmel_folder(os.path.join(corpus, f"nsynth-{split}"), split, cache)


def pooled_logmel_folder(folder, name, cache):
    """(ids, metadata, features (N, 160)) of one NSynth-format folder, cached as ``<cache>/<name>_logmel.npz``."""
    with open(os.path.join(folder, "examples.json")) as handle:
        notes = json.load(handle)
    ids = sorted(notes)
    path = os.path.join(cache, f"{name}_logmel.npz")
    if os.path.exists(path):
        data = np.load(path, allow_pickle=True)
        if list(data["ids"]) == ids:
            return ids, [notes[i] for i in ids], data["feats"]
    fbank = Fbank(sample_rate=16000, n_mels=80, hop_length=20)
    feats = []
    for start in tqdm(range(0, len(ids), 64), desc=f"log-mel {name}"):
        batch = [
            sf.read(os.path.join(folder, "audio", f"{i}.wav"), dtype="float32")[0] for i in ids[start : start + 64]
        ]
        with torch.no_grad():
            fb = fbank(torch.from_numpy(np.stack(batch)))  # (B, frames, 80)
        feats.append(torch.cat([fb.mean(1), fb.std(1)], 1).numpy())
    feats = np.concatenate(feats)
    os.makedirs(cache, exist_ok=True)
    np.savez(path, ids=np.array(ids), feats=feats)
    return ids, [notes[i] for i in ids], feats


def micro_f1(model, x, y):
    return f1_score(y, model.predict(x), average="micro")


def trees():
    return HistGradientBoostingClassifier(random_state=0)


def instrument_curve(x, y, inst, fractions=(0.25, 0.5, 0.75, 1.0), draws=3, groups=None):
    """Trees trained on random subsets of the training instruments: micro-F1 on valid, test (and real).

    ``x``/``y`` may hold a ``real`` entry (real NSynth notes): then a column for it. ``groups``
    (the training notes' source groups) adds rows trained on the recorded banks only and on the
    three banks of the first corpus (fluidr3, timgm6mb, opl3).
    """
    splits = [s for s in ("valid", "test", "real") if s in x]
    names = np.unique(inst)
    print("| training instruments | " + " | ".join(f"unseen {s}" for s in splits) + " |")
    print("|---:|" + "---:|" * len(splits))

    def row(label, rows_of_draw, n_draws):
        scores = []
        for draw in range(n_draws):
            rows = rows_of_draw(draw)
            model = trees().fit(x["train"][rows], y["train"][rows])
            scores.append([micro_f1(model, x[s], y[s]) for s in splits])
        mean, spread = np.mean(scores, 0), np.std(scores, 0)
        cells = [f"{m:.3f} ± {d:.3f}" if n_draws > 1 else f"{m:.3f}" for m, d in zip(mean, spread)]
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)

    for fraction in fractions:
        count = int(len(names) * fraction)
        row(
            str(count),
            lambda draw, c=count: np.isin(inst, np.random.default_rng(draw).choice(names, c, replace=False)),
            draws if fraction < 1 else 1,
        )
    if groups is not None:
        for label, chosen in (
            ("the first corpus's banks (fluidr3, timgm6mb, opl3)", {"fluidr3", "timgm6mb", "opl3"}),
            ("recorded banks only (fluidr3, timgm6mb, generaluser, airfont, freepats)", RECORDED_GROUPS),
            ("all but dx7", set(groups) - {"dx7"}),
        ):
            keep = np.isin(groups, sorted(chosen))
            row(f"{len(np.unique(inst[keep]))}: {label}", lambda draw, k=keep: k, 1)


def extra_training_instruments(x, y, fonts, extra, independent_of):
    """Trees with and without another corpus's training notes, scored with and without one SoundFont."""
    extra_y = np.array([m["instrument_family"] for m in extra[1]])
    print(f"{len(extra_y)} extra training notes of {len({m['instrument_str'] for m in extra[1]})} instruments")
    print(f"| training data | valid | valid without {independent_of} | test | test without {independent_of} |")
    print("|---|---:|---:|---:|---:|")
    runs = {
        "default corpus": (x["train"], y["train"]),
        "default + extra corpus": (np.concatenate([x["train"], extra[2]]), np.concatenate([y["train"], extra_y])),
    }
    for name, (train_x, train_y) in runs.items():
        model = trees().fit(train_x, train_y)
        cells = []
        for split in ("valid", "test"):
            other = fonts[split] != independent_of
            cells += [micro_f1(model, x[split], y[split]), micro_f1(model, x[split][other], y[split][other])]
        print(f"| {name} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpus", nargs="?", default=os.path.join(REPO, "corpora", "rendered-default"))
    parser.add_argument("--cache", default="/tmp/family_features")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--instrument-curve", action="store_true")
    parser.add_argument("--extra-train", metavar="OTHER_CORPUS")
    parser.add_argument("--independent-of", default="FluidR3_GM.sf2", metavar="SOUNDFONT")
    parser.add_argument(
        "--real",
        default=os.path.join(os.path.dirname(REPO), "shared", "data", "nsynth-test-dev"),
        help="real NSynth notes scored beside valid and test by --instrument-curve (skipped when absent)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    data = {s: pooled_logmel(args.corpus, s, args.cache) for s in ("train", "valid", "test")}
    x = {s: d[2] for s, d in data.items()}
    y = {s: np.array([m["instrument_family"] for m in d[1]]) for s, d in data.items()}
    inst = np.array([m["instrument_str"] for m in data["train"][1]])
    if args.instrument_curve:
        if os.path.isfile(os.path.join(args.real, "examples.json")):
            _, real_meta, x["real"] = pooled_logmel_folder(args.real, "real", args.cache)
            y["real"] = np.array([m["instrument_family"] for m in real_meta])
        meta = data["train"][1]
        groups = np.array([m["source_group"] for m in meta]) if "source_group" in meta[0] else None
        return instrument_curve(x, y, inst, groups=groups)
    if args.extra_train:
        extra = pooled_logmel(args.extra_train, "train", os.path.join(args.cache, "extra"))
        fonts = {s: np.array([m["soundfont"] for m in data[s][1]]) for s in ("valid", "test")}
        return extra_training_instruments(x, y, fonts, extra, args.independent_of)

    # Held-out notes of the training instruments: 20 % of each instrument's notes.
    rng = np.random.default_rng(args.seed)
    held = np.zeros(len(inst), bool)
    for name in np.unique(inst):
        idx = np.flatnonzero(inst == name)
        held[rng.choice(idx, max(1, len(idx) // 5), replace=False)] = True

    def logreg(c):
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))

    best_c = max(
        (0.01, 0.1, 1.0, 10.0), key=lambda c: micro_f1(logreg(c).fit(x["train"], y["train"]), x["valid"], y["valid"])
    )
    models = {f"logistic regression (C={best_c})": lambda: logreg(best_c), "gradient-boosted trees": trees}
    print(f"{len(np.unique(inst))} training instruments, {len(inst)} notes; held out {held.sum()} notes")
    print("| classifier | unseen valid | unseen test | held-out notes of training instruments |")
    print("|---|---:|---:|---:|")
    for name, make in models.items():
        unseen = make().fit(x["train"], y["train"])
        known = make().fit(x["train"][~held], y["train"][~held])
        print(
            f"| {name} | {micro_f1(unseen, x['valid'], y['valid']):.3f} | "
            f"{micro_f1(unseen, x['test'], y['test']):.3f} | "
            f"{micro_f1(known, x['train'][held], y['train'][held]):.3f} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
