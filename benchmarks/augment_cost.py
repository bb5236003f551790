#!/usr/bin/env python3
"""What each training augmentation of a system YAML costs per batch, on this machine.

    python benchmarks/augment_cost.py hparams/transMel.yaml --notes ../shared/data/nsynth-test-dev \\
        --output docs/results/augment_cost $(python benchmarks/budget.py benchmarks/cpu_budget.yaml transMel --demo)

Builds the YAML's augmentations (SpeechBrain's AddNoise, DropChunk, RandAmp, the
noise floor and the pedalboard effects of ``timbre_lobes.data.effects``) and
times each on batches of ``--batch`` crops of real notes (median over
``--repeats`` batches, after one warm-up batch), beside one training step of
the system's model at the same batch (forward + backward + Adam step). Any
``--key=value`` argument is a YAML override, as for train.py (the model sizes of a
budget, and e.g. ``--crop_seconds``, ``--batch_size``). Writes
``augment_cost.json`` and ``augment_cost.md`` into ``--output``. Timings are
wall-clock seconds on the CPU threads torch is given (``--threads``).
"""

import argparse
import glob
import os
import shutil
import statistics
import sys
import tempfile
import time

import torch
from hyperpyyaml import load_hyperpyyaml
from profile_systems import cli_to_overrides, machine
from speechbrain.dataio.dataio import read_audio
from speechbrain.utils.callchains import lengths_arg_exists

from timbre_lobes.atomic import atomic_open, write_json
from timbre_lobes.lobes.embed import embed_waveforms

#: YAML keys of single augmentations (each a module taking (waveforms, lengths)).
AUGMENTATIONS = ["add_noise", "drop_chunk", "rand_amp", "reverb", "equaliser", "lowpass", "compressor", "distortion"]


def crops(folder, batch, n_samples):
    """[batch, n_samples] crops of the first ``batch`` notes of a folder (its audio/ or itself)."""
    audio = os.path.join(folder, "audio")
    files = sorted(glob.glob(os.path.join(audio if os.path.isdir(audio) else folder, "*.wav")))[:batch]
    if len(files) < batch:
        sys.exit(
            f"augment_cost.py: error: {folder} has {len(files)} .wav notes, "
            f"a batch of --batch_size={batch} needs that many"
        )
    rows = []
    for path in files:
        signal = read_audio(path)
        rows.append(torch.nn.functional.pad(signal, (0, max(0, n_samples - len(signal))))[:n_samples])
    return torch.stack(rows)


def median_seconds(function, repeats):
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("hparams", help="a system YAML (hparams/<system>.yaml)")
    parser.add_argument("--notes", required=True, help="a folder of 16 kHz .wav notes (NSynth layout or flat)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", required=True)
    args, rest = parser.parse_known_args(argv)
    if not os.path.isdir(args.notes):
        sys.exit(f"augment_cost.py: error: no folder {args.notes}: give a folder of 16 kHz .wav notes")
    torch.set_num_threads(args.threads)
    _, overrides = cli_to_overrides(rest)
    scratch = tempfile.mkdtemp(prefix="augment_cost_")  # the YAML's checkpointer makes its folder here
    overrides["output_folder"] = scratch
    try:
        with open(args.hparams) as fin:
            hparams = load_hyperpyyaml(fin, overrides)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    batch, crop_seconds = hparams["batch_size"], hparams["crop_seconds"]
    wavs = crops(args.notes, batch, int(crop_seconds * hparams["sample_rate"]))
    lens = torch.ones(batch)

    rows = []
    for key in AUGMENTATIONS:
        if key in hparams:
            aug = hparams[key]
            if lengths_arg_exists(aug.forward):
                run = lambda aug=aug: aug(wavs.clone(), lens)  # noqa: E731
            else:
                run = lambda aug=aug: aug(wavs.clone())  # noqa: E731
            rows.append((key, median_seconds(run, args.repeats)))

    modules = torch.nn.ModuleDict(hparams["modules"])
    n_classes = 64
    head = torch.nn.Linear(hparams["emb_dim"], n_classes)
    optimiser = torch.optim.Adam(list(modules.parameters()) + list(head.parameters()), lr=1e-3)
    targets = torch.randint(n_classes, (batch,))

    def step():
        optimiser.zero_grad()
        embeddings = embed_waveforms(modules, wavs, lens, epoch=1)
        torch.nn.functional.cross_entropy(head(embeddings.squeeze(1)), targets).backward()
        optimiser.step()

    modules.train()
    step_seconds = median_seconds(step, args.repeats)

    where = machine()
    result = {
        "hparams": args.hparams,
        "overrides": rest,
        "batch": batch,
        "crop_seconds": crop_seconds,
        "repeats": args.repeats,
        "machine": where,
        "training_step_seconds": step_seconds,
        "augmentations": [{"key": key, "seconds_per_batch": seconds} for key, seconds in rows],
    }
    os.makedirs(args.output, exist_ok=True)
    write_json(os.path.join(args.output, "augment_cost.json"), result)
    lines = [
        f"# Augmentation cost per batch of {batch} crops of {crop_seconds} s",
        "",
        f"{args.hparams} {' '.join(rest)}",
        "",
        f"Machine: {', '.join(f'{key} {value}' for key, value in where.items())}; median of {args.repeats} batches.",
        "",
        "| augmentation | s per batch | vs one training step |",
        "|---|---:|---:|",
    ]
    lines += [f"| {key} | {seconds:.3f} | {seconds / step_seconds:.2f}x |" for key, seconds in rows]
    lines.append(f"| (one training step of the model) | {step_seconds:.3f} | 1.00x |")
    with atomic_open(os.path.join(args.output, "augment_cost.md")) as out:
        out.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
