#!/usr/bin/env python3
"""Family identification of unseen instruments: the trained family head against back ends on embeddings.

    python docs/experiments/family_backends.py MODEL_FOLDER [CORPUS] [--cache DIR]

Research code (not part of the toolkit; no test runs it). It embeds every note of the
corpus's train, valid and test splits with an exported model (``train.py``'s
``<output_folder>/model``), caches the embeddings, and reports family micro-F1 on
valid and test, overall, per instrument source and per SoundFont, for:

* ``head``: the model's jointly trained family head (what ``train.py`` reports);
* ``logreg``: a logistic regression on length-normalised embeddings of the train notes,
  its C chosen on valid;
* ``trees``: scikit-learn's ``HistGradientBoostingClassifier`` (defaults, seed 0) on the
  same length-normalised embeddings: a non-linear back end;
* ``centroid-1``: the family of the nearest training-instrument centroid (cosine), the
  speaker-recognition way: "which known instrument does this sound like?";
* ``centroid-vote-k``: a vote over the families of the k nearest training-instrument
  centroids, weighted by cosine.

On a rendered corpus it also asks whether the embedding knows the *kind* of instrument:
every General MIDI program is played by several SoundFonts, so an unseen instrument has
same-program siblings among the training instruments (FluidR3's violin for TimGM6mb's).
It prints how often the nearest training centroid is such a sibling, and the rank of the
best sibling among the training centroids.
"""

import argparse
import json
import os
import sys

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from tqdm import tqdm

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, REPO)

from timbre_lobes.serving.inference import TimbreEncoder  # noqa: E402

SPLITS = ("train", "valid", "test")


def load_split(corpus, split):
    with open(os.path.join(corpus, f"nsynth-{split}", "examples.json")) as handle:
        notes = json.load(handle)
    ids = sorted(notes)
    return ids, [notes[i] for i in ids], [os.path.join(corpus, f"nsynth-{split}", "audio", f"{i}.wav") for i in ids]


def embed_split(encoder, corpus, split, cache):
    path = os.path.join(cache, f"{split}.npz")
    ids, meta, wavs = load_split(corpus, split)
    if os.path.exists(path):
        data = np.load(path, allow_pickle=True)
        if list(data["ids"]) == ids:
            return ids, meta, data["emb"]
    rows = []
    batch = 64
    for start in tqdm(range(0, len(wavs), batch), desc=f"embedding {split}"):
        rows.append(encoder.embed_files(wavs[start : start + batch], batch_size=32))
    emb = np.concatenate(rows)
    np.savez(path, ids=np.array(ids), emb=emb)
    return ids, meta, emb


def normalise(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-9)


def centroids(emb, meta):
    names = sorted({m["instrument_str"] for m in meta})
    index = {n: i for i, n in enumerate(names)}
    rows = np.array([index[m["instrument_str"]] for m in meta])
    cents = np.stack([normalise(emb[rows == i]).mean(axis=0) for i in range(len(names))])
    fam = {m["instrument_str"]: m["instrument_family"] for m in meta}
    return normalise(cents), np.array([fam[n] for n in names])


def centroid_vote(emb, cents, cent_fams, k, n_families=11):
    sims = normalise(emb) @ cents.T
    top = np.argsort(-sims, axis=1)[:, :k]
    votes = np.zeros((len(emb), n_families))
    for row in range(len(emb)):
        for j in top[row]:
            votes[row, cent_fams[j]] += max(sims[row, j], 0.0) + 1e-6
    return votes.argmax(axis=1)


def sibling_ranks(emb, meta, train_meta, cents):
    """Rank (0 = nearest) of the nearest same-program training instrument, per note; None without programs."""
    if any("program" not in m for m in meta + train_meta):
        return None
    names = sorted({m["instrument_str"] for m in train_meta})
    program = {m["instrument_str"]: m["program"] for m in train_meta}
    order = np.argsort(-(normalise(emb) @ cents.T), axis=1)
    ranks = []
    for row, m in enumerate(meta):
        siblings = {i for i, n in enumerate(names) if program[n] == m["program"]}
        if siblings:
            ranks.append(next(r for r, j in enumerate(order[row]) if j in siblings))
    return np.array(ranks)


def report(name, pred, meta):
    true = np.array([m["instrument_family"] for m in meta])
    line = {"backend": name, "all": f1_score(true, pred, average="micro")}
    for field in ("instrument_source_str", "soundfont"):
        groups = np.array([str(m.get(field, "?")).replace(".sf2", "") for m in meta])
        for group in sorted(set(groups)):
            mask = groups == group
            line[group] = f1_score(true[mask], pred[mask], average="micro")
    return line


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("corpus", nargs="?", default=os.path.join(REPO, "corpora", "soundfont-default"))
    parser.add_argument("--cache", default=None)
    args = parser.parse_args(argv)
    cache = args.cache or os.path.join(args.model, "..", "family_backends")
    os.makedirs(cache, exist_ok=True)
    encoder = TimbreEncoder.from_hparams(source=os.path.abspath(args.model), savedir=os.path.abspath(args.model))
    data = {s: embed_split(encoder, args.corpus, s, cache) for s in SPLITS}
    _, train_meta, train_emb = data["train"]
    train_fam = np.array([m["instrument_family"] for m in train_meta])
    cents, cent_fams = centroids(train_emb, train_meta)

    _, valid_meta, valid_emb = data["valid"]
    valid_true = np.array([m["instrument_family"] for m in valid_meta])
    best_c, best_f1, logreg = None, -1, None
    for c in (0.01, 0.1, 1.0, 10.0):
        model = LogisticRegression(C=c, max_iter=2000).fit(normalise(train_emb), train_fam)
        f1 = f1_score(valid_true, model.predict(normalise(valid_emb)), average="micro")
        if f1 > best_f1:
            best_c, best_f1, logreg = c, f1, model
    print(f"logreg C chosen on valid: {best_c}")
    trees = HistGradientBoostingClassifier(random_state=0).fit(normalise(train_emb), train_fam)

    rows = []
    for split in ("valid", "test"):
        _, meta, emb = data[split]
        counts = {}
        for m in meta:
            counts[m["instrument_source_str"]] = counts.get(m["instrument_source_str"], set()) | {m["instrument_str"]}
        print(
            f"\n{split}: {len(meta)} notes; instruments per source "
            + ", ".join(f"{k} {len(v)}" for k, v in sorted(counts.items()))
        )
        ranks = sibling_ranks(emb, meta, train_meta, cents)
        if ranks is not None and len(ranks):
            print(
                f"  same-program sibling in training for {len(ranks)} of {len(meta)} notes; nearest centroid is "
                f"one for {np.mean(ranks == 0):.3f}; best sibling's rank: median {np.median(ranks):.0f} "
                f"of {len(cents)}, within 5 for {np.mean(ranks < 5):.3f}"
            )
        preds = {
            "head": encoder.family_probabilities(emb).argmax(axis=1),
            "logreg": logreg.predict(normalise(emb)),
            "trees": trees.predict(normalise(emb)),
            "centroid-1": centroid_vote(emb, cents, cent_fams, 1),
            "centroid-vote-5": centroid_vote(emb, cents, cent_fams, 5),
            "centroid-vote-15": centroid_vote(emb, cents, cent_fams, 15),
        }
        for name, pred in preds.items():
            line = report(name, pred, meta)
            line["split"] = split
            rows.append(line)
            print(
                "  "
                + f"{name:18s} "
                + "  ".join(f"{k} {v:.3f}" for k, v in line.items() if k not in ("backend", "split"))
            )
    with open(os.path.join(cache, "family_backends.json"), "w") as handle:
        json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
