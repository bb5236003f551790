#!/usr/bin/env python3
"""Does a model hear what a listener hears? Cosine of each note to copies no listener tells apart.

    python benchmarks/robustness.py --model results/demo/model \\
        --notes corpora/rendered-default/nsynth-test --notes ../shared/data/nsynth-test-dev \\
        --per-folder 11 --output results/robustness

For a set of notes (``--per-folder`` notes drawn with a fixed seed from each
NSynth-format folder, one per instrument where possible), every note is
compared with copies of itself: saved as FLAC, MP3 and Ogg; 20 dB quieter;
with white noise added at -90 and -70 dBFS; saved as an 8-bit WAV. Each copy
is read back through the inference loader (``TimbreEncoder.embed_files``, the
path a user's files take) and scored against the original with the cosine
similarity; a copy is *judged different* when the score is below the model's
own verification threshold. The figures the real-sound issue targets: median
cosine >= 0.95 and no copy judged different.

Writes ``robustness.json``, ``robustness.md`` and ``robustness.png`` (median and
minimum cosine per copy kind, per folder) into ``--output``.
"""

import argparse
import json
import os
import random
import sys
import tempfile

import numpy as np
import soundfile as sf

from timbre_lobes.atomic import save_figure, write_report

#: Copy kinds: name -> (how the copy is made, format, subtype).
COPIES = {
    "FLAC": ("same", "FLAC", "PCM_16"),
    "MP3": ("same", "MP3", "MPEG_LAYER_III"),
    "Ogg": ("same", "OGG", "VORBIS"),
    "-20 dB": ("gain_db:-20", "WAV", "PCM_16"),
    "noise -90 dBFS": ("noise_dbfs:-90", "WAV", "FLOAT"),
    "noise -70 dBFS": ("noise_dbfs:-70", "WAV", "FLOAT"),
    "8-bit WAV": ("same", "WAV", "PCM_U8"),
}
EXTENSIONS = {"FLAC": ".flac", "MP3": ".mp3", "OGG": ".ogg", "WAV": ".wav"}


def make_copy(signal, rate, kind, folder, name, seed=0):
    """Writes one copy of ``signal`` ([samples] float, full scale 1.0) and returns its path.

    ``kind`` is a key of :data:`COPIES`. White noise at ``L`` dBFS has an RMS of
    ``10 ** (L / 20)`` (full-scale sine = -3 dBFS).
    """
    how, fmt, subtype = COPIES[kind]
    out = np.asarray(signal, dtype=np.float64)
    if how.startswith("gain_db:"):
        out = out * 10 ** (float(how.split(":")[1]) / 20)
    elif how.startswith("noise_dbfs:"):
        rms = 10 ** (float(how.split(":")[1]) / 20)
        out = out + rms * np.random.default_rng(seed).standard_normal(len(out))
    path = os.path.join(folder, name + EXTENSIONS[fmt])
    sf.write(path, np.clip(out, -1.0, 1.0), rate, format=fmt, subtype=subtype)
    return path


def pick_notes(folder, count, seed=0):
    """``count`` note paths of an NSynth-format folder: different instruments first, fixed seed."""
    with open(os.path.join(folder, "examples.json")) as handle:
        examples = json.load(handle)
    by_instrument = {}
    for note_id, meta in sorted(examples.items()):
        by_instrument.setdefault(meta.get("instrument_str", note_id), []).append(note_id)
    rng = random.Random(seed)
    instruments = sorted(by_instrument)
    rng.shuffle(instruments)
    chosen = []
    while len(chosen) < count and any(by_instrument.values()):
        for inst in instruments:
            if by_instrument[inst] and len(chosen) < count:
                chosen.append(by_instrument[inst].pop(rng.randrange(len(by_instrument[inst]))))
    paths = [os.path.join(folder, "audio", f"{n}.wav") for n in chosen]
    return [p for p in paths if os.path.isfile(p)]


def measure(model, folders, per_folder=11, seed=0, progress=True):
    """Cosines of every note to each of its copies, per folder.

    Arguments
    ---------
    model : timbre_lobes.serving.inference.TimbreEncoder
    folders : list of str
        NSynth-format folders (``examples.json`` + ``audio/``).
    per_folder : int
        Notes drawn from each folder.

    Returns
    -------
    dict
        ``{"threshold": t, "folders": {folder: {kind: [cosines]}}, "notes": {folder: [paths]}}``.
    """
    from tqdm import tqdm

    report = {"threshold": float(model.threshold), "folders": {}, "notes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for folder in folders:
            notes = pick_notes(folder, per_folder, seed)
            report["notes"][folder] = notes
            scores = {kind: [] for kind in COPIES}
            originals = model.embed_files(notes)
            for i, path in enumerate(tqdm(notes, desc=os.path.basename(folder), disable=not progress)):
                signal, rate = sf.read(path, dtype="float64", always_2d=False)
                copies = [make_copy(signal, rate, kind, tmp, f"{i}-{k}", seed=i) for k, kind in enumerate(COPIES)]
                embedded = model.embed_files(copies)
                for kind, emb in zip(COPIES, embedded, strict=True):
                    scores[kind].append(float(model.similarity(originals[i], emb)))
            report["folders"][folder] = scores
    return report


def summary_rows(report):
    """One row per (folder, copy kind): median and minimum cosine, copies judged different."""
    rows = []
    for folder, scores in report["folders"].items():
        for kind, values in scores.items():
            values = np.asarray(values)
            rows.append(
                {
                    "folder": folder,
                    "copy": kind,
                    "median_cosine": float(np.median(values)),
                    "min_cosine": float(values.min()),
                    "judged_different": int((values < report["threshold"]).sum()),
                    "n": len(values),
                }
            )
    return rows


def markdown(report, model_folder):
    lines = [
        f"Model `{model_folder}`, verification threshold {report['threshold']:.3f} (cosine).",
        "",
        "| notes | copy of the same note | median cosine | min cosine | judged different |",
        "|---|---|---:|---:|---:|",
    ]
    for r in summary_rows(report):
        lines.append(
            f"| {os.path.basename(os.path.normpath(r['folder']))} | {r['copy']} | {r['median_cosine']:.3f} "
            f"| {r['min_cosine']:.3f} | {r['judged_different']} of {r['n']} |"
        )
    return "\n".join(lines) + "\n"


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(COPIES)
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / max(1, len(report["folders"]))
    for k, (folder, scores) in enumerate(report["folders"].items()):
        x = np.arange(len(kinds)) + k * width
        med = [np.median(scores[c]) for c in kinds]
        low = [np.median(scores[c]) - np.min(scores[c]) for c in kinds]
        ax.bar(x, med, width, yerr=[low, [0] * len(kinds)], capsize=3, label=os.path.basename(os.path.normpath(folder)))
    ax.axhline(report["threshold"], color="k", linestyle="--", linewidth=1, label="verification threshold")
    ax.axhline(0.95, color="grey", linestyle=":", linewidth=1, label="target median 0.95")
    ax.set_xticks(np.arange(len(kinds)) + width * (len(report["folders"]) - 1) / 2, kinds, rotation=20)
    ax.set_ylabel("cosine to the original (median; bar to the minimum)")
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.02)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    save_figure(fig, path)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="exported model folder")
    parser.add_argument("--notes", action="append", required=True, help="NSynth-format folder (repeatable)")
    parser.add_argument("--per-folder", type=int, default=11, help="notes per folder (default 11)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", required=True, help="output folder")
    return parser.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    from timbre_lobes.data.nsynth import resolve_note_folder
    from timbre_lobes.serving.inference import TimbreEncoder, check_model_folder

    check_model_folder(args.model)  # every input checked before anything is read or written
    args.notes = [resolve_note_folder(folder) for folder in args.notes]
    model = TimbreEncoder.from_hparams(source=args.model, run_opts={"device": "cpu"})
    report = measure(model, args.notes, args.per_folder, args.seed, progress=sys.stderr.isatty())
    report["rows"] = summary_rows(report)
    report["model"] = os.path.abspath(args.model)
    text = markdown(report, args.model)
    write_report(args.output, "robustness", report, text)
    plot(report, os.path.join(args.output, "robustness.png"))
    print(text)
    return report


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except FileNotFoundError as err:  # a missing model or note folder: its message, no traceback
        sys.exit(f"robustness.py: error: {err}")
