#!/usr/bin/env python3
"""How much of each note should a model embed? EER and family F1 against the span embedded.

    python benchmarks/note_span.py --model results/demo/model [--model OTHER ...] \\
        --notes corpora/rendered-default/nsynth-test --notes ../shared/data/nsynth-test-dev \\
        --spans 1.5 2.5 3 whole --output results/note_span

Each model is evaluated (:func:`timbre_lobes.scoring.evaluate.evaluate_model`, the
recipes' protocol and trials) on each NSynth-format folder with each note cut to
its first *T* seconds, *T* one of ``--spans`` (``whole``: the whole note). The
weights stay the same: only the span embedded changes. The CPU budget's models
learn from 1.5 s crops starting within a note's first second, i.e. from its first
2.5 s, and judge whole 4 s notes worse than their first 2.5 s (docs/experiments,
finding 17); ``eval_seconds`` in the system YAMLs sets the span a recipe
evaluates and exports.

Writes ``note_span.json``, ``note_span.md`` (one row per model, folder and span:
EER %, minDCF, family micro/macro-F1, with the evaluation's 95 % intervals from
resampling instruments) and ``note_span.png`` (EER and family micro-F1 against the span) into
``--output``; each evaluation's own files go to ``--output/<model>/<folder>/<span>``
and are reused by a second run (the extraction cache).
"""

import argparse
import os
import sys

from timbre_lobes.argtypes import positive_int, span_seconds
from timbre_lobes.atomic import save_figure, write_report

#: The spans of the default run, in s ("whole" = None: the whole note).
DEFAULT_SPANS = ["1.5", "2.5", "3", "whole"]


def _label(span):
    return "whole" if span is None else f"{span:g} s"


def short_names(paths):
    """Distinct short names of folders: the fewest trailing path parts that tell them apart.

    A model's export folder (``.../<run>/model``) is named after its run, so the
    recipes' ``results/<system>/<seed>/model`` folders of one seed get
    ``<system>/<seed>``.

    Example
    -------
    >>> short_names(["/r/transMel/1986/model", "/r/melspec/1986/model"])
    ['transMel/1986', 'melspec/1986']
    >>> short_names(["/r/transMel/1986/model"]), short_names(["/runs/bench/transMel/model", "/data/x"])
    (['transMel/1986'], ['transMel', 'x'])
    """
    parts = []
    for path in paths:
        split = os.path.normpath(os.path.abspath(path)).split(os.sep)
        parts.append(split[:-1] if split[-1] == "model" and len(split) > 2 else split)
    first = 2 if any(p[-1].isdigit() for p in parts) else 1  # a seed alone says little: name its system too
    for depth in range(first, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(set(map(tuple, parts))):
            return names
    return ["/".join(p) for p in parts]


def measure(models, folders, spans, output, batch_size=32):
    """Evaluates every model on every folder at every span; returns the JSON-ready rows.

    Raises
    ------
    FileNotFoundError
        A model folder is missing or incomplete.
    timbre_lobes.data.nsynth.DataFolderError
        A note folder holds no usable note.
    """
    from tqdm import tqdm

    from timbre_lobes.scoring.evaluate import evaluate_model

    rows = []
    model_names, folder_names = dict(zip(models, short_names(models))), dict(zip(folders, short_names(folders)))
    runs = [(m, f, s) for m in models for f in folders for s in spans]
    for model, folder, span in tqdm(runs, desc="evaluations", disable=not sys.stderr.isatty()):
        out = os.path.join(output, model_names[model], folder_names[folder], _label(span).replace(" ", ""))
        record = evaluate_model(model, folder, out, batch_size=batch_size, verbose=False, eval_seconds=span)
        rows.append(
            {
                "model": os.path.abspath(model),
                "model_name": model_names[model],
                "folder": os.path.abspath(folder),
                "folder_name": folder_names[folder],
                "span_seconds": span,
                **{k: record.get(k) for k in ("EER", "minDCF", "family_micro_f1", "family_macro_f1", "n_notes")},
                **{k: record[k] for k in ("EER_ci", "family_micro_f1_ci", "ci_level") if record.get(k) is not None},
            }
        )
    return rows


def markdown(rows):
    from timbre_lobes.scoring.evaluation import with_ci

    lines = [
        "| model | notes | span embedded | EER (%) [95 % interval] | minDCF | family micro-F1 [95 % interval] "
        "| family macro-F1 |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model_name']} | {r['folder_name']} | {_label(r['span_seconds'])} "
            f"| {with_ci(r['EER'], r.get('EER_ci'), '.2f')} | {r['minDCF']:.3f} "
            f"| {with_ci(r['family_micro_f1'], r.get('family_micro_f1_ci'), '.3f')} | {r['family_macro_f1']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spans = sorted({r["span_seconds"] for r in rows}, key=lambda s: float("inf") if s is None else s)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for model, folder in dict.fromkeys((r["model_name"], r["folder_name"]) for r in rows):
        mine = {r["span_seconds"]: r for r in rows if (r["model_name"], r["folder_name"]) == (model, folder)}
        x = [i for i, s in enumerate(spans) if s in mine]
        for ax, key in zip(axes, ("EER", "family_micro_f1")):
            ax.plot(x, [mine[spans[i]][key] for i in x], marker="o", label=f"{model}, {folder}")
    for ax, title in zip(axes, ("verification EER (%)", "family micro-F1")):
        ax.set_xticks(range(len(spans)), [_label(s) for s in spans])
        ax.set_xlabel("span of each note embedded (from its start)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", required=True, help="exported model folder (repeatable)")
    parser.add_argument("--notes", action="append", required=True, help="NSynth-format folder (repeatable)")
    parser.add_argument(
        "--spans",
        nargs="+",
        type=span_seconds,
        default=[span_seconds(s) for s in DEFAULT_SPANS],
        help="spans in s from each note's start, or 'whole' (default: 1.5 2.5 3 whole)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--output", required=True, help="output folder")
    args = parser.parse_args(argv)
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        parser.error(f"--output {args.output} is a file: give a folder")
    return args


def main(argv):
    args = parse_args(argv)
    from timbre_lobes.data.nsynth import resolve_note_folder
    from timbre_lobes.serving.inference import check_model_folder

    for model in args.model:  # every input checked before anything is read or written
        check_model_folder(model)
    folders = [resolve_note_folder(folder) for folder in args.notes]
    rows = measure(args.model, folders, args.spans, args.output, args.batch_size)
    text = markdown(rows)
    write_report(args.output, "note_span", {"rows": rows}, text)
    plot(rows, os.path.join(args.output, "note_span.png"))
    print(text)
    return rows


if __name__ == "__main__":
    from timbre_lobes.scripts import run_script

    run_script(main, sys.argv[1:], "note_span.py", errors=(FileNotFoundError, ValueError))
