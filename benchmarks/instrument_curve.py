#!/usr/bin/env python3
"""Unseen-instrument quality against the number of training instruments, one system at a fixed budget.

    python benchmarks/instrument_curve.py [--system transMel] [--fractions 0.25,0.5,1] \\
        [--corpus corpora/rendered-default] [--output results/instrument_curve] \\
        [--config benchmarks/cpu_budget.yaml] [--nsynth_real ../shared/data/nsynth-test-dev] \\
        [--draw_seed 1234] [--key=value ...]

The neural counterpart of ``docs/experiments/family_features.py --instrument-curve``
(finding 12 of ``docs/experiments``): does family identification of instruments
never heard in training keep growing with the number of independent training
instruments? For each fraction, a corpus that keeps that share of each family's
training instruments (:func:`benchmark.build_instrument_subset`: nested seeded
draws, the same valid and test instruments, symbolic links, nothing rendered) and
one run of ``recipes/NSynth/train.py hparams/<system>.yaml`` with the budget
file's benchmark overrides (as ``benchmark.py`` trains it). Every run takes the
same number of training steps: the full corpus's run trains one pass over its
training notes per epoch, and each smaller corpus's run draws as many crops per
epoch (``--train_crops_per_epoch``, successive shuffles of its notes), so fewer
instruments means more passes over each, not less training.

Each model is scored on the corpus's test instruments (train.py's test split) and
on real NSynth notes (``--nsynth_real``, as ``benchmark.py``'s ``nsynth_real``
scenario, with the Philharmonia and RWC family accuracies beside them when those
samples are present). Writes ``curve.json``, ``curve.md`` and ``curve.png``
(family micro-F1 and EER against training instruments) into ``--output``, updated
after every step. Resumable: finished runs and evaluations are reused, and a
folder made with other settings is refused (``benchmark.py``'s rules).
"""

import argparse
import csv
import os
import sys
import time

# Siblings in benchmarks/ (Python puts the script's folder on the path).
import benchmark
import profile_systems
from budget import RESERVED_KEYS, merge_overrides, override_key

from timbre_lobes.atomic import atomic_open, save_figure, write_json

DEFAULT_FRACTIONS = (0.25, 0.5, 1.0)
DEFAULT_DRAW_SEED = 1234


def fraction_list(text):
    """``"0.25,0.5,1"`` -> ``[0.25, 0.5, 1.0]`` (sorted, each in (0, 1]); 1 is added when missing."""
    try:
        values = sorted({float(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma list of numbers") from None
    if not values or any(not 0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"fractions must lie in (0, 1], not {text!r}")
    return values if values[-1] == 1.0 else [*values, 1.0]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--system", default="transMel", help="hparams/<system>.yaml (default: %(default)s)")
    parser.add_argument(
        "--fractions",
        default=",".join(str(f) for f in DEFAULT_FRACTIONS),
        type=fraction_list,
        help="shares of each family's training instruments, comma list (1 is always run; default: %(default)s)",
    )
    parser.add_argument("--output", default="results/instrument_curve", help="output folder (default: %(default)s)")
    parser.add_argument("--config", default=benchmark.DEFAULT_CONFIG, help="budget file (default: %(default)s)")
    parser.add_argument(
        "--corpus", default=benchmark.DEFAULT_CORPUS, help="NSynth-format corpus (default: %(default)s)"
    )
    parser.add_argument(
        "--nsynth_real", default=benchmark.DEFAULT_NSYNTH_REAL, help="real NSynth notes (default: %(default)s)"
    )
    parser.add_argument(
        "--draw_seed", type=int, default=DEFAULT_DRAW_SEED, help="seed of the instrument draws (default: %(default)s)"
    )
    args, extra = parser.parse_known_args(argv)
    for arg in extra:
        if override_key(arg) in RESERVED_KEYS or override_key(arg) == "train_crops_per_epoch":
            parser.error(f"{arg}: the curve chooses data and output folders and the crops per epoch")
    return args, extra


def training_notes(run_folder):
    """The notes one epoch of a finished train.py run passes over (its ``save/train.csv``)."""
    with open(os.path.join(run_folder, "save", "train.csv"), newline="") as handle:
        return sum(1 for _ in csv.DictReader(handle))


def markdown(report):
    m = report["machine"]
    lines = [
        f"# {report['system']}: unseen-instrument quality against training instruments",
        "",
        f"Corpus `{report['corpus']}`; real notes `{report['nsynth_real']}`. Machine: {m['cpu']}, {m['cores']} "
        f"cores, torch {m['torch']}; {report['date']}. Budget: `{' '.join(report['overrides'])}`; every run "
        f"{report['crops_per_epoch']} training crops an epoch (the full corpus's training notes). Draw seed "
        f"{report['draw_seed']}.",
        "",
        "| training instruments | share | rendered test EER (%) | rendered test family micro-F1 / macro | "
        "real NSynth EER (%) | real NSynth family micro-F1 / macro | Philharmonia / RWC family acc. | train wall |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in report["points"]:
        r, q = p.get("rendered"), p.get("nsynth_real")
        if r is None:
            lines.append(f"| {p['train_instruments']} | {p['fraction']:g} | {p.get('status', 'not run')} | | | | | |")
            continue
        real = f"{q['EER']:.2f} | {q['family_micro_f1']:.3f} / {q['family_macro_f1']:.3f}" if q else "- | -"
        accs = "-"
        if q:
            accs = " / ".join(benchmark._fmt(q.get(k), ".3f", "absent") for k in benchmark.REAL_FAMILY_KEYS.values())
        lines.append(
            f"| {p['train_instruments']} | {p['fraction']:g} | {r['EER']:.2f} | {r['family_micro_f1']:.3f} / "
            f"{r['family_macro_f1']:.3f} | {real} | {accs} | {r['wall_seconds']:.0f} s |"
        )
    return "\n".join(lines) + "\n"


def plot(report, path):
    """Family micro-F1 and EER against training instruments, rendered test and real NSynth (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [p for p in report["points"] if p.get("rendered")]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in (
        (axes[0], "family_micro_f1", "family micro-F1, unseen instruments"),
        (axes[1], "EER", "verification EER (%), unseen instruments"),
    ):
        for scenario, label, style in (("rendered", "rendered test", "o-"), ("nsynth_real", "real NSynth", "s--")):
            pts = [(p["train_instruments"], p[scenario][key]) for p in done if p.get(scenario)]
            if pts:
                ax.plot(*zip(*pts), style, label=label)
        ax.set_xlabel("training instruments")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"{report['system']}, {report['crops_per_epoch']} crops an epoch at every point")
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def write_report(report, output):
    write_json(os.path.join(output, "curve.json"), report)
    with atomic_open(os.path.join(output, "curve.md")) as handle:
        handle.write(markdown(report))
    plot(report, os.path.join(output, "curve.png"))


def main(argv):
    args, extra = parse_args(argv)
    config = benchmark.load_config(args.config)
    if args.system not in config["systems"]:
        raise benchmark.BenchmarkError(
            f"{args.config} has no size overrides for {args.system} (its systems: {list(config['systems'])})"
        )
    corpus = os.path.abspath(args.corpus)
    if not os.path.isfile(os.path.join(corpus, "nsynth-train", "examples.json")):
        raise benchmark.BenchmarkError(f"{corpus} is not an NSynth-format corpus (no nsynth-train/examples.json)")
    output = os.path.abspath(args.output)
    os.makedirs(output, exist_ok=True)
    progress = benchmark.Progress()
    overrides = merge_overrides(config["common"], config["systems"][args.system], extra)
    run_opts, values = benchmark.override_values(merge_overrides(config["common"], extra))
    protocol = benchmark.protocol_of(values)
    report = {
        "system": args.system,
        "corpus": corpus,
        "nsynth_real": os.path.abspath(args.nsynth_real),
        "overrides": overrides,
        "draw_seed": args.draw_seed,
        "machine": profile_systems.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "crops_per_epoch": None,
        "points": [],
    }
    for fraction in sorted(args.fractions, reverse=True):  # the full corpus first: it sets the crops per epoch
        name = "full" if fraction == 1 else f"share_{fraction:g}"
        point = {"fraction": fraction, "folder": os.path.join(output, name)}
        report["points"].insert(0, point)
        if fraction == 1:
            data, run_overrides = corpus, overrides
            point["train_instruments"] = benchmark.count_instruments(corpus)
        else:
            data = os.path.join(output, "corpora", name)
            summary = benchmark.build_instrument_subset(corpus, data, fraction, seed=args.draw_seed)
            point["train_instruments"] = summary["splits"]["train"]["instruments"]
            run_overrides = [*overrides, f"--train_crops_per_epoch={report['crops_per_epoch']}"]
        say = lambda m, n=name: progress(f"{n}/{m}")  # noqa: E731
        run = os.path.join(point["folder"], args.system)
        try:
            point["rendered"] = benchmark.train_system(args.system, data, run, run_overrides, say)
        except RuntimeError as err:
            point["status"] = "failed"
            progress(f"{name}: FAILED: {err}")
            write_report(report, output)
            if fraction == 1:
                raise benchmark.BenchmarkError(f"the full corpus run failed, no other point can run: {err}") from None
            continue
        if fraction == 1:
            report["crops_per_epoch"] = training_notes(run)
        if os.path.isdir(args.nsynth_real):
            point["nsynth_real"] = benchmark.evaluate_real(
                args.system,
                os.path.join(run, "model"),
                args.nsynth_real,
                os.path.join(point["folder"], "nsynth_real"),
                protocol,
                run_opts.get("device", "cpu"),
                say,
            )
        write_report(report, output)
    progress(f"wrote {os.path.join(output, 'curve.md')}, curve.json and curve.png")
    print(markdown(report))
    return report


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except benchmark.BenchmarkError as err:
        raise SystemExit(f"instrument_curve.py: {err}") from None
