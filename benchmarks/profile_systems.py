#!/usr/bin/env python3
"""Measures each system's training and embedding throughput on the CPU, and where the time goes.

    python benchmarks/profile_systems.py [hparams/melspec.yaml hparams/transMel.yaml ...] \\
        [--output=results/profile/profile.json] [--steps=5] \\
        [--batch_size=32 --crop_seconds=1.5 --n_filters=80 ...]

Any ``--key=value`` the script does not know is a YAML override (or a SpeechBrain run
option), exactly as ``train.py`` takes it, and applies to every system: give CPU-sized
overrides, as the paper's sizes are a GPU job (``python benchmarks/budget.py
benchmarks/cpu_budget.yaml <system>`` prints the benchmark's). For each system it
reports, from ``--steps`` training steps (forward, backward and optimizer step on
:class:`timbre_lobes.training.TimbreBrain`, the Brain of ``train.py``, on random crops):

* training examples/s, and the share of a step in augmentation, front end
  (``compute_features``), normalisation, encoder trunk, LDE pooling, embedding layer,
  heads + loss, optimizer step and the rest, each forward + backward. Forward times
  come from module hooks; backward times from the moments the gradient of each stage's
  output is complete (tensor hooks) and the last parameter gradient is accumulated;
* embedding extraction notes/s for 4 s notes
  (:func:`timbre_lobes.lobes.embed.embed_waveforms`), by batches of ``eval_batch_size``
  and one at a time;
* the peak resident memory (``ru_maxrss``) of the process that ran those steps.

Then, once:

* the transform layer's share of a training step, for both of its outputs (``signed``,
  ``log_energy``), at the CPU sizes and at the paper's sizes (122 filters, 801 taps,
  stride 192, 4 s crops, ResNet-34; batches of ``--paper_batch_size``). Issue 6 asks
  for at most 10 %;
* the data loader's waiting share: a real ``DataLoader`` (the YAML's ``num_workers``,
  the training pipeline of :func:`timbre_lobes.training.dataio_prep`) over a generated
  NSynth-format corpus of 4 s notes feeds training steps, and the time blocked in
  ``next(batch)`` is compared with the whole loop's;
* streaming: the peak memory of a short ``train.py`` run (``--memory_steps`` training
  steps, then validation and test) on a corpus and on one with 5 times the instruments.
  The training pipeline reads only each crop from disk, so the audio is never held;
  then the same with a training manifest as long as NSynth's (289,205 rows, repeating
  the corpus's notes); and the memory of that manifest alone, in the main process and
  after one pass of the data-loader workers over it.

Each measurement runs in its own process, so peak memories do not mix. Prints a
markdown table and writes everything, with the machine, to ``--output`` (JSON).
The synthetic corpora come from :func:`timbre_lobes.data.synthetic.make_nsynth_corpus`.
"""

import argparse
import csv
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from timbre_lobes.data.nsynth_labels import FAMILIES, SPLITS

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TRAIN_PY = os.path.join(REPO, "recipes", "NSynth", "train.py")
#: Family head size of the random batches: NSynth's families.
N_FAMILIES = len(FAMILIES)

DEFAULT_SYSTEMS = ["hparams/melspec.yaml", "hparams/transMel.yaml", "hparams/transMIDI.yaml"]
COMPONENTS = [
    "augmentation",
    "front end",
    "normalisation",
    "encoder trunk",
    "LDE pooling",
    "embedding layer",
    "heads + loss",
    "optimizer step",
    "other",
]
NOTE_SECONDS = 4.0
# Official NSynth release (Engel et al. 2017): notes per split; 4 s, 16 kHz, 16-bit wav.
NSYNTH_NOTES = {"train": 289205, "valid": 12678, "test": 4096}
NSYNTH_WAV_BYTES = 128044


# --------------------------------------------------------------------------- workers


def load_hparams(yaml_path, overrides):
    from hyperpyyaml import load_hyperpyyaml

    with open(yaml_path) as handle:
        return load_hyperpyyaml(handle, overrides)


def label_spaces(n_instruments, families=FAMILIES):
    """Made-up label spaces that size the heads: ``n_instruments`` instruments, NSynth's families."""
    from speechbrain.dataio.encoder import CategoricalEncoder

    labels = {"instrument": CategoricalEncoder(), "family": CategoricalEncoder()}
    labels["instrument"].update_from_iterable(f"instrument{i}" for i in range(n_instruments))
    labels["family"].update_from_iterable(families)
    return labels


def build_brain(hparams, labels, run_opts):
    """train.py's Brain (:class:`timbre_lobes.training.TimbreBrain`), heads sized by ``labels``.

    ``labels``: ``{"instrument": CategoricalEncoder, "family": CategoricalEncoder}``
    (from :func:`label_spaces` or :func:`timbre_lobes.training.dataio_prep`).
    """
    from timbre_lobes import training

    training.add_heads(hparams, labels)
    brain = training.TimbreBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=dict(run_opts),
        checkpointer=None,
    )
    brain.on_fit_start()  # creates the optimizer
    brain.modules.train()
    return brain


def random_batch(hparams, batch_size, seconds, n_instruments, generator, n_families=N_FAMILIES):
    import torch
    from speechbrain.dataio.batch import PaddedBatch

    samples = int(seconds * hparams["sample_rate"])
    items = []
    for i in range(batch_size):
        items.append(
            {
                "id": f"note{i}",
                "sig": 0.1 * torch.randn(samples, generator=generator),
                "instrument_encoded": torch.randint(n_instruments, (1,), generator=generator),
                "family_encoded": torch.randint(n_families, (1,), generator=generator),
            }
        )
    return PaddedBatch(items)


class StepTimer:
    """Per-stage forward and backward time of TimbreBrain training steps, from hooks.

    Stages run in a chain (front end -> normalisation -> trunk -> pooling -> embedding ->
    heads + loss), so in the backward pass a stage's time runs from the moment the
    gradient of its output is complete to the moment the gradient of its input (the
    previous stage's output) is; the first stage with gradients ends when the last
    parameter gradient is accumulated.
    """

    def __init__(self, brain):
        modules = brain.modules
        encoder = modules["embedding_model"]
        self.chain = [("front end", modules["compute_features"]), ("normalisation", modules["mean_var_norm"])]
        if all(hasattr(encoder, name) for name in ("trunk", "pooling", "embedding")):
            self.chain += [
                ("encoder trunk", encoder.trunk),
                ("LDE pooling", encoder.pooling),
                ("embedding layer", encoder.embedding),
            ]
        else:  # another encoder: timed as a whole
            self.chain.append(("encoder trunk", encoder))
        self.forward_only = []
        if brain.hparams.wav_augment is not None:
            self.forward_only.append(("augmentation", brain.hparams.wav_augment))
        self.loss_modules = [
            modules["family_head"],
            modules["instrument_head"],
            brain.hparams.instrument_loss,
            brain.hparams.family_loss,
        ]
        self.handles = []
        for name, module in self.chain + self.forward_only:
            self._hook(name, module, chained=(name, module) in self.chain)
        for module in self.loss_modules:
            self._hook("heads + loss", module, chained=False, is_loss=True)
        for param in modules.parameters():
            self.handles.append(param.register_post_accumulate_grad_hook(self._grad_done))
        self.optimizer = brain.optimizer
        self._real_step = brain.optimizer.step
        brain.optimizer.step = self._timed_step
        self.reset()

    def reset(self):
        self.fwd = {c: 0.0 for c in COMPONENTS}
        self.ready = {}
        self.loss_end = 0.0
        self.last_grad = 0.0
        self.opt = 0.0

    def _hook(self, name, module, chained, is_loss=False):
        starts = []

        def pre(mod, args):
            starts.append(time.perf_counter())

        def post(mod, args, output):
            end = time.perf_counter()
            self.fwd[name] += end - starts.pop()
            if is_loss:
                self.loss_end = max(self.loss_end, end)
            if chained and getattr(output, "requires_grad", False):
                output.register_hook(lambda grad: self.ready.__setitem__(name, time.perf_counter()))

        self.handles.append(module.register_forward_pre_hook(pre))
        self.handles.append(module.register_forward_hook(post))

    def _grad_done(self, param):
        self.last_grad = time.perf_counter()

    def _timed_step(self, *args, **kwargs):
        start = time.perf_counter()
        result = self._real_step(*args, **kwargs)
        self.opt += time.perf_counter() - start
        return result

    def components(self, total):
        """{component: (forward s, backward s)} of the last step, ``other`` filling up to ``total``."""
        parts = {c: [self.fwd[c], 0.0] for c in COMPONENTS}
        names = [name for name, _ in self.chain]
        end = self.last_grad
        for name in names:  # the earliest stage with gradients ends the backward pass
            if name in self.ready:
                break
        previous_ready = end
        for name in names:
            if name in self.ready:
                parts[name][1] = max(0.0, previous_ready - self.ready[name])
                previous_ready = self.ready[name]
        parts["heads + loss"][1] = max(0.0, previous_ready - self.loss_end)
        parts["optimizer step"][0] = self.opt
        parts["other"][0] = max(0.0, total - sum(f + b for f, b in parts.values()))
        return parts

    def remove(self):
        for handle in self.handles:
            handle.remove()
        self.optimizer.step = self._real_step


def time_training(brain, hparams, batches, warmup):
    """Median step time and per-component shares over ``batches`` (the first ``warmup`` untimed)."""
    timer = StepTimer(brain)
    totals, parts = [], []
    for i, batch in enumerate(batches):
        timer.reset()
        brain.step += 1
        start = time.perf_counter()
        brain.fit_batch(batch)
        total = time.perf_counter() - start
        if i >= warmup:
            totals.append(total)
            parts.append(timer.components(total))
    timer.remove()
    step = statistics.median(totals)
    shares = {}
    mean_total = sum(totals)
    for c in COMPONENTS:
        fwd = sum(p[c][0] for p in parts)
        bwd = sum(p[c][1] for p in parts)
        shares[c] = {
            "forward": 100 * fwd / mean_total,
            "backward": 100 * bwd / mean_total,
            "total": 100 * (fwd + bwd) / mean_total,
        }
    return step, shares


def time_embedding(brain, hparams, batch_size, repeats, generator):
    """Notes/s of embedding extraction (front end, normalisation, encoder) for 4 s notes."""
    import torch

    from timbre_lobes.lobes.embed import embed_waveforms

    modules = brain.modules
    modules.eval()
    wavs = 0.1 * torch.randn(batch_size, int(NOTE_SECONDS * hparams["sample_rate"]), generator=generator)
    lens = torch.ones(batch_size)

    def embed():
        return embed_waveforms(modules, wavs, lens, epoch=hparams["epoch_counter"].current)

    with torch.no_grad():
        embed()  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            embed()
        elapsed = time.perf_counter() - start
    modules.train()
    return batch_size * repeats / elapsed


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_train(spec):
    """Training step profile and embedding throughput of one system and configuration."""
    import torch

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    hparams = load_hparams(spec["yaml"], spec["overrides"])
    n_instruments = spec["n_instruments"]
    brain = build_brain(hparams, label_spaces(n_instruments), spec["run_opts"])
    batch_size = hparams["batch_size"]
    crop = hparams["crop_seconds"]
    batches = [
        random_batch(hparams, batch_size, crop, n_instruments, generator) for _ in range(spec["warmup"] + spec["steps"])
    ]
    step, shares = time_training(brain, hparams, batches, spec["warmup"])
    del batches
    result = {
        "system": hparams["system"],
        "yaml": spec["yaml"],
        "label": spec["label"],
        "batch_size": batch_size,
        "crop_seconds": crop,
        "transform_output": hparams.get("transform_output"),
        "parameters": sum(p.numel() for p in brain.modules.parameters()),
        "step_seconds": step,
        "train_examples_per_s": batch_size / step,
        "shares": shares,
        "n_instruments": n_instruments,
        "threads": torch.get_num_threads(),
    }
    if spec.get("embed", True):
        eval_batch = hparams["eval_batch_size"]
        result["embed_batch_size"] = eval_batch
        result["embed_notes_per_s_batch"] = time_embedding(brain, hparams, eval_batch, spec["embed_repeats"], generator)
        result["embed_notes_per_s_single"] = time_embedding(
            brain, hparams, 1, max(4, spec["embed_repeats"] * 4), generator
        )
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def worker_loader(spec):
    """Share of training-loop time spent waiting on a real DataLoader over a corpus on disk."""
    import speechbrain as sb
    import torch

    from timbre_lobes import training

    torch.manual_seed(0)
    hparams = load_hparams(spec["yaml"], spec["overrides"])
    hparams["save_folder"] = spec["save_folder"]
    write_manifests(spec["corpus"], spec["save_folder"], hparams["sample_rate"])
    datasets, labels = training.dataio_prep(hparams, spec["corpus"])
    brain = build_brain(hparams, labels, spec["run_opts"])
    loader = sb.dataio.dataloader.make_dataloader(datasets["train"], **hparams["train_dataloader_opts"])
    waits, steps = [], []
    iterator = iter(loader)
    while True:
        start = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:
            break
        got = time.perf_counter()
        brain.step += 1
        brain.fit_batch(batch)
        waits.append(got - start)
        steps.append(time.perf_counter() - got)
    first_wait = waits[0]
    wait, work = sum(waits[1:]), sum(steps[1:])
    return {
        "num_workers": hparams["train_dataloader_opts"].get("num_workers", 0),
        "batch_size": hparams["batch_size"],
        "crop_seconds": hparams["crop_seconds"],
        "batches": len(waits),
        "first_batch_wait_seconds": first_wait,
        "wait_share": 100 * wait / (wait + work) if wait + work > 0 else None,
        "mean_wait_seconds": wait / max(1, len(waits) - 1),
        "mean_step_seconds": work / max(1, len(steps) - 1),
    }


def write_manifests(corpus, save_folder, sample_rate):
    """The manifests and label files :func:`timbre_lobes.training.dataio_prep` reads, for a corpus.

    What ``recipes/NSynth/nsynth_prepare.py`` writes, less the verification trials
    (nothing is evaluated here): ``<split>.csv`` for each split, the family and
    instrument label files.
    """
    from timbre_lobes import training
    from timbre_lobes.data.nsynth import family_label_space, read_nsynth_folder, write_label_file

    os.makedirs(save_folder, exist_ok=True)
    rows = {s: read_nsynth_folder(os.path.join(corpus, f"nsynth-{s}"), corpus, sample_rate) for s in SPLITS}
    for split, split_rows in rows.items():
        with open(os.path.join(save_folder, f"{split}.csv"), "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(split_rows[0]))
            writer.writeheader()
            writer.writerows(split_rows)
    families = family_label_space(r["family"] for split_rows in rows.values() for r in split_rows)
    write_label_file(families, os.path.join(save_folder, training.FAMILY_LABELS))
    write_label_file([r["instrument"] for r in rows["train"]], os.path.join(save_folder, training.INSTRUMENT_LABELS))


def worker_manifest(spec):
    """Memory of a full-size training manifest: in the main process, then with data-loader workers.

    SpeechBrain's ``DynamicItemDataset`` holds the manifest as Python dicts. Forked
    workers share those pages at first, but touching the objects (reference counts)
    copies them, so a whole epoch can leave each worker with its own copy. One pass of
    the loader over every row (ids only, no audio) shows how much.
    """
    import speechbrain as sb

    def rss_mb():
        with open("/proc/self/status") as handle:
            return int(handle.read().split("VmRSS:")[1].split()[0]) / 1024

    before = rss_mb()
    dataset = sb.dataio.dataset.DynamicItemDataset.from_csv(csv_path=spec["csv"], replacements={"data_root": "/"})
    manifest_mb = rss_mb() - before
    sb.dataio.dataset.set_output_keys([dataset], ["id"])
    watcher = PeakTreeMemory(interval=0.5)
    time.sleep(1.0)
    at_start = tree_pss_kb(os.getpid()) / 1024
    loader = sb.dataio.dataloader.make_dataloader(
        dataset, batch_size=spec["batch_size"], num_workers=spec["num_workers"]
    )
    start = time.perf_counter()
    for _ in loader:
        pass
    return {
        "rows": len(dataset),
        "num_workers": spec["num_workers"],
        "manifest_mb": manifest_mb,
        "bytes_per_note": manifest_mb * 2**20 / len(dataset),
        "tree_pss_before_loader_mb": at_start,
        "tree_pss_peak_during_pass_mb": watcher.peak_mb,
        "pass_seconds": time.perf_counter() - start,
    }


def full_size_manifest(small_csv, path, rows):
    """A manifest of ``rows`` notes cycling over a small one's (IDs made unique)."""
    with open(small_csv, newline="") as handle:
        small = list(csv.DictReader(handle))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(small[0]))
        writer.writeheader()
        for i in range(rows):
            row = dict(small[i % len(small)])
            row["ID"] = f"{row['ID']}-{i}"
            writer.writerow(row)
    return path


# --------------------------------------------------------------------------- driver


def run_worker(task, spec, timeout):
    """Runs a worker in a fresh process; returns its JSON result."""
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", task, json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=timeout)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"{task} worker failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")


def tree_pss_kb(root):
    """Proportional set size of a process and its descendants, in kB (shared pages split between them)."""
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as handle:
                    parents[int(name)] = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    pids, total = [root], 0
    for pid in pids:
        pids += [child for child, parent in parents.items() if parent == pid]
        try:
            with open(f"/proc/{pid}/smaps_rollup") as handle:
                total += next(int(line.split()[1]) for line in handle if line.startswith("Pss:"))
        except (OSError, StopIteration):
            pass
    return total


class PeakTreeMemory:
    """Samples this process tree's PSS every ``interval`` seconds in a thread; ``peak_mb``."""

    def __init__(self, interval=0.25):
        import threading

        self.peak_mb = 0.0
        self.interval = interval
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self):
        while True:
            self.peak_mb = max(self.peak_mb, tree_pss_kb(os.getpid()) / 1024)
            time.sleep(self.interval)


def run_script_measured(argv):
    """Runs ``python <argv[0]> <argv[1:]>`` in this process, then prints its peak memories (``RESULT {json}``).

    The script runs as the interpreter would run it: as ``__main__``, with
    ``sys.argv`` = ``argv`` and the script's folder first on the module search path
    (where ``recipes/NSynth/train.py`` finds its sibling ``nsynth_prepare``), in
    place of this file's folder. SpeechBrain's ``Brain`` is patched first, because
    SpeechBrain 1.1.2 reads ``--optimizer_step_limit`` from the command line as a string.
    """
    import runpy

    import speechbrain.core

    init = speechbrain.core.Brain.__init__

    def brain_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        if isinstance(self.optimizer_step_limit, str):
            self.optimizer_step_limit = int(self.optimizer_step_limit)

    speechbrain.core.Brain.__init__ = brain_init
    watcher = PeakTreeMemory()
    script = os.path.abspath(argv[0])
    sys.argv = [script, *argv[1:]]
    sys.path[0] = os.path.dirname(script)
    runpy.run_path(script, run_name="__main__")
    me, kids = (resource.getrusage(w).ru_maxrss / 1024 for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    print("RESULT " + json.dumps({"main_rss_mb": me, "largest_child_rss_mb": kids, "tree_pss_mb": watcher.peak_mb}))


def train_py_peak_memory(yaml_path, cli_overrides, corpus, out, timeout):
    """Peak memory of a one-epoch train.py run (or shorter, with ``--optimizer_step_limit``).

    ``main_rss_mb``: the training process's peak RSS (``ru_maxrss``);
    ``largest_child_rss_mb``: the largest data-loader worker's, which counts the pages it
    shares with the main process since the fork; ``tree_pss_mb``: the peak of the whole
    process tree's proportional set size (shared pages counted once), sampled every 0.25 s.
    """
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--_run_script",
        TRAIN_PY,
        yaml_path,
        f"--data_folder={corpus}",
        f"--output_folder={out}",
        "--number_of_epochs=1",
        *cli_overrides,
    ]
    start = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=timeout)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
            result["wall_seconds"] = time.time() - start
            return result
    raise RuntimeError(f"train.py failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")


def corpus_audio_mb(root):
    total = 0
    for folder, _, files in os.walk(root):
        total += sum(os.path.getsize(os.path.join(folder, f)) for f in files if f.endswith(".wav"))
    return total / 2**20


def make_corpus(root, instruments):
    from timbre_lobes.data.synthetic import make_nsynth_corpus

    if not os.path.isdir(root):
        make_nsynth_corpus(root, instruments_per_split=instruments, seconds=NOTE_SECONDS)
    return root


def machine():
    import torch

    from timbre_lobes.scoring.evaluation import machine_description

    desc = machine_description("cpu")
    desc.update(
        {
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        }
    )
    try:
        import speechbrain

        desc["speechbrain"] = speechbrain.__version__
    except ImportError:
        pass
    return desc


def split_cli(argv):
    """(our options, the rest as train.py would take it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("systems", nargs="*", help="system YAMLs (default: melspec, transMel, transMIDI)")
    parser.add_argument("--output", default="results/profile/profile.json")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per system")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--embed_repeats", type=int, default=3, help="timed embedding batches")
    parser.add_argument(
        "--n_instruments", type=int, default=953, help="instrument head size for random batches (NSynth train: 953)"
    )
    parser.add_argument(
        "--paper_batch_size", type=int, default=8, help="batch size of the paper-size transform check (0: skip it)"
    )
    parser.add_argument("--paper_steps", type=int, default=3)
    parser.add_argument("--transform_yaml", default="hparams/transMel.yaml")
    parser.add_argument("--skip", default="", help="comma list of: transform, loader, memory")
    parser.add_argument(
        "--memory_steps",
        type=int,
        default=4,
        help="training steps of each memory run (the small corpus has 4 batches of 32)",
    )
    parser.add_argument("--work_folder", default=None, help="corpora and scratch runs (default: a temp dir)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per measurement")
    return parser.parse_known_args(argv)


def cli_to_overrides(rest):
    """SpeechBrain's reading of ``--key=value`` arguments: (run options, overrides dict)."""
    import speechbrain as sb
    import yaml

    _, parsed, overrides = sb.parse_arguments([os.devnull, *rest])
    overrides = (yaml.safe_load(overrides) or {}) if isinstance(overrides, str) else dict(overrides or {})
    run_opts = {k: getattr(parsed, k) for k in parsed.overridden_args}
    run_opts["device"] = run_opts.get("device") or "cpu"
    return run_opts, overrides


def without_keys(rest, keys):
    return [a for a in rest if not any(a.startswith(f"--{k}=") or a == f"--{k}" for k in keys)]


def main(argv):
    args, rest = split_cli(argv)
    systems = args.systems or DEFAULT_SYSTEMS
    missing = [s for s in systems if not os.path.isfile(s)]
    if missing:  # checked before any measurement or folder
        sys.exit(f"profile_systems.py: error: no system YAML {missing}: give YAML paths, e.g. hparams/transMel.yaml")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    run_opts, overrides = cli_to_overrides(rest)
    work = args.work_folder or tempfile.mkdtemp(prefix="profile_systems_")
    os.makedirs(work, exist_ok=True)
    report = {
        "machine": machine(),
        "overrides": rest,
        "steps": args.steps,
        "warmup": args.warmup,
        "method": "module forward hooks; backward from gradient-ready tensor hooks; "
        "random crops; each measurement in its own process",
        "systems": [],
        "transform_layer": [],
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }

    def spec(yaml_path, label, extra=None, base=None, steps=None, warmup=None, embed=True):
        merged = dict(overrides if base is None else base)
        merged.update(extra or {})
        merged["output_folder"] = os.path.join(work, "scratch")  # what the YAML's objects create
        return {
            "yaml": yaml_path,
            "label": label,
            "overrides": merged,
            "run_opts": run_opts,
            "steps": steps or args.steps,
            "warmup": args.warmup if warmup is None else warmup,
            "embed": embed,
            "embed_repeats": args.embed_repeats,
            "n_instruments": args.n_instruments,
        }

    for yaml_path in systems:
        print(f"profiling {yaml_path} ...", flush=True)
        report["systems"].append(run_worker("train", spec(yaml_path, "cpu"), args.timeout))

    if "transform" not in skip:
        configs = [("cpu", overrides, args.steps, args.warmup)]
        if args.paper_batch_size > 0:
            configs.append(("paper", {"batch_size": args.paper_batch_size}, args.paper_steps, 1))
        for label, base, steps, warmup in configs:
            for output in ("signed", "log_energy"):
                print(f"transform layer, {label} sizes, {output} ...", flush=True)
                result = run_worker(
                    "train",
                    spec(
                        args.transform_yaml,
                        label,
                        {"transform_output": output},
                        base=base,
                        steps=steps,
                        warmup=warmup,
                        embed=label == "paper",
                    ),
                    args.timeout,
                )
                report["transform_layer"].append(result)

    corpora = {}
    if not {"loader", "memory"} <= skip:
        print("writing the synthetic corpora (4 s notes) ...", flush=True)
        # 12 notes an instrument: 144 / 96 / 96 notes, and 5 times as many.
        corpora["base"] = make_corpus(os.path.join(work, "corpus_base"), (12, 8, 8))
        corpora["5x"] = make_corpus(os.path.join(work, "corpus_5x"), (60, 40, 40))

    if "loader" not in skip:
        print("data loader waiting share ...", flush=True)
        loader_spec = spec(args.transform_yaml, "cpu")
        loader_spec.update(corpus=corpora["5x"], save_folder=os.path.join(work, "loader_save"))
        report["data_loader"] = run_worker("loader", loader_spec, args.timeout)

    if "memory" not in skip:
        report["memory"] = []
        # The same number of training steps on both corpora (the small one's epoch).
        cli = without_keys(rest, ["data_folder", "output_folder", "number_of_epochs", "optimizer_step_limit"])
        cli.append(f"--optimizer_step_limit={args.memory_steps}")
        for name, corpus in corpora.items():
            print(f"peak memory of a short train.py run, {name} corpus ...", flush=True)
            out = os.path.join(work, f"run_{name}")
            shutil.rmtree(out, ignore_errors=True)
            result = train_py_peak_memory(args.transform_yaml, cli, corpus, out, args.timeout)
            with open(os.path.join(out, "save", "train.csv")) as handle:
                n_train = sum(1 for _ in handle) - 1
            result.update(
                yaml=args.transform_yaml,
                corpus=name,
                audio_mb=corpus_audio_mb(corpus),
                train_notes=n_train,
                training_steps=args.memory_steps,
            )
            report["memory"].append(result)
        # The 5x corpus again, with a training manifest as long as NSynth's (its rows repeated).
        print("peak memory of a short train.py run, full-size training manifest ...", flush=True)
        out = os.path.join(work, "run_full_manifest")
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(os.path.join(out, "save"))
        for name in os.listdir(os.path.join(work, "run_5x", "save")):
            if name.endswith((".csv", ".txt")) and name != "instrument_encoder.txt":
                shutil.copy(os.path.join(work, "run_5x", "save", name), os.path.join(out, "save", name))
        csv_path = full_size_manifest(
            os.path.join(work, "run_5x", "save", "train.csv"),
            os.path.join(out, "save", "train.csv"),
            NSYNTH_NOTES["train"],
        )
        result = train_py_peak_memory(args.transform_yaml, cli + ["--skip_prep=True"], corpora["5x"], out, args.timeout)
        result.update(
            yaml=args.transform_yaml,
            corpus="5x, full-size training manifest",
            audio_mb=corpus_audio_mb(corpora["5x"]),
            train_notes=NSYNTH_NOTES["train"],
            training_steps=args.memory_steps,
        )
        report["memory"].append(result)
        print("memory of a full-size (289,205-note) training manifest ...", flush=True)
        num_workers = overrides.get("num_workers", 4)
        report["manifest"] = run_worker(
            "manifest", {"csv": csv_path, "batch_size": 256, "num_workers": num_workers}, args.timeout
        )

    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["full_nsynth_extrapolation"] = extrapolate(report)
    from timbre_lobes.atomic import write_json

    write_json(args.output, report)
    print(markdown(report))
    print(f"\nWrote {args.output}")
    if args.work_folder is None:
        shutil.rmtree(work, ignore_errors=True)
    return report


def extrapolate(report):
    """Hours per full-NSynth epoch on this machine, from the measured rates (training + valid)."""
    rows = []
    for result in report["systems"] + [r for r in report["transform_layer"] if r["label"] == "paper"]:
        train_h = NSYNTH_NOTES["train"] / result["train_examples_per_s"] / 3600
        row = {
            "system": result["system"],
            "label": result["label"],
            "transform_output": result.get("transform_output"),
            "train_hours_per_epoch": train_h,
        }
        if "embed_notes_per_s_batch" in result:
            row["valid_hours"] = NSYNTH_NOTES["valid"] / result["embed_notes_per_s_batch"] / 3600
        rows.append(row)
    return {"notes": NSYNTH_NOTES, "audio_gb": sum(NSYNTH_NOTES.values()) * NSYNTH_WAV_BYTES / 1e9, "per_system": rows}


def markdown(report):
    m = report["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['torch_threads']} torch threads, "
        f"torch {m['torch']}, load average at start {m['load_average_at_start']}, "
        f"at end {m.get('load_average_at_end')}",
        "",
    ]
    lines += [
        "| system | sizes | batch x crop | params | train ex/s | embed notes/s (batch / single) "
        "| front end | norm | trunk | LDE | emb | heads+loss | optim | augment | other | peak RSS |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["systems"] + report["transform_layer"]:
        s = r["shares"]
        embed = (
            f"{r['embed_notes_per_s_batch']:.1f} / {r['embed_notes_per_s_single']:.1f}"
            if "embed_notes_per_s_batch" in r
            else "-"
        )
        out = f" ({r['transform_output']})" if r.get("transform_output") else ""
        lines.append(
            f"| {r['system']}{out} | {r['label']} | {r['batch_size']} x {r['crop_seconds']:g} s "
            f"| {r['parameters'] / 1e6:.2f} M | {r['train_examples_per_s']:.1f} | {embed} "
            + " ".join(
                f"| {s[c]['total']:.1f} %"
                for c in (
                    "front end",
                    "normalisation",
                    "encoder trunk",
                    "LDE pooling",
                    "embedding layer",
                    "heads + loss",
                    "optimizer step",
                    "augmentation",
                    "other",
                )
            )
            + f" | {r['peak_rss_mb']:.0f} MB |"
        )
    lines.append("")
    lines.append("Shares are of a whole training step, forward + backward.")
    for r in report["transform_layer"]:
        share = r["shares"]["front end"]
        verdict = "meets" if share["total"] <= 10 else "EXCEEDS"
        lines.append(
            f"- transform layer, {r['label']} sizes, {r['transform_output']}: "
            f"{share['total']:.1f} % of a step (forward {share['forward']:.1f} %, backward "
            f"{share['backward']:.1f} %): {verdict} the 10 % budget"
        )
    if "data_loader" in report:
        d = report["data_loader"]
        lines.append(
            f"- data loader ({d['num_workers']} workers, batches of {d['batch_size']} x "
            f"{d['crop_seconds']:g} s crops read from 4 s wavs): {d['wait_share']:.1f} % of the "
            f"loop spent waiting for a batch (first batch {d['first_batch_wait_seconds']:.2f} s, "
            f"excluded)"
        )
    for r in report.get("memory", []):
        lines.append(
            f"- {r['training_steps']}-step train.py {os.path.basename(r['yaml'])} run, {r['corpus']} corpus "
            f"({r['train_notes']} training notes, "
            f"{r['audio_mb']:.0f} MB of audio): peak RSS of the training process "
            f"{r['main_rss_mb']:.0f} MB; peak PSS of the process tree (with data-loader workers) "
            f"{r['tree_pss_mb']:.0f} MB"
        )
    if "manifest" in report:
        r = report["manifest"]
        lines.append(
            f"- full-size training manifest ({r['rows']} notes): {r['manifest_mb']:.0f} MB in the "
            f"main process ({r['bytes_per_note']:.0f} bytes/note); process-tree PSS "
            f"{r['tree_pss_before_loader_mb']:.0f} MB before and {r['tree_pss_peak_during_pass_mb']:.0f} "
            f"MB at the peak of one pass of {r['num_workers']} data-loader workers over every row"
        )
    for row in report["full_nsynth_extrapolation"]["per_system"]:
        out = f" ({row['transform_output']})" if row.get("transform_output") else ""
        valid = f", validation {row['valid_hours']:.2f} h" if "valid_hours" in row else ""
        lines.append(
            f"- extrapolated full-NSynth epoch on this CPU, {row['system']}{out}, {row['label']} sizes: "
            f"training {row['train_hours_per_epoch']:.1f} h{valid}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--_worker":
        task, spec = sys.argv[2], json.loads(sys.argv[3])
        result = {"train": worker_train, "loader": worker_loader, "manifest": worker_manifest}[task](spec)
        print("RESULT " + json.dumps(result))
    elif len(sys.argv) > 1 and sys.argv[1] == "--_run_script":
        run_script_measured(sys.argv[2:])
    else:
        main(sys.argv[1:])
