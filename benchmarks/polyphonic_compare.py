#!/usr/bin/env python3
"""Several models' polyphonic reports side by side: one table and one figure by number of sources.

    python benchmarks/polyphonic_compare.py --report baseline=results/polyphonic/polyphonic.json \\
        --report trained=results/polyphonic/poly_transMel/1986/mixtures/polyphonic.json \\
        [--method clip] [--output results/polyphonic/compare]

Each ``--report NAME=PATH`` is a ``polyphonic.json`` written by
``recipes/Polyphonic/evaluate.py`` or ``train.py``. Writes ``compare.md`` (detection EER
and family-presence micro-F1 by number of sources, for every set but the validation
one), ``compare.png`` (:func:`timbre_lobes.polyphonic.report.plot_by_sources`, one
line per model and set) and, where the reports kept their trial scores
(``<set>_scores.npz``), every model's difference from the first with paired
intervals (:func:`timbre_lobes.polyphonic.detection.paired_differences`) in
``compare.md`` and ``compare.json``.
"""

import argparse
import json
import os
import sys

import numpy as np

from timbre_lobes.atomic import atomic_open, write_json
from timbre_lobes.polyphonic.detection import paired_differences
from timbre_lobes.polyphonic.report import interval_text, plot_by_sources


def named_report(text):
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, path


def load(reports):
    """``{name: polyphonic.json record}``; a missing or unreadable file is a clear error."""
    records = {}
    for name, path in reports:
        try:
            with open(path) as handle:
                records[name] = json.load(handle)
        except (OSError, json.JSONDecodeError) as err:
            raise FileNotFoundError(f"--report {name}={path}: not a readable polyphonic.json ({err})") from err
        if not isinstance(records[name], dict) or not {"run", "results"} <= set(records[name]):
            raise FileNotFoundError(f"--report {name}={path}: not a polyphonic.json report (no run and results)")
    return records


def valid_set(record):
    """The set that chose a report's thresholds (reports before 2026-12-07 name none: "rendered valid")."""
    return record["run"].get("valid_set", "rendered valid")


def mixture_settings(record):
    """What decides a report's mixtures: the sampler, the mixture seed, each set's folder and size."""
    run = record["run"]
    sets = {name: (info.get("folder"), info.get("n_mixtures")) for name, info in run.get("sets", {}).items()}
    return json.dumps([run.get("sampler"), run.get("mixture_seed", run.get("seed")), sets], sort_keys=True)


def same_mixtures_warning(records):
    """A warning line when the reports were not scored on the same mixtures (else None)."""
    kinds = {name: mixture_settings(record) for name, record in records.items()}
    if len(set(kinds.values())) <= 1:
        return None
    return (
        "**Warning: these reports were not scored on the same mixtures** (sampler, mixture_seed or sets differ: "
        + ", ".join(sorted(kinds))
        + "); score every model with the same settings to compare them."
    )


def table(records, method):
    """The Markdown table: one row per model and set."""
    counts = sorted(
        {int(n) for r in records.values() for s in r["results"].values() for n in s[method]["detection"]["by_sources"]}
    )
    head = " | ".join(f"{n} src" for n in counts)
    lines = [
        f"Method `{method}`. Detection: EER (%) of 'is the enrolled instrument playing?' trials; "
        "family presence: micro-F1. In square brackets, where the reports have them: 95 % intervals with the "
        "set's instruments resampled (recipes/Polyphonic/README.md).",
        "",
        f"| model | set | detection EER: all | {head} | family micro-F1: all | {head} | family micro-mAP |",
        "|---|---|---:|" + "---:|" * len(counts) + "---:|" + "---:|" * len(counts) + "---:|",
    ]
    for name, record in records.items():
        for set_name, by_method in record["results"].items():
            if set_name == valid_set(record):
                continue
            res = by_method[method]
            det, fam = res["detection"], res["family_presence"]

            def cell(stats, key, fmt):
                return "n/a" if stats is None else format(stats[key], fmt)

            eers = " | ".join(cell(det["by_sources"].get(str(n)), "EER", ".1f") for n in counts)
            f1s = " | ".join(cell(fam["by_sources"].get(str(n)), "micro_f1", ".3f") for n in counts)
            eer = cell(det["all"], "EER", ".1f") + interval_text(res, "EER_ci", 1)
            f1 = cell(fam["all"], "micro_f1", ".3f") + interval_text(res, "family_micro_f1_ci", 3)
            mean_ap = cell(fam["all"], "micro_mAP", ".3f") + interval_text(res, "family_micro_mAP_ci", 3)
            lines.append(f"| {name} | {set_name} | {eer} | {eers} | {f1} | {f1s} | {mean_ap} |")
    return "\n".join(lines)


def read_scores(path, record, set_name):
    """One set's ``<set>_scores.npz`` beside a report (None for reports written before they were kept)."""
    name = record["run"].get("sets", {}).get(set_name, {}).get("scores")
    if not name:
        return None
    file = os.path.join(os.path.dirname(os.path.abspath(path)), name)
    if not os.path.isfile(file):
        return None
    with np.load(file) as data:
        return {key: data[key] for key in data.files}


def paired(records, paths, method, n_resamples=1000):
    """Every model against the first, set by set, on the same mixtures: differences with paired intervals.

    Returns ``(rows, notes)``: rows ``{"model", "set", "EER": {"difference", "ci"}, ...}``
    (:func:`timbre_lobes.polyphonic.detection.paired_differences`), and a line for each
    pair that could not be paired (no scores kept, other mixtures or instruments).
    """
    names = list(records)
    base_name, rows, notes = names[0], [], []
    base = records[base_name]
    for name in names[1:]:
        record = records[name]
        for set_name in base["results"]:
            if set_name != valid_set(base) and set_name not in record["results"]:
                notes.append(f"{name}: no {set_name} set (the first report, {base_name}, has one)")
        for set_name in record["results"]:
            if set_name == valid_set(record):
                continue
            if set_name not in base["results"]:
                notes.append(f"{name} / {set_name}: {base_name} has no such set")
                continue
            a, b = read_scores(paths[base_name], base, set_name), read_scores(paths[name], record, set_name)
            if a is None or b is None:
                notes.append(f"{name} / {set_name}: no scores kept beside the report (written before 2026-12-07)")
                continue
            keys = ("mixture_ids", "instruments", "detection_truth", "family_truth")
            if not all(np.array_equal(a[k], b[k]) for k in keys):
                notes.append(
                    f"{name} / {set_name}: not paired: {len(b['mixture_ids'])} mixtures of {len(b['instruments'])} "
                    f"enrolled instruments against {base_name}'s {len(a['mixture_ids'])} of {len(a['instruments'])}"
                    + (" (other mixtures, or other families)" if len(a["mixture_ids"]) == len(b["mixture_ids"]) else "")
                )
                continue
            mixtures = [{"sources": [{"instrument": i} for i in json.loads(str(m))]} for m in a["mixture_instruments"]]
            found = paired_differences(
                *(
                    {
                        "detection": d[f"{method}_detection"],
                        "family": d[f"{method}_family"],
                        "family_threshold": float(d[f"{method}_family_threshold"]),
                    }
                    for d in (a, b)
                ),
                a["detection_truth"],
                [str(i) for i in a["instruments"]],
                a["family_truth"],
                mixtures,
                n_resamples=n_resamples,
            )
            rows.append({"model": name, "set": set_name, **found})
    return rows, notes


def paired_table(rows, notes, baseline, method):
    """The Markdown of :func:`paired`'s rows."""
    lines = [
        f"Paired differences, model minus `{baseline}` on the same mixtures (method `{method}`): 95 % intervals "
        "with the set's instruments resampled once for both models; an interval without 0 is more than the draw "
        "of instruments.",
        "",
        "| model | set | detection EER (points) | family micro-F1 | family micro-mAP |",
        "|---|---|---:|---:|---:|",
    ]

    def cell(found, digits):
        ci = found["ci"]
        text = f"{found['difference']:+.{digits}f}"
        return text + (f" [{ci[0]:+.{digits}f}, {ci[1]:+.{digits}f}]" if ci else " (no interval)")

    for row in rows:
        lines.append(
            f"| {row['model']} | {row['set']} | {cell(row['EER'], 1)} | {cell(row['family_micro_f1'], 3)} "
            f"| {cell(row['family_micro_mAP'], 3)} |"
        )
    return "\n".join(lines + [""] + [f"* {n}" for n in notes])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--report",
        type=named_report,
        action="append",
        required=True,
        metavar="NAME=PATH",
        help="a polyphonic.json (of evaluate.py or train.py) and the name it gets; repeat for each model",
    )
    parser.add_argument(
        "--method", choices=("clip", "windows"), default="clip", help="the scoring method shown (default: clip)"
    )
    parser.add_argument(
        "--output",
        default=os.path.join("results", "polyphonic", "compare"),
        help="folder of compare.md and compare.png (default: results/polyphonic/compare)",
    )
    parser.add_argument(
        "--resamples",
        type=int,
        default=1000,
        help="bootstrap resamples of the paired intervals (the first report is the baseline; default 1000)",
    )
    args = parser.parse_args(argv)
    records = load(args.report)
    text = table(records, args.method)
    warning = same_mixtures_warning(records)
    if warning:
        text = warning + "\n\n" + text
        print(warning, file=sys.stderr)
    rows, notes = paired(records, dict(args.report), args.method, args.resamples) if len(records) > 1 else ([], [])
    if rows or notes:
        text += "\n\n" + paired_table(rows, notes, args.report[0][0], args.method)
    os.makedirs(args.output, exist_ok=True)
    with atomic_open(os.path.join(args.output, "compare.md"), "w") as handle:
        handle.write(text + "\n")
    write_json(os.path.join(args.output, "compare.json"), {"method": args.method, "paired": rows, "notes": notes})
    lines, styles = {}, {}
    for k, (name, record) in enumerate(records.items()):
        sets = [n for n in record["results"] if n != valid_set(record)]
        for j, set_name in enumerate(sets):  # colour: the model; line style: the set
            key = f"{name}: {set_name}"
            block = record["results"][set_name][args.method]
            lines[key] = {args.method: {part: _int_keys(value) for part, value in block.items()}}
            styles[key] = (f"C{k}", ("-", "--", ":", "-.")[j % 4])
    plot_by_sources(lines, os.path.join(args.output, "compare.png"), f"method: {args.method}", styles=styles)
    print(text)
    print(f"\nWritten to {args.output}")


def _int_keys(block):
    """A JSON block with its ``by_sources`` keys back to ints (JSON made them strings)."""
    if isinstance(block, dict) and "by_sources" in block:
        return {**block, "by_sources": {int(n): v for n, v in block["by_sources"].items()}}
    return block


if __name__ == "__main__":
    try:
        main()
    except FileNotFoundError as err:
        sys.exit(f"polyphonic_compare.py: error: {err}")
