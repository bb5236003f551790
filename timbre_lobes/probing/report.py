"""Probing results as files: ``probing.json``, ``probing.csv`` and the ``probing.md`` summary.

:func:`write_report` writes all three from :func:`timbre_lobes.probing.probes.run_probes`'s
output and the run's description. Scores are fractions in the JSON and CSV, and
percentages (mean ± std over folds) in the summary. ``probing.md`` says, for each
model, which attributes its embedding keeps more or less of than the best plain
spectral statistic: a timbre embedding is expected to keep family, source and
instrument, and to lose pitch and velocity.
"""

import csv
import math

from timbre_lobes.atomic import atomic_open, write_json

#: Files :func:`write_report` writes.
JSON_FILE, CSV_FILE, MD_FILE = "probing.json", "probing.csv", "probing.md"
CSV_FIELDS = [
    "feature_set",
    "attribute",
    "probe",
    "metric",
    "mean",
    "std",
    "macro_f1_mean",
    "macro_f1_std",
    "chance",
    "majority",
    "n_folds",
    "grouped",
    "available",
    "reason",
]
#: Attributes a timbre embedding should keep, and those it should lose.
TIMBRE_ATTRIBUTES = ("family", "source", "instrument")
NON_TIMBRE_ATTRIBUTES = ("pitch", "pitch_class", "octave", "velocity")


def _clean(value):
    """JSON has no NaN: NaN -> None, recursively."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _pct(value):
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def best_scores(results):
    """The best probe of each (feature set, attribute): ``{(set, attribute): score entry}``.

    Example
    -------
    >>> results = {"scores": [
    ...     {"feature_set": "e", "attribute": "family", "probe": "knn", "mean": 0.5},
    ...     {"feature_set": "e", "attribute": "family", "probe": "mlp", "mean": 0.7}]}
    >>> best_scores(results)[("e", "family")]["probe"]
    'mlp'
    """
    best = {}
    for score in results["scores"]:
        if score["mean"] is None or math.isnan(score["mean"]):
            continue
        key = (score["feature_set"], score["attribute"])
        if key not in best or score["mean"] > best[key]["mean"]:
            best[key] = score
    return best


def write_report(results, folder, run):
    """Writes ``probing.json``, ``probing.csv`` and ``probing.md`` into ``folder``; returns their paths.

    Arguments
    ---------
    results : dict
        ``run_probes``'s ``{"attributes", "scores"}``.
    folder : str
        Output folder (existing).
    run : dict
        What was probed: ``data_folder``, ``n_notes``, ``n_instruments``, ``feature_sets``
        (name -> info, with ``kind``), ``settings`` (folds, probes ...); stored in the JSON as is.
    """
    import os

    paths = {name: os.path.join(folder, name) for name in (JSON_FILE, CSV_FILE, MD_FILE)}
    write_json(paths[JSON_FILE], _clean({**run, **results}))
    attributes = results["attributes"]
    with atomic_open(paths[CSV_FILE], "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for score in results["scores"]:
            entry = attributes[score["attribute"]]
            writer.writerow(
                {
                    **{k: score[k] for k in ("feature_set", "attribute", "probe", "metric", "mean", "std")},
                    "macro_f1_mean": score.get("macro_f1_mean"),
                    "macro_f1_std": score.get("macro_f1_std"),
                    "chance": entry["chance"],
                    "majority": entry["majority_mean"],
                    "n_folds": entry["n_folds"],
                    "grouped": entry["grouped"],
                    "available": True,
                    "reason": "",
                }
            )
        for name, entry in attributes.items():
            if not entry["available"]:
                for feature_set in run["feature_sets"]:
                    writer.writerow(
                        {
                            "feature_set": feature_set,
                            "attribute": name,
                            "metric": entry["metric"],
                            "grouped": entry["grouped"],
                            "available": False,
                            "reason": entry["reason"],
                        }
                    )
    with atomic_open(paths[MD_FILE], "w") as handle:
        handle.write(summary_markdown(results, run))
    return paths


def summary_markdown(results, run):
    """The ``probing.md`` text: the run, the best probe per attribute, embedding vs references, every probe."""
    attributes, sets = results["attributes"], list(run["feature_sets"])
    best = best_scores(results)
    settings = run.get("settings", {})
    lines = [
        "# Probing: what the embeddings encode",
        "",
        f"Data: `{run['data_folder']}`, {run['n_notes']} notes of {run['n_instruments']} instruments.",
        "",
        "Feature sets:",
        "",
    ]
    for name, info in run["feature_sets"].items():
        if info["kind"] == "embedding":
            lines.append(f"- **{name}**: embeddings ({info['dim']} dims) of the model `{info['model']}`")
        else:
            args = ", ".join(f"{k}={v}" for k, v in info.get("arguments", {}).items())
            lines.append(f"- **{name}**: reference features ({info['dim']} dims), `{info['function']}({args})`")
    lines += [
        "",
        f"Probes: {', '.join(settings.get('probes', []))}, on standardised features, regularisation chosen by "
        f"a {settings.get('inner_folds', '?')}-fold inner cross-validation. Outer folds: "
        f"{settings.get('n_folds', '?')}, grouped by instrument (no instrument in both train and test) for every "
        "attribute but `instrument`, whose folds hold out notes of instruments that the probe's training folds "
        "hold other notes of. A class played by one instrument only can never be in the training fold of its "
        "own notes under grouped folds, so its notes are left out of that attribute (listed below the table). "
        "Scores: mean ± std over the outer folds, in %; accuracy, or mean average precision (mAP) for the "
        "qualities. Chance: 1 / number of classes (qualities: mean tag prevalence); majority: the train fold's "
        "most frequent class predicted for every test note.",
        "",
        "## Best probe per attribute",
        "",
        "| attribute | metric | chance | majority | " + " | ".join(sets) + " |",
        "|---|---|---|---|" + "---|" * len(sets),
    ]
    for name, entry in attributes.items():
        if not entry["available"]:
            lines.append(f"| {name} | {entry['metric']} | {entry['reason']} |" + " |" * (len(sets) + 1))
            continue
        cells = []
        for feature_set in sets:
            score = best.get((feature_set, name))
            cells.append("n/a" if score is None else f"{_pct(score['mean'])} ± {_pct(score['std'])} ({score['probe']})")
        lines.append(
            f"| {name} | {entry['metric']} | {_pct(entry['chance'])} | {_pct(entry['majority_mean'])} | "
            + " | ".join(cells)
            + " |"
        )
    left_out = [(n, e) for n, e in attributes.items() if e.get("dropped_classes")]
    if left_out:
        lines.append("")
        for name, entry in left_out:
            lines.append(
                f"- {name}: scored on {entry['n_notes']} notes; left out, one instrument each: "
                + ", ".join(str(c) for c in entry["dropped_classes"])
            )
    lines += ["", "## Each embedding against plain spectral statistics", ""]
    lines += comparison_lines(results, run)
    probes = list(dict.fromkeys(s["probe"] for s in results["scores"]))
    lines += ["", "## Every probe", ""]
    lookup = {(s["feature_set"], s["attribute"], s["probe"]): s for s in results["scores"]}
    for probe in probes:
        lines += [f"### {probe}", "", "| attribute | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]
        for name, entry in attributes.items():
            if not entry["available"]:
                continue
            cells = []
            for feature_set in sets:
                score = lookup.get((feature_set, name, probe))
                cells.append("n/a" if score is None else f"{_pct(score['mean'])} ± {_pct(score['std'])}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def comparison_lines(results, run):
    """Per model: how far its best probe is above or below the best reference feature's, attribute by attribute."""
    attributes = results["attributes"]
    best = best_scores(results)
    models = [n for n, i in run["feature_sets"].items() if i["kind"] == "embedding"]
    references = [n for n, i in run["feature_sets"].items() if i["kind"] == "reference"]
    if not references:
        return ["No reference features were probed."]
    lines = []
    for model in models:
        diffs, uninformative = {}, set()
        for name, entry in attributes.items():
            mine = best.get((model, name))
            theirs = [best[(r, name)] for r in references if (r, name) in best]
            if not entry["available"] or mine is None or not theirs:
                continue
            top = max(theirs, key=lambda s: s["mean"])
            noise = 100 * max(mine["std"] or 0.0, top["std"] or 0.0)
            diffs[name] = (100 * (mine["mean"] - top["mean"]), top["feature_set"], noise)
            if 100 * (top["mean"] - entry.get("chance", 0.0)) <= noise:
                uninformative.add(name)
        if not diffs:
            continue
        parts = [f"{name} {d:+.1f} points (vs {ref})" for name, (d, ref, _) in diffs.items()]
        lines.append(f"- **{model}** against the best reference feature: " + "; ".join(parts) + ".")
        # A difference within the larger standard deviation over folds counts as no difference.
        kept = [n for n in TIMBRE_ATTRIBUTES if n in diffs and diffs[n][0] >= -diffs[n][2]]
        # An attribute the statistics themselves hold no more than chance of (within the folds' spread)
        # has nothing to keep or lose: it is named apart, not counted either way.
        lost = [
            n for n in NON_TIMBRE_ATTRIBUTES if n in diffs and n not in uninformative and diffs[n][0] < -diffs[n][2]
        ]
        same = [n for n in NON_TIMBRE_ATTRIBUTES if n in diffs and n not in lost and n not in uninformative]
        timbre = [n for n in TIMBRE_ATTRIBUTES if n in diffs]
        other = [n for n in NON_TIMBRE_ATTRIBUTES if n in diffs and n not in uninformative]
        verdict = (
            f"  Timbre attributes it keeps at least as well as the spectral statistics (or within one standard "
            f"deviation over folds): {', '.join(kept) or 'none'} ({len(kept)} of {len(timbre)}). Pitch and loudness "
            f"attributes it keeps clearly less of (by more than one standard deviation): {', '.join(lost) or 'none'} "
            f"({len(lost)} of {len(other)})"
        )
        if same:
            verdict += f"; about as much of {', '.join(same)}"
        near_chance = [n for n in NON_TIMBRE_ATTRIBUTES if n in uninformative]
        if near_chance:
            verdict += f"; near chance for the spectral statistics too, so not judged: {', '.join(near_chance)}"
        if timbre and other and len(kept) == len(timbre) and len(lost) == len(other):
            verdict += ": the way a timbre embedding should go."
        else:
            verdict += "."
        lines.append(verdict)
    return lines or ["No embedding could be compared."]
