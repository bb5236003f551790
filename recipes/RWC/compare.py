#!/usr/bin/env python3
"""Scratch vs fine-tuned on RWC under one budget, drawn as the paper's Figure 2.

    python recipes/RWC/compare.py --pretrained transMel=results/demo/model \\
        [--pretrained melspec=results/melspec/1986/model ...] [--data_folder=/path/to/RWC] \\
        [--epochs 10] [--out results/RWC/compare] [-- --batch_size=32 --crop_seconds=1.5 ...]

For each system it runs ``recipes/RWC/train.py`` twice, ``hparams/RWC/scratch.yaml`` and
``hparams/RWC/finetune.yaml`` with ``--system_hparams=hparams/<system>.yaml``, both at the sizes of
the pretrained model (read from its run's ``hyperparams.yaml``, beside the export folder) and with
the same overrides (after ``--``), then draws ``<out>/figure2.png``: test-split category micro- and
macro-F1 per epoch, solid lines from scratch, dashed fine-tuned, one colour per system; and
``<out>/test_f1.csv``, every run's rows; and ``<out>/final_f1.md`` / ``final_f1.json``, each system's
fine-tuned minus scratch micro-F1 of the selected checkpoints with a 95 % interval (paired bootstrap
over the test categories). ``--plot-only`` redraws from the runs already there.

On the stand-in corpus it also checks whether the transfer is to unheard sounds: the source groups
of the stand-in's test variations (``standin.json``) against those each pretrained model was
trained on (the ``nsynth-train`` and ``nsynth-valid`` notes of the corpus its ``model_info.json``
names), written to ``<out>/transfer_check.json``, printed, and said in the figure's title.
"""

import argparse
import csv
import json
import os
import subprocess
import sys

import numpy as np
from rwc_prepare import check_rwc_folder
from transfer import F1_FIELDS, read_f1_log, size_overrides

from timbre_lobes.atomic import atomic_open, save_figure, write_json
from timbre_lobes.scoring.evaluation import cluster_bootstrap

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
#: Keys that size the modules a fine-tuned run loads; the scratch run gets the same.
SIZE_KEYS = (
    "n_filters",
    "win_ms",
    "hop_ms",
    "n_fft",
    "lowest_note",
    "transform_output",
    "dynamic_range_db",
    "resnet_channels",
    "resnet_blocks",
    "resnet_strides",
    "lde_components",
    "freq_collapse",
    "emb_dim",
    "head_type",
)
TRANSFERS = ("scratch", "finetune")
DEFAULT_STANDIN = os.path.join(REPO, "corpora", "rwc-standin")


def heard_groups(model_folder):
    """Source groups of the notes an exported NSynth model was trained and validated on, or None if unknown.

    Read from the ``nsynth-train`` and ``nsynth-valid`` ``examples.json`` of the corpus its
    ``model_info.json`` names (``data_folder``, as given to train.py: relative paths are tried from
    the working folder, then the repository). Notes without ``source_group`` (or ``soundfont``, for
    older rendered corpora), such as real NSynth's, count as ``"unnamed"``.
    """
    with open(os.path.join(model_folder, "model_info.json")) as handle:
        folder = json.load(handle).get("data_folder") or ""
    for root in (folder, os.path.join(REPO, folder)):
        paths = [os.path.join(root, f"nsynth-{split}", "examples.json") for split in ("train", "valid")]
        if folder and all(os.path.isfile(p) for p in paths):
            groups = set()
            for path in paths:
                with open(path) as handle:
                    notes = json.load(handle).values()
                groups |= {m.get("source_group") or m.get("soundfont") or "unnamed" for m in notes}
            return groups
    return None


def test_variation_groups(standin_folder):
    """``{source group: [categories]}`` of the stand-in's test variations (its ``standin.json``)."""
    with open(os.path.join(standin_folder, "standin.json")) as handle:
        summary = json.load(handle)
    groups = {}
    for category, (variation, _name) in sorted(summary["test_variation"].items()):
        groups.setdefault(summary["sources"][str(variation)][1], []).append(category)
    return groups


def transfer_check(pairs, standin_folder):
    """Per system: the stand-in's test-variation groups, those its pretrained model heard, and whether any."""
    tested = test_variation_groups(standin_folder)
    check = {}
    for system, model in pairs:
        heard = heard_groups(model)
        check[system] = {
            "pretrained_model": os.path.abspath(model),
            "test_variation_groups": tested,
            "pretrained_heard_groups": None if heard is None else sorted(heard),
            "heard_test_groups": None if heard is None else sorted(set(tested) & heard),
        }
    return check


def check_title(check):
    """One line for the figure: are the stand-in's test variations new to every pretrained model?"""
    groups = sorted({g for c in check.values() for g in c["test_variation_groups"]})
    heard = sorted({s for s, c in check.items() if c["heard_test_groups"]})
    unknown = sorted(s for s, c in check.items() if c["heard_test_groups"] is None)
    line = f"stand-in; test variations from {', '.join(groups)}: "
    if heard:
        return line + f"HEARD in pre-training by {', '.join(heard)} (not a transfer to unseen sounds)"
    if unknown:
        return line + f"pre-training data of {', '.join(unknown)} unknown"
    return line + "never heard in pre-training"


def check_system(system, model_folder):
    """Refuses, before any run, a system without ``hparams/<system>.yaml`` or one the export was not trained as.

    Raises
    ------
    FileNotFoundError
        No such system YAML.
    ValueError
        The export's ``model_info.json`` names another system.
    """
    if not os.path.isfile(os.path.join(REPO, "hparams", f"{system}.yaml")):
        known = sorted(f[:-5] for f in os.listdir(os.path.join(REPO, "hparams")) if f.endswith(".yaml"))
        raise FileNotFoundError(f"--pretrained {system}=...: no hparams/{system}.yaml (systems: {', '.join(known)})")
    info = os.path.join(model_folder, "model_info.json")
    if os.path.isfile(info):
        with open(info) as handle:
            trained = json.load(handle).get("system")
        if trained and trained != system:
            raise ValueError(f"--pretrained {system}={model_folder}: that model is a {trained} model")


def pretrained_sizes(model_folder):
    """The size overrides of the run that exported ``model_folder`` (its ``../hyperparams.yaml``).

    Raises
    ------
    FileNotFoundError
        The export (or one of its files) or its run's ``hyperparams.yaml`` is missing.
    """
    from timbre_lobes.serving.inference import check_model_folder

    run_yaml = os.path.join(os.path.dirname(os.path.abspath(model_folder)), "hyperparams.yaml")
    check_model_folder(model_folder)
    if not os.path.isfile(run_yaml):
        raise FileNotFoundError(
            f"{run_yaml} is missing: compare.py reads the pretrained model's sizes from the hyperparams.yaml of "
            "the run that exported it; copy that file beside the export folder"
        )
    return size_overrides(run_yaml, SIZE_KEYS)


def standin_folder(extra):
    """The stand-in corpus train.py uses: ``--standin_folder=`` among the overrides, else the YAML's default."""
    for arg in extra:
        if arg.startswith("--standin_folder="):
            return os.path.join(REPO, arg.split("=", 1)[1])
    return DEFAULT_STANDIN


def run_folder(out, system, transfer):
    return os.path.join(out, system, transfer)


def train(system, transfer, model_folder, out, data_folder, epochs, extra):
    """Runs one training as a user would; raises CalledProcessError when it fails (its output is above)."""
    overlay = os.path.join(REPO, "hparams", "RWC", f"{transfer}.yaml")
    cmd = [sys.executable, os.path.join(HERE, "train.py"), overlay]
    cmd += [f"--system_hparams={os.path.join(REPO, 'hparams', f'{system}.yaml')}"]
    cmd += [f"--output_folder={run_folder(out, system, transfer)}", f"--number_of_epochs={epochs}"]
    cmd += [f"--data_folder={data_folder}"] if data_folder else []
    cmd += pretrained_sizes(model_folder) if model_folder else []
    cmd += [f"--pretrained_model={model_folder}"] if transfer == "finetune" else []
    cmd += list(extra)
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)


def collect(out, systems):
    """Every run's rows (system, transfer, epoch ...) from their ``test_f1.csv``."""
    rows = []
    for system in systems:
        for transfer in TRANSFERS:
            rows += read_f1_log(os.path.join(run_folder(out, system, transfer), "test_f1.csv"))
    return rows


def category_counts(results_file):
    """``(labels, correct [categories], notes [categories])`` from a run's ``results.json`` confusion matrix.

    Raises
    ------
    FileNotFoundError
        No ``results.json`` (the run did not finish its test).
    """
    if not os.path.isfile(results_file):
        raise FileNotFoundError(f"{results_file} missing: that run did not finish (rerun the same command)")
    with open(results_file) as handle:
        record = json.load(handle)
    matrix = np.asarray(record["family_confusion"], dtype=np.int64)  # rows: true category, columns: predicted
    return record["family_labels"], np.diag(matrix), matrix.sum(axis=1)


def final_difference(out, systems, n_resamples=1000, seed=0):
    """Fine-tuned minus scratch test micro-F1 of each system's selected checkpoints, with a 95 % interval.

    Single-label micro-F1 is accuracy. The interval is a paired cluster bootstrap
    (:func:`timbre_lobes.scoring.evaluation.cluster_bootstrap`) over the test categories:
    a resample draws categories with replacement and scores both runs on the same draw, so
    the interval is of the difference, with the notes of one category (on the stand-in, one
    held-out instrument) moving together, not treated as independent.

    Returns
    -------
    dict
        ``{system: {scratch, finetune, difference, difference_ci, n_categories, n_notes}}``.
    """
    report = {}
    for system in systems:
        runs = {t: category_counts(os.path.join(run_folder(out, system, t), "results.json")) for t in TRANSFERS}
        (labels_s, right_s, notes), (labels_f, right_f, notes_f) = runs["scratch"], runs["finetune"]
        if labels_s != labels_f or not np.array_equal(notes, notes_f):
            raise ValueError(f"{system}: the scratch and fine-tuned runs were tested on different label sets or notes")
        keep = notes > 0
        right_s, right_f, notes = right_s[keep], right_f[keep], notes[keep]

        def difference(counts, right_s=right_s, right_f=right_f, notes=notes):
            total = float(np.dot(counts, notes))
            return (np.dot(counts, right_f) - np.dot(counts, right_s)) / total

        ones = np.ones(len(notes))
        report[system] = {
            "scratch": float(right_s.sum() / notes.sum()),
            "finetune": float(right_f.sum() / notes.sum()),
            "difference": float(difference(ones)),
            "difference_ci": cluster_bootstrap(len(notes), difference, n_resamples, seed=seed),
            "n_categories": int(len(notes)),
            "n_notes": int(notes.sum()),
        }
    return report


def difference_lines(report):
    """The Markdown table of :func:`final_difference`."""
    lines = [
        "Test category micro-F1 of the selected checkpoints (lowest validation EER); 95 % interval of the",
        "difference: paired bootstrap over the test categories.",
        "",
        "| system | from scratch | fine-tuned | difference [95 % interval] | categories / notes |",
        "|---|---:|---:|---:|---:|",
    ]
    for system, r in report.items():
        ci = r["difference_ci"]
        interval = f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else " [n/a]"
        lines.append(
            f"| {system} | {r['scratch']:.3f} | {r['finetune']:.3f} | {r['difference']:+.3f}{interval} "
            f"| {r['n_categories']} / {r['n_notes']} |"
        )
    return "\n".join(lines)


def plot_figure2(rows, path, title="RWC categories, test split"):
    """Draws micro- and macro-F1 per epoch: solid = scratch, dashed = fine-tuned, a colour per system."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = list(dict.fromkeys(r["system"] for r in rows))
    colours = {s: f"C{i}" for i, s in enumerate(systems)}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, metric, name in zip(axes, ("family_micro_f1", "family_macro_f1"), ("micro-F1", "macro-F1")):
        for system in systems:
            for transfer, style, marker in (("scratch", "-", "o"), ("finetune", "--", "s")):
                run = sorted(
                    (int(r["epoch"]), float(r[metric]))
                    for r in rows
                    if (r["system"], r["transfer"]) == (system, transfer)
                )
                if run:
                    label = f"{system} {'from scratch' if transfer == 'scratch' else 'fine-tuned'}"
                    ax.plot(*zip(*run), style, color=colours[system], marker=marker, markersize=4, label=label)
        ax.set_xlabel("epoch")
        epochs = sorted({int(r["epoch"]) for r in rows})
        if len(epochs) <= 12:
            ax.set_xticks(epochs)  # one tick per epoch, even for a single one
        else:
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_ylabel(f"category {name}")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylim(0, 1)
    handles, labels = axes[0].get_legend_handles_labels()  # below the plots: it never hides a curve
    fig.legend(handles, labels, loc="lower center", ncol=min(len(systems), 3) * 2, fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.1 if len(systems) <= 3 else 0.16, 1, 1))
    save_figure(fig, path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pretrained",
        action="append",
        default=[],
        metavar="SYSTEM=EXPORT",
        help="a system and the exported NSynth model its fine-tuned run starts from",
    )
    parser.add_argument("--data_folder", default=None, help="RWC folder (default: the stand-in corpus)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default="results/RWC/compare")
    parser.add_argument(
        "--plot-only",
        action="store_true",
        help="redraw from the runs already in --out (every system found there, unless --pretrained names some)",
    )
    parser.add_argument("extra", nargs="*", help="overrides for every run (after --)")
    args = parser.parse_args(argv)
    pairs = [item.split("=", 1) for item in args.pretrained]
    if any(len(p) != 2 for p in pairs):
        parser.error("--pretrained takes SYSTEM=EXPORT_FOLDER")
    if not pairs and not args.plot_only:
        parser.error("give at least one --pretrained SYSTEM=EXPORT_FOLDER (or --plot-only)")
    out = os.path.abspath(args.out)
    systems = [system for system, _ in pairs] or sorted(
        d for d in (os.listdir(out) if os.path.isdir(out) else []) if os.path.isdir(run_folder(out, d, "scratch"))
    )
    if not args.plot_only:
        # Every input before the first run: a wrong path or system stops here, and nothing is made.
        if args.data_folder:
            check_rwc_folder(args.data_folder)
        for system, model in pairs:
            pretrained_sizes(model)
            check_system(system, model)
        for system, model in pairs:
            for transfer in TRANSFERS:
                data_folder = os.path.abspath(args.data_folder) if args.data_folder else None  # train.py runs in REPO
                train(system, transfer, os.path.abspath(model), out, data_folder, args.epochs, args.extra)
    rows = collect(out, systems)
    if not rows:
        sys.exit(f"compare.py: error: no test_f1.csv of {', '.join(systems) or 'any system'} under {out}")
    os.makedirs(out, exist_ok=True)
    with atomic_open(os.path.join(out, "test_f1.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=F1_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    title, check_file = "RWC categories, test split", os.path.join(out, "transfer_check.json")
    # A stand-in (the default one, or one given as --data_folder) says which banks its test variations
    # come from; real RWC does not, and a verdict left by an earlier stand-in run must not title it.
    standin = standin_folder(args.extra) if not args.data_folder else os.path.abspath(args.data_folder)
    if not args.plot_only:
        if os.path.isfile(os.path.join(standin, "standin.json")):
            check = transfer_check(pairs, standin)
            write_json(check_file, check)
            title = check_title(check)
            print(title)
        elif os.path.isfile(check_file):
            os.remove(check_file)
    elif os.path.isfile(check_file):
        with open(check_file) as handle:
            title = check_title(json.load(handle))
    plot_figure2(rows, os.path.join(out, "figure2.png"), title=title)
    tested = [
        s
        for s in systems
        if all(os.path.isfile(os.path.join(run_folder(out, s, t), "results.json")) for t in TRANSFERS)
    ]
    if tested:
        report = final_difference(out, tested)
        write_json(os.path.join(out, "final_f1.json"), report)
        text = difference_lines(report)
        with atomic_open(os.path.join(out, "final_f1.md"), "w") as handle:
            handle.write(text + "\n")
        print(text)
    print(f"Wrote {os.path.join(out, 'figure2.png')} and {os.path.join(out, 'test_f1.csv')}")


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as err:  # a missing export or folder: its message, no traceback
        sys.exit(f"compare.py: error: {err}")
    except subprocess.CalledProcessError as err:  # train.py said why, above
        sys.exit(f"compare.py: error: {' '.join(err.cmd[1:3])} failed (exit {err.returncode}); see its output above")
