#!/usr/bin/env python3
"""Probes what timbre embeddings encode: shallow classifiers on each model's embeddings.

    python recipes/probing/probe.py hparams/probing.yaml --model results/demo/model \\
        --data_folder ../shared/data/nsynth-test-dev [--model OTHER ...] [--key=value ...]

For every note of the data folder, each model's embedding (the extraction step,
cached) and two reference features with no training (log-mel and MFCC
statistics) are probed by the YAML's scikit-learn classifiers for family,
source, instrument, pitch, pitch class, octave, velocity and NSynth's qualities,
with folds grouped by instrument. The output folder gets ``probing.json``,
``probing.csv``, ``probing.md``, ``probing_bars.png``, ``tsne_family.png``,
``tsne_pitch.png``, ``tsne.npz`` and one interactive ``map_<model>.html`` per
model. See recipes/probing/README.md.
"""

import argparse
import os
import sys

import numpy as np
import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml

from timbre_lobes.atomic import atomic_open
from timbre_lobes.data.nsynth import resolve_note_folder
from timbre_lobes.data.nsynth_labels import QUALITIES
from timbre_lobes.probing.attributes import attribute_targets
from timbre_lobes.probing.collect import collect_feature_sets, name_models
from timbre_lobes.probing.html_map import write_map
from timbre_lobes.probing.plots import plot_probe_bars, plot_tsne_families, plot_tsne_pitch, tsne_coordinates
from timbre_lobes.probing.probes import run_probes
from timbre_lobes.probing.report import MD_FILE, write_report
from timbre_lobes.scripts import RERUN, run_script
from timbre_lobes.serving.inference import check_model_folder


def load(argv):
    """``(hparams, [(name, model folder)], device)`` from the command line."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--model", action="append", default=[])
    known, rest = parser.parse_known_args(argv)
    hparams_file, run_opts, overrides = sb.parse_arguments(rest)
    with open(hparams_file) as handle:
        hparams = load_hyperpyyaml(handle, overrides)
    return hparams, name_models(list(hparams["models"]) + known.model), run_opts["device"]


def chosen_probes(hparams):
    """The probes of ``use_probes``, from the YAML's ``probes``."""
    unknown = [name for name in hparams["use_probes"] if name not in hparams["probes"]]
    if unknown:
        raise ValueError(f"use_probes names {unknown}, not defined under probes: ({', '.join(hparams['probes'])})")
    return {name: hparams["probes"][name] for name in hparams["use_probes"]}


def map_rows(labels):
    """The labels shown when hovering a point of the map."""
    rows = []
    for row in labels:
        tags = [q for q, flag in zip(QUALITIES, row["qualities"]) if flag == "1"]
        rows.append(
            {
                **{k: row[k] for k in ("id", "instrument", "family", "source", "pitch", "velocity")},
                "qualities": ", ".join(tags) or "none",
            }
        )
    return rows


def save_tsne(path, ids, coordinates):
    """Writes the t-SNE coordinates (name -> ``[n, 2]``) and the notes' ids as one ``.npz``, atomically.

    An interrupted run leaves the earlier file whole, never a cut-short one.
    """
    with atomic_open(path, "wb") as handle:
        np.savez(handle, ids=np.array(ids), **coordinates)


def main(argv):
    hparams, models, device = load(argv)
    # Every input is checked before the output folder is made: a wrong path leaves nothing behind.
    note_folder = resolve_note_folder(hparams["data_folder"])
    for _, folder in models:
        check_model_folder(folder)
    probes = chosen_probes(hparams)
    out = hparams["output_folder"]
    os.makedirs(out, exist_ok=True)
    features, labels, info = collect_feature_sets(
        models, note_folder, out, hparams["reference_features"], hparams["batch_size"], device
    )
    groups = [row["instrument"] for row in labels]
    results = run_probes(
        features,
        attribute_targets(labels, hparams["attributes"]),
        groups,
        probes,
        n_folds=hparams["n_folds"],
        inner_folds=hparams["inner_folds"],
        seed=hparams["seed"],
        n_jobs=hparams["n_jobs"],
        blas_threads=hparams["blas_threads"],
    )
    run = {
        "data_folder": os.path.abspath(hparams["data_folder"]),
        "n_notes": len(labels),
        "n_instruments": len(set(groups)),
        "feature_sets": info,
        "settings": {
            "n_folds": hparams["n_folds"],
            "inner_folds": hparams["inner_folds"],
            "seed": hparams["seed"],
            "probes": {name: {"estimator": repr(p["estimator"]), "grid": p.get("grid")} for name, p in probes.items()},
        },
    }
    write_report(results, out, run)
    plot_probe_bars(results, os.path.join(out, "probing_bars.png"))
    coordinates = {
        name: tsne_coordinates(x, hparams["seed"], hparams["tsne_perplexity"], hparams["tsne_max_iter"])
        for name, x in features.items()
    }
    save_tsne(os.path.join(out, "tsne.npz"), [row["id"] for row in labels], coordinates)
    data_name = os.path.basename(os.path.normpath(hparams["data_folder"]))
    plot_tsne_families(
        coordinates,
        [row["family"] for row in labels],
        [row["source"] for row in labels],
        os.path.join(out, "tsne_family.png"),
        title=f"t-SNE of {len(labels)} notes of {data_name}: colour = family, marker = source",
    )
    plot_tsne_pitch(
        coordinates,
        [row["pitch"] for row in labels],
        os.path.join(out, "tsne_pitch.png"),
        title=f"t-SNE of {len(labels)} notes of {data_name}: colour = MIDI pitch",
    )
    if hparams["write_maps"]:
        for name, folder in models:
            write_map(
                os.path.join(out, f"map_{name}.html"),
                coordinates[name],
                map_rows(labels),
                [row["path"] for row in labels],
                audio=hparams["map_audio"],
                max_embedded_mb=hparams["map_max_embedded_mb"],
                title=f"{name}: t-SNE of {len(labels)} notes of {data_name}",
                caption=f"Embeddings of the model {folder}; colour = family, marker = source.",
            )
    with open(os.path.join(out, MD_FILE)) as handle:
        summary = handle.read()
    print(summary.split("## Each embedding")[0].split("## Best probe per attribute")[-1].strip())
    print(f"\nProbing results in {out}")
    return results


if __name__ == "__main__":
    run_script(main, sys.argv[1:], "probe.py", errors=(FileNotFoundError, ValueError), interrupted=RERUN)
