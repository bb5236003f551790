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
``<out>/test_f1.csv``, every run's rows. ``--plot-only`` redraws from the runs already there.
"""

import argparse
import csv
import os
import subprocess
import sys

from rwc_prepare import check_rwc_folder
from transfer import F1_FIELDS, read_f1_log, size_overrides

from timbre_lobes.atomic import atomic_open, save_figure

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
        raise FileNotFoundError(f"{run_yaml} is missing: give the pretrained model's sizes as overrides after --")
    return size_overrides(run_yaml, SIZE_KEYS)


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
            for transfer, style in (("scratch", "-"), ("finetune", "--")):
                run = sorted(
                    (int(r["epoch"]), float(r[metric]))
                    for r in rows
                    if (r["system"], r["transfer"]) == (system, transfer)
                )
                if run:
                    label = f"{system} {'from scratch' if transfer == 'scratch' else 'fine-tuned'}"
                    ax.plot(*zip(*run), style, color=colours[system], marker="o", markersize=3, label=label)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_ylabel(f"category {name}")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylim(0, 1)
    axes[1].legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pretrained",
        action="append",
        required=True,
        metavar="SYSTEM=EXPORT",
        help="a system and the exported NSynth model its fine-tuned run starts from",
    )
    parser.add_argument("--data_folder", default=None, help="RWC folder (default: the stand-in corpus)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default="results/RWC/compare")
    parser.add_argument("--plot-only", action="store_true", help="redraw from the runs already in --out")
    parser.add_argument("extra", nargs="*", help="overrides for every run (after --)")
    args = parser.parse_args(argv)
    pairs = [item.split("=", 1) for item in args.pretrained]
    if any(len(p) != 2 for p in pairs):
        parser.error("--pretrained takes SYSTEM=EXPORT_FOLDER")
    systems = [system for system, _ in pairs]
    out = os.path.abspath(args.out)
    if not args.plot_only:
        # Every input before the first run: a wrong path stops here, and nothing is made.
        if args.data_folder:
            check_rwc_folder(args.data_folder)
        for _, model in pairs:
            pretrained_sizes(model)
        for system, model in pairs:
            for transfer in TRANSFERS:
                train(system, transfer, os.path.abspath(model), out, args.data_folder, args.epochs, args.extra)
    rows = collect(out, systems)
    if not rows:
        sys.exit(f"compare.py: error: no test_f1.csv under {out}")
    os.makedirs(out, exist_ok=True)
    with atomic_open(os.path.join(out, "test_f1.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=F1_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    plot_figure2(rows, os.path.join(out, "figure2.png"))
    print(f"Wrote {os.path.join(out, 'figure2.png')} and {os.path.join(out, 'test_f1.csv')}")


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as err:  # a missing export or folder: its message, no traceback
        sys.exit(f"compare.py: error: {err}")
    except subprocess.CalledProcessError as err:  # train.py said why, above
        sys.exit(f"compare.py: error: {' '.join(err.cmd[1:3])} failed (exit {err.returncode}); see its output above")
