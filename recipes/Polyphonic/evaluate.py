#!/usr/bin/env python3
"""Scores an exported model on mixtures of unseen instruments: detection by enrolment, family presence.

    python recipes/Polyphonic/evaluate.py hparams/poly_baseline.yaml --model results/demo/model \\
        --data_folder corpora/rendered-default [--real_folder ../shared/data/nsynth-test-dev] [--key=value ...]

The validation mixtures (the corpus's nsynth-valid) choose the family-presence
thresholds; the test mixtures (nsynth-test: instruments never seen in training)
and the real notes' mixtures are scored with them. Writes ``polyphonic.json``,
``polyphonic.md``, ``by_sources.png`` and each set's ``<set>_mixtures.json`` manifest to
the output folder. See recipes/Polyphonic/README.md.
"""

import os
import sys
import time

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml

from timbre_lobes.data.nsynth import resolve_note_folder
from timbre_lobes.polyphonic.evaluate import embed_mixture_set, mixture_set, score_mixture_set
from timbre_lobes.polyphonic.report import write_report
from timbre_lobes.serving.inference import TimbreEncoder, check_model_folder


def main(argv):
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    with open(hparams_file) as handle:
        hparams = load_hyperpyyaml(handle, overrides)
    # Every input is checked before anything is written: a wrong path leaves nothing behind.
    check_model_folder(hparams["model"])
    folders = {
        "rendered valid": resolve_note_folder(hparams["data_folder"], "valid"),
        "rendered test": resolve_note_folder(hparams["data_folder"], "test"),
    }
    if hparams["real_folder"]:
        folders["real NSynth"] = resolve_note_folder(hparams["real_folder"], "test")
    out = hparams["output_folder"]
    os.makedirs(out, exist_ok=True)
    model = TimbreEncoder.from_hparams(source=hparams["model"], run_opts={"device": run_opts.get("device", "cpu")})
    start = time.time()
    scored, sets = {}, {}
    thresholds = None
    for name, folder in folders.items():
        per_count = hparams["valid_per_count"] if name == "rendered valid" else hparams["test_per_count"]
        manifest = os.path.join(out, name.replace(" ", "_") + "_mixtures.json")
        mixtures, enrol, root = mixture_set(
            folder, manifest, per_count, hparams["sampler"], n_enrol=hparams["n_enrol"], seed=hparams["seed"]
        )
        embedded = embed_mixture_set(
            model, mixtures, enrol, root, hparams["window_seconds"], hparams["hop_seconds"], desc=name
        )
        result = score_mixture_set(model, embedded, mixtures, thresholds)
        sets[name] = {
            "folder": folder,
            "n_mixtures": len(mixtures),
            "n_instruments": len(embedded["instruments"]),
            "n_enrol": hparams["n_enrol"],
            "manifest": manifest,
        }
        if name == "rendered valid":  # chooses the thresholds the other sets use
            thresholds = {m: r["family_presence"]["threshold"] for m, r in result.items()}
        scored[name] = result
        print(f"{name}: {len(mixtures)} mixtures scored")
    run = {
        "model": os.path.abspath(hparams["model"]),
        "threshold": model.threshold,
        "sampler": hparams["sampler"],
        "window_seconds": hparams["window_seconds"],
        "hop_seconds": hparams["hop_seconds"],
        "seed": hparams["seed"],
        "sets": sets,
        "wall_seconds": round(time.time() - start, 1),
        "description": "Family thresholds chosen on the rendered validation mixtures; "
        "the miss / false-alarm rates use the model's note-to-note verification threshold.",
        "title": f"{os.path.basename(os.path.normpath(hparams['model']))} on mixtures of unseen instruments",
    }
    print(write_report(scored, out, run))
    print(f"\nPolyphonic results in {out}")
    return scored


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (FileNotFoundError, ValueError) as err:  # a missing model or folder, a bad option: its message
        sys.exit(f"evaluate.py: error: {err}")
