#!/usr/bin/env python3
"""A trained model on the real recordings beside the repository (``../shared/data``), beside its rendered figures.

    python benchmarks/real_samples.py --model results/demo/model [--shared ../shared/data] [--output DIR]

* ``nsynth-test-dev`` (400 real NSynth test notes, 25 instruments): open-set
  verification EER / minDCF and family micro/macro-F1, by
  :func:`timbre_lobes.scoring.evaluate.evaluate_model` (the recipes' protocol);
* ``philharmonia-sample`` (24 notes of 6 orchestral instruments) and
  ``rwc-sample/notes`` (13 single notes cut from RWC files): family accuracy,
  each file's instrument mapped to an NSynth family by :data:`PHILHARMONIA_FAMILIES`
  and :data:`RWC_FAMILIES` (RWC's two-letter instrument code, characters 4-5
  of its file name: ``171VCNOP`` = instrument 17, variation 1, ``VC`` cello).

A set that is absent is skipped and said so; a ``--shared`` folder that is missing or holds none of
them, and a missing or incomplete model folder, are one-line errors (exit 1) and write nothing.
Writes ``real_samples.json`` and ``real_samples.md`` into ``--output`` (default
``<model>/../real_samples``) and prints the table.
"""

import argparse
import glob
import os
import sys

from timbre_lobes.atomic import atomic_open, write_json

#: Philharmonia instrument (file name's first field) -> NSynth family.
PHILHARMONIA_FAMILIES = {
    "cello": "string",
    "viola": "string",
    "violin": "string",
    "double-bass": "string",
    "flute": "flute",
    "oboe": "reed",
    "clarinet": "reed",
    "bass-clarinet": "reed",
    "bassoon": "reed",
    "contrabassoon": "reed",
    "saxophone": "reed",
    "trumpet": "brass",
    "trombone": "brass",
    "tuba": "brass",
    "french-horn": "brass",
    "guitar": "guitar",
    "mandolin": "guitar",
    "banjo": "guitar",
}

#: RWC instrument code -> NSynth family (codes of RWC's pitched instruments; percussion left out).
RWC_FAMILIES = {
    "PF": "keyboard",  # piano
    "EP": "keyboard",  # electric piano
    "HC": "keyboard",  # harpsichord
    "CG": "guitar",  # classical guitar
    "UK": "guitar",  # ukulele
    "AG": "guitar",  # acoustic guitar
    "MA": "guitar",  # mandolin
    "EG": "guitar",  # electric guitar
    "EB": "bass",  # electric bass
    "VN": "string",  # violin
    "VL": "string",  # viola
    "VC": "string",  # cello
    "CB": "string",  # contrabass
    "HP": "string",  # harp
    "TR": "brass",  # trumpet
    "TB": "brass",  # trombone
    "TU": "brass",  # tuba
    "HR": "brass",  # horn
    "SS": "reed",  # soprano sax
    "AS": "reed",  # alto sax
    "TS": "reed",  # tenor sax
    "BS": "reed",  # baritone sax
    "OB": "reed",  # oboe
    "FG": "reed",  # bassoon
    "CL": "reed",  # clarinet
    "PC": "flute",  # piccolo
    "FL": "flute",  # flute
    "RC": "flute",  # recorder
    "SH": "flute",  # shakuhachi
    "VI": "mallet",  # vibraphone
    "MR": "mallet",  # marimba
    "XY": "mallet",  # xylophone
    "OR": "organ",  # pipe organ
    "AC": "reed",  # accordion
    "HM": "reed",  # harmonica
}


def philharmonia_family(path):
    """NSynth family of a Philharmonia file (``cello_A2_025_forte_arco-normal.mp3``), or None."""
    return PHILHARMONIA_FAMILIES.get(os.path.basename(path).split("_")[0].lower())


def rwc_family(path):
    """NSynth family of an RWC file (``171VCNOP_1.flac``: code ``VC``), or None."""
    name = os.path.basename(path)
    return RWC_FAMILIES.get(name[3:5].upper()) if len(name) >= 5 else None


def family_accuracy(model, files, family_of):
    """Family accuracy of ``model`` on ``files`` whose true family ``family_of(path)`` gives.

    Returns
    -------
    dict
        ``accuracy``, ``n``, ``n_unmapped``, ``n_unusable`` and per-file rows
        (file, true, predicted, probability).
    """
    mapped = [(f, family_of(f)) for f in files]
    usable = [(f, fam) for f, fam in mapped if fam is not None]
    rows, unusable = [], 0
    paths = [f for f, _ in usable]
    results = {r.path: r for r in model.iter_embed_files(paths)}
    for path, true in usable:
        result = results[path]
        if result.error is not None:
            unusable += 1
            continue
        probs = model.family_probabilities(result.embedding[None])[0]
        best = int(probs.argmax())
        rows.append(
            {
                "file": os.path.basename(path),
                "true": true,
                "predicted": model.family_labels[best],
                "probability": round(float(probs[best]), 3),
            }
        )
    correct = sum(r["true"] == r["predicted"] for r in rows)
    return {
        "accuracy": correct / len(rows) if rows else None,
        "n": len(rows),
        "n_unmapped": len(mapped) - len(usable),
        "n_unusable": unusable,
        "rows": rows,
    }


def family_sets(shared):
    """The family-accuracy sets under ``shared``: name -> (files, family_of); a set that is absent has no files."""
    return {
        "philharmonia-sample": (
            sorted(glob.glob(os.path.join(shared, "philharmonia-sample", "*.mp3"))),
            philharmonia_family,
        ),
        "rwc-sample/notes": (sorted(glob.glob(os.path.join(shared, "rwc-sample", "notes", "*.flac"))), rwc_family),
    }


def run(model_folder, shared, output, device="cpu"):
    """Scores every real sample set present under ``shared``; returns the report written to ``output``.

    Raises
    ------
    FileNotFoundError
        The model folder is missing or incomplete, or ``shared`` holds none of the sets
        (checked before anything is written).
    """
    from timbre_lobes.scoring.evaluate import evaluate_model
    from timbre_lobes.serving.inference import TimbreEncoder, check_model_folder

    nsynth = os.path.join(shared, "nsynth-test-dev")
    sets = family_sets(shared)
    if not os.path.isfile(os.path.join(nsynth, "examples.json")) and not any(files for files, _ in sets.values()):
        raise FileNotFoundError(
            f"{shared} holds none of the real sample sets (nsynth-test-dev/examples.json, philharmonia-sample/*.mp3, "
            "rwc-sample/notes/*.flac): pass --shared the folder that holds them"
        )
    check_model_folder(model_folder)
    os.makedirs(output, exist_ok=True)
    report = {"model": os.path.abspath(model_folder), "shared": os.path.abspath(shared), "skipped": []}
    if os.path.isfile(os.path.join(nsynth, "examples.json")):
        record = evaluate_model(
            model_folder, nsynth, os.path.join(output, "nsynth-test-dev"), device=device, verbose=False
        )
        keys = ("EER", "minDCF", "family_micro_f1", "family_macro_f1", "n_notes", "n_instruments")
        report["nsynth-test-dev"] = {k: record[k] for k in keys + CI_KEYS if k in record}
    else:
        report["skipped"].append(nsynth)
    model = TimbreEncoder.from_hparams(source=model_folder, run_opts={"device": device})
    for name, (files, family_of) in sets.items():
        if files:
            report[name] = family_accuracy(model, files, family_of)
        else:
            report["skipped"].append(os.path.join(shared, name))
    write_json(os.path.join(output, "real_samples.json"), report)
    with atomic_open(os.path.join(output, "real_samples.md")) as handle:
        handle.write(markdown(report))
    return report


#: The instrument-bootstrap keys of an evaluation record (timbre_lobes.scoring.evaluation.instrument_bootstrap).
CI_KEYS = ("EER_ci", "family_micro_f1_ci", "ci_level", "ci_instruments")


def markdown(report):
    from timbre_lobes.scoring.evaluation import with_ci

    lines = ["| real samples | notes | EER (%) | family micro-F1 / accuracy |", "|---|---:|---:|---:|"]
    if "nsynth-test-dev" in report:
        r = report["nsynth-test-dev"]
        eer = with_ci(r["EER"], r.get("EER_ci"), ".2f")
        f1 = with_ci(r["family_micro_f1"], r.get("family_micro_f1_ci"), ".3f")
        lines.append(f"| nsynth-test-dev | {r['n_notes']} | {eer} | {f1} |")
    for name in ("philharmonia-sample", "rwc-sample/notes"):
        if name in report and report[name]["accuracy"] is not None:
            r = report[name]
            lines.append(f"| {name} | {r['n']} | - | {r['accuracy']:.3f} |")
    lines += [f"| {os.path.basename(s)} | absent | | |" for s in report["skipped"]]
    if "nsynth-test-dev" in report and report["nsynth-test-dev"].get("EER_ci"):
        r = report["nsynth-test-dev"]
        lines += [
            "",
            f"In brackets: {100 * r['ci_level']:.0f} % confidence intervals from resampling the "
            f"{r['ci_instruments']} instruments (notes of one instrument are not independent draws).",
        ]
    return "\n".join(lines) + "\n"


#: The real samples' folder when ``--shared`` is not given: ``../shared/data`` beside the repository.
DEFAULT_SHARED = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "shared", "data"
)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="exported model folder")
    parser.add_argument(
        "--shared",
        default=None,
        help="folder of the real samples (default: ../shared/data beside the repository, skipped if absent)",
    )
    parser.add_argument("--output", default=None, help="default: real_samples/ beside the model folder")
    parser.add_argument("--device", default="cpu")
    return parser.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    output = args.output or os.path.join(os.path.dirname(os.path.abspath(args.model)), "real_samples")
    shared = args.shared or DEFAULT_SHARED
    if not os.path.isdir(shared):
        if args.shared is not None:  # a folder the user named: an error; the default may be absent (make demo)
            raise FileNotFoundError(
                f"no real samples at {shared} (not a folder): pass --shared the folder that holds them"
            )
        from timbre_lobes.serving.inference import check_model_folder

        check_model_folder(args.model)  # a wrong model folder is an error all the same
        print(f"real_samples.py: no real samples at {shared}; nothing to score")
        return None
    report = run(args.model, shared, output, args.device)
    print(markdown(report))
    print(f"Wrote {os.path.join(output, 'real_samples.json')}")
    return report


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (FileNotFoundError, ValueError) as err:  # a missing model or samples folder: its message, no traceback
        sys.exit(f"real_samples.py: error: {err}")
