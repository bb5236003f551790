#!/usr/bin/env python3
"""Trains and evaluates several systems under one equal budget, side by side.

    python benchmarks/benchmark.py [--systems melspec,transMel,transMIDI,leaf,xvector,ecapa] \\
        [--scenarios rendered,leave_one_source_out,nsynth_real] [--output results/benchmark] \\
        [--config benchmarks/cpu_budget.yaml] [--corpus corpora/rendered-default] \\
        [--leave_out generaluser] [--nsynth_real ../shared/data/nsynth-test-dev] [--key=value ...]

Every system is trained by ``recipes/NSynth/train.py hparams/<system>.yaml`` in its
own process, with the config's ``common`` and ``benchmark`` overrides (the budget:
data, epochs, batch, crop length, learning rate, front-end sizes; the seed is the
YAMLs' own), then the system's own overrides, then any ``--key=value`` given here
(e.g. ``--device=cuda:0``). The config is a budget file (``cpu_budget.yaml``, read
by :mod:`budget`, which ``make demo`` reads too).

Scenarios (each result in ``<output>/<scenario>/<system>/``):

* ``rendered``: the rendered corpus (``--corpus``, the default corpus unless
  given; rendered first if missing); test = its test instruments.
* ``leave_one_source_out``: a corpus whose test split is every instrument of one
  source group (``leave_out_source`` in the config, or ``--leave_out``: a group
  or source name such as ``generaluser``, or for corpora rendered before source
  groups existed a SoundFont file name) and whose train/valid splits hold the
  other groups' instruments. It is built without rendering
  (:func:`build_leave_one_source_out`): new ``examples.json`` files re-assigned
  from the notes' ``source_group`` field, and ``audio/`` entries that are
  symbolic links to the corpus's wavs. The default is GeneralUser GS: a
  recorded-sample General MIDI bank independent of the others (the
  independence check of :mod:`timbre_lobes.render.independence`), so the test
  asks whether the model knows the same kinds of instruments played from
  recordings it has never heard, the closest rendered stand-in for real
  acoustic instruments; four other sample banks and three synthesizers stay in
  training. Holding out a synthesizer group (``opl3``, ``dx7``) instead makes
  every test instrument ``synthetic`` and every family label a guess from a
  patch name or GM program, so its figures mix a synthesis-method shift with
  label noise.
* ``nsynth_real``: the model trained in ``rendered``, evaluated with
  :func:`timbre_lobes.scoring.evaluate.evaluate_model` (what ``recipes/NSynth/evaluate.py``
  runs) on real NSynth notes (``--nsynth_real``, by default the 400
  notes of ``../shared/data/nsynth-test-dev``: a development figure).

Cost columns, once per system, from ``profile_systems.py``'s training-step worker
with the system's benchmark overrides: parameters, training examples/s (random
crops of the budget's size), embedding notes/s for 4 s notes (batches of
``eval_batch_size`` and one at a time), the peak resident memory of that
process, and the machine (CPU model, cores, torch version and threads, load).

Writes ``benchmark.json``, ``benchmark.md`` (one row per system and scenario) and
``benchmark.png`` (EER and family micro-F1 bars) into ``--output``, updated after
every step. Resumable: a system whose folder holds ``results.json`` and its
exported model is not trained again (an interrupted one resumes from its
SpeechBrain checkpoints), and evaluations and cost measurements are reused; a
folder made with other overrides is refused rather than mixed.
"""

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time

# Siblings in benchmarks/ (Python puts the script's folder on the path).
import budget
import profile_systems
import real_samples
from budget import RESERVED_KEYS, BudgetError, merge_overrides, override_key

from timbre_lobes.atomic import replaced_folder, save_figure, write_json
from timbre_lobes.data import manifest
from timbre_lobes.data.nsynth_labels import SPLITS
from timbre_lobes.render import DEFAULT_FRACTIONS, DEFAULT_SEED, assign_splits
from timbre_lobes.scoring.evaluate import evaluate_model
from timbre_lobes.scoring.verification import DEFAULT_PROTOCOL
from timbre_lobes.serving.inference import TimbreEncoder

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TRAIN_PY = os.path.join(REPO, "recipes", "NSynth", "train.py")

SCENARIOS = ("rendered", "leave_one_source_out", "nsynth_real")
DEFAULT_CONFIG = os.path.join(HERE, "cpu_budget.yaml")
DEFAULT_CORPUS = os.path.join(REPO, "corpora", "rendered-default")
DEFAULT_NSYNTH_REAL = os.path.join(os.path.dirname(REPO), "shared", "data", "nsynth-test-dev")
DEFAULT_PROFILE = {"steps": 5, "warmup": 2, "embed_repeats": 3, "timeout": 1800}
#: train.py overrides of the verification protocol, used for evaluate.py's trials too.
PROTOCOL_KEYS = ("enrol_notes", "enrolments_per_instrument", "targets_per_note", "nontargets_per_note", "trial_seed")
SPEC_FILE = "benchmark_spec.json"
LEAVE_OUT_FILE = "leave_one_source_out.json"
SUBSET_FILE = "instrument_subset.json"


class BenchmarkError(RuntimeError):
    """A configuration or output folder the benchmark cannot use as it is."""


# --------------------------------------------------------------------------- overrides


def protocol_of(values):
    """The verification protocol of train.py overrides ``{key: value}`` (the defaults where not overridden)."""
    return {k: int(values[k]) if k in values else DEFAULT_PROTOCOL[k] for k in PROTOCOL_KEYS}


def override_values(overrides):
    """``[--key=value]`` -> (run options, {key: value}) as train.py reads them."""
    return profile_systems.cli_to_overrides(list(overrides))


def load_config(path):
    """Reads a budget file (see ``cpu_budget.yaml``) as the benchmark uses it.

    Returns
    -------
    dict
        ``common``: the overrides of every system (the file's ``common`` then its
        ``benchmark`` list); ``systems``: {system: its overrides};
        ``leave_out_source`` (the older key ``leave_out_soundfont`` is read too);
        ``profile`` (:data:`DEFAULT_PROFILE` updated by the file's).

    Raises
    ------
    BenchmarkError
        A budget file of the wrong shape (see :func:`budget.load_budget`).
    """
    try:
        config = budget.load_budget(path)
    except BudgetError as err:
        raise BenchmarkError(str(err)) from None
    return {
        "common": merge_overrides(config["common"], config["benchmark"]),
        "systems": config["systems"],
        "leave_out_source": config.get("leave_out_source", config.get("leave_out_soundfont", "generaluser")),
        "profile": dict(DEFAULT_PROFILE, **(config.get("profile") or {})),
    }


# --------------------------------------------------------------------------- corpora


def _read_json(path):
    with open(path) as handle:
        return json.load(handle)


def _group(meta):
    """A note's source group: ``source_group``, or for older corpora its ``soundfont`` file name (or None)."""
    return meta.get("source_group") or meta.get("soundfont")


def _source_names(meta):
    """The names a held-out source may be given as: group, source, SoundFont file name and stem."""
    names = {meta.get("source_group"), meta.get("sound_source")}
    if meta.get("soundfont"):
        names |= {meta["soundfont"], os.path.splitext(meta["soundfont"])[0]}
    return names - {None}


def build_leave_one_source_out(corpus, out_dir, source, seed=DEFAULT_SEED, fractions=DEFAULT_FRACTIONS):
    """Builds a corpus whose test split is every instrument of one source group, without rendering.

    ``source`` names a group or a source of it (the ``source_group`` and
    ``sound_source`` fields the renderer writes in every note's metadata), or a
    SoundFont file name with or without extension (the ``soundfont`` field). The
    instruments of every group it names all go to ``test``, so a copy in another
    source of that group cannot leak into training; the others are split into
    ``train`` and ``valid`` per family by :func:`timbre_lobes.render.assign_splits`,
    in instrument-number order, which is how ``render_corpus(...,
    leave_out=[source])`` would split them. Written by :func:`build_corpus_view`
    (symbolic links to the corpus's wavs, reused when complete).

    Arguments
    ---------
    corpus : str
        A rendered corpus (``nsynth-{train,valid,test}/``, notes with
        ``source_group`` or, rendered before groups existed, ``soundfont``).
    out_dir : str
        The new corpus folder.
    source : str
        Group, source or SoundFont name (``generaluser``, ``TimGM6mb.sf2``, ``TimGM6mb``).
    seed, fractions
        See :func:`timbre_lobes.render.assign_splits` (the renderer's defaults).

    Returns
    -------
    dict
        What was built: per split, instruments, notes and source groups; the
        held-out source.

    Raises
    ------
    ValueError
        Notes that say neither their source group nor their SoundFont, an
        unknown source, or one that holds every instrument.
    """

    def assign(notes, instruments):
        for note_id, (split, meta) in notes.items():
            if not (meta.get("source_group") or meta.get("soundfont")):
                raise ValueError(
                    f"{corpus}/nsynth-{split}: note {note_id} has no 'source_group' (or 'soundfont') field; only "
                    "corpora rendered by `python -m timbre_lobes render` say which source a note comes from"
                )
        groups = {_group(m) for m in instruments.values() if source in _source_names(m)}
        if not groups:
            available = sorted({_group(m) for m in instruments.values()})
            raise ValueError(f"no instrument of source {source!r} in {corpus}; its source groups are {available}")
        order = sorted(instruments, key=lambda name: (int(instruments[name].get("instrument", 0)), name))
        held_out = [_group(instruments[name]) in groups for name in order]
        if all(held_out):
            raise ValueError(
                f"every instrument of {corpus} comes from {source}'s source group {sorted(groups)}: "
                "nothing is left to train on"
            )
        families = [instruments[name]["instrument_family_str"] for name in order]
        split_of = dict(zip(order, assign_splits(families, seed=seed, fractions=fractions, held_out=held_out)))
        return split_of, {"source": source, "groups": sorted(groups)}

    options = {"source": source, "seed": seed, "fractions": list(fractions)}
    return build_corpus_view(corpus, out_dir, LEAVE_OUT_FILE, options, assign)


def build_instrument_subset(corpus, out_dir, fraction, seed=DEFAULT_SEED):
    """A corpus that trains on a share of the training instruments, without rendering.

    The same valid and test splits as ``corpus``; of its training instruments,
    ``ceil(fraction * n)`` of each family's ``n`` (at least one), drawn in one
    seeded random order per family, so a smaller fraction's instruments are a
    subset of a larger one's (nested draws, as a learning curve needs). Built by
    :func:`build_corpus_view` (symbolic links, a marker, reused when complete).

    Arguments
    ---------
    corpus : str
        An NSynth-format corpus (``nsynth-{train,valid,test}/``).
    out_dir : str
        The new corpus folder.
    fraction : float
        Share of each family's training instruments kept, in (0, 1].
    seed : int
        Seed of the draw.

    Returns
    -------
    dict
        Per split, instruments, notes and source groups; the fraction and seed.

    Raises
    ------
    ValueError
        A fraction outside (0, 1].
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], not {fraction}")

    def assign(notes, instruments):
        train = sorted({m["instrument_str"] for split, m in notes.values() if split == "train"})
        by_family = {}
        for name in train:
            by_family.setdefault(instruments[name]["instrument_family_str"], []).append(name)
        rng = random.Random(seed)
        kept = set()
        for family in sorted(by_family):
            names = by_family[family]
            rng.shuffle(names)
            kept.update(names[: max(1, math.ceil(fraction * len(names) - 1e-9))])
        split_of = {}
        for split, meta in notes.values():
            name = meta["instrument_str"]
            split_of[name] = split if split != "train" or name in kept else None
        return split_of, {"fraction": fraction, "seed": seed, "corpus_train_instruments": len(train)}

    return build_corpus_view(corpus, out_dir, SUBSET_FILE, {"fraction": fraction, "seed": seed}, assign)


def build_corpus_view(corpus, out_dir, marker_name, options, assign):
    """Writes a corpus that re-assigns ``corpus``'s instruments to splits, as links to its wavs.

    The shared machinery of :func:`build_leave_one_source_out` and
    :func:`build_instrument_subset`: each split gets an ``examples.json`` (the
    notes' metadata unchanged, plus ``corpus_split``, the split the note had in
    ``corpus``) and an ``audio/`` folder of symbolic links to the corpus's wavs
    (absolute paths; notes whose wav is missing are left out). The folder is built
    beside ``out_dir`` and swapped into place
    (:func:`timbre_lobes.atomic.replaced_folder`); an existing, complete one made
    from the same inputs (``options`` and the corpus's examples files, recorded in
    the marker file ``marker_name``) is reused, an unfinished one (no marker) is
    replaced.

    Arguments
    ---------
    corpus : str
        An NSynth-format corpus.
    out_dir : str
        The new corpus folder.
    marker_name : str
        File name of the marker written last.
    options : dict
        What besides the corpus decides the assignment (JSON-serialisable).
    assign : callable
        ``assign(notes, instruments) -> (split_of, summary)``: ``notes`` maps a note
        id to ``(corpus split, metadata)``, ``instruments`` an instrument name to
        one note's metadata; ``split_of`` maps every instrument to its new split, or
        ``None`` to leave it out; ``summary`` is merged into the returned summary.

    Returns
    -------
    dict
        ``corpus``, ``splits`` (per split: instruments, notes, source groups) and
        ``assign``'s summary.

    Raises
    ------
    ValueError
        What ``assign`` raises.
    BenchmarkError
        ``out_dir`` holds a view made from other inputs.
    """
    corpus = os.path.abspath(corpus)
    sources = {split: os.path.join(corpus, f"nsynth-{split}", "examples.json") for split in SPLITS}
    options = dict(options, corpus=corpus, inputs={s: manifest.file_signature(p) for s, p in sources.items()})
    marker = os.path.join(out_dir, marker_name)
    if os.path.isfile(marker):
        with open(marker) as handle:
            done = json.load(handle)
        if done.get("options") == options:
            return done["summary"]
        raise BenchmarkError(
            f"{out_dir} was built from other inputs ({done.get('options')}); remove it or choose another --output"
        )

    notes = {}  # note id -> (corpus split, metadata)
    for split, path in sources.items():
        for note_id, meta in _read_json(path).items():
            notes[note_id] = (split, meta)
    instruments = {}
    for _split, meta in notes.values():
        instruments.setdefault(meta["instrument_str"], meta)
    split_of, extra = assign(notes, instruments)

    with replaced_folder(out_dir) as tmp:  # an unfinished build (no marker) is replaced
        examples = {split: {} for split in SPLITS}
        for note_id in sorted(notes):
            old_split, meta = notes[note_id]
            split = split_of[meta["instrument_str"]]
            wav = os.path.realpath(os.path.join(corpus, f"nsynth-{old_split}", "audio", f"{note_id}.wav"))
            if split is None or not os.path.isfile(wav):
                continue
            examples[split][note_id] = dict(meta, corpus_split=old_split)
            audio = os.path.join(tmp, f"nsynth-{split}", "audio")
            os.makedirs(audio, exist_ok=True)
            os.symlink(wav, os.path.join(audio, f"{note_id}.wav"))
        summary = dict(extra, corpus=corpus, splits={})
        for split in SPLITS:
            write_json(os.path.join(tmp, f"nsynth-{split}", "examples.json"), examples[split])
            summary["splits"][split] = {
                "instruments": len({m["instrument_str"] for m in examples[split].values()}),
                "notes": len(examples[split]),
                "groups": sorted({_group(m) for m in examples[split].values()} - {None}),
            }
        write_json(os.path.join(tmp, marker_name), {"options": options, "summary": summary})
    return summary


def count_instruments(corpus, split="train"):
    examples = _read_json(os.path.join(corpus, f"nsynth-{split}", "examples.json"))
    return len({meta["instrument_str"] for meta in examples.values()})


# --------------------------------------------------------------------------- steps


class Progress:
    """Prints each step with the time since the benchmark started."""

    def __init__(self):
        self.start = time.time()

    def __call__(self, message):
        elapsed = time.time() - self.start
        print(
            f"[{int(elapsed // 3600):d}:{int(elapsed % 3600 // 60):02d}:{int(elapsed % 60):02d}] {message}", flush=True
        )


def check_spec(folder, spec):
    """Records what a result folder is made from; refuses a folder made from something else."""
    path = os.path.join(folder, SPEC_FILE)
    if os.path.isfile(path):
        with open(path) as handle:
            old = json.load(handle)
        if old != spec:
            changed = sorted(k for k in set(old) | set(spec) if old.get(k) != spec.get(k))
            raise BenchmarkError(
                f"{folder} holds a run made with other settings ({', '.join(changed)} differ): "
                "remove it or choose another --output"
            )
        return
    write_json(path, spec)


def trained(folder):
    """A finished train.py run: its results and its exported model are there."""
    return os.path.isfile(os.path.join(folder, "results.json")) and os.path.isfile(
        os.path.join(folder, "model", "model_info.json")
    )


def train_system(system, data_folder, folder, overrides, progress):
    """Runs train.py for one system unless its folder already holds a finished run.

    Returns the run's ``results.json`` record (with ``reused``), or raises
    ``RuntimeError`` naming the log of a failed run.
    """
    yaml_path = os.path.join(REPO, "hparams", f"{system}.yaml")
    check_spec(
        folder,
        {"system": system, "yaml": yaml_path, "data_folder": os.path.abspath(data_folder), "overrides": overrides},
    )
    if trained(folder):
        progress(f"{system}: reusing {folder}/results.json")
        return dict(_read_json(os.path.join(folder, "results.json")), reused=True)
    log = os.path.join(folder, "benchmark_train.log")
    cmd = [
        sys.executable,
        TRAIN_PY,
        yaml_path,
        *overrides,
        f"--data_folder={os.path.abspath(data_folder)}",
        f"--output_folder={os.path.abspath(folder)}",
    ]
    progress(f"{system}: training (log: {log})")
    start = time.time()
    with open(log, "a") as handle:
        handle.write(f"\n$ {' '.join(cmd)}\n")
        handle.flush()
        proc = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO)
    if proc.returncode != 0 or not trained(folder):
        raise RuntimeError(f"train.py {system} failed (exit {proc.returncode}); see {log}")
    record = _read_json(os.path.join(folder, "results.json"))
    progress(
        f"{system}: trained in {time.time() - start:.0f} s: EER {record['EER']:.2f} %, "
        f"family micro-F1 {record['family_micro_f1']:.3f}"
    )
    return dict(record, reused=False)


def evaluate_real(system, model_folder, nsynth_folder, folder, protocol, device, progress):
    """evaluate_model's scoring of a rendered-corpus model on real NSynth notes, reused when up to date."""
    with open(os.path.join(model_folder, "model_info.json")) as handle:
        model_id = json.load(handle)["model_id"]
    results = os.path.join(folder, "results.json")
    if os.path.isfile(results):
        record = _read_json(results)
        if (
            record.get("model_id") == model_id
            and record.get("data_folder") == os.path.abspath(nsynth_folder)
            and record.get("protocol") == protocol
        ):
            progress(f"{system}: reusing {results}")
            return dict(record, reused=True)
    progress(f"{system}: evaluating {model_folder} on {nsynth_folder}")
    record = evaluate_model(model_folder, nsynth_folder, folder, device=device, verbose=False, **protocol)
    # The other real sets beside the NSynth notes (../shared/data): family accuracy on each that is present.
    model = TimbreEncoder.from_hparams(source=model_folder, run_opts={"device": device})
    for name, (files, family_of) in real_samples.family_sets(os.path.dirname(os.path.abspath(nsynth_folder))).items():
        key = REAL_FAMILY_KEYS[name]
        record[key] = real_samples.family_accuracy(model, files, family_of)["accuracy"] if files else None
    write_json(results, record)
    progress(
        f"{system}: {record['n_notes']} real notes: EER {record['EER']:.2f} %, "
        f"family micro-F1 {record['family_micro_f1']:.3f}; family accuracy Philharmonia "
        f"{_fmt(record['philharmonia_family_accuracy'], '.3f')}, RWC notes {_fmt(record['rwc_family_accuracy'], '.3f')}"
    )
    return dict(record, reused=False)


def profile_system(system, overrides, n_instruments, settings, folder, progress):
    """profile_systems.py's training-step worker for one system (cached in ``folder``)."""
    run_opts, values = override_values(overrides)
    values["output_folder"] = os.path.join(os.path.abspath(folder), f"{system}-scratch")
    spec = {
        "yaml": os.path.join(REPO, "hparams", f"{system}.yaml"),
        "label": "benchmark",
        "overrides": values,
        "run_opts": run_opts,
        "steps": int(settings["steps"]),
        "warmup": int(settings["warmup"]),
        "embed": True,
        "embed_repeats": int(settings["embed_repeats"]),
        "n_instruments": n_instruments,
    }
    path = os.path.join(folder, f"{system}.json")
    if os.path.isfile(path):
        cached = _read_json(path)
        if cached.get("spec") == spec:
            progress(f"{system}: reusing the cost measurement {path}")
            return cached["result"]
    progress(f"{system}: measuring costs ({spec['steps']} training steps, embedding)")
    result = profile_systems.run_worker("train", spec, int(settings["timeout"]))
    shutil.rmtree(values["output_folder"], ignore_errors=True)
    write_json(path, {"spec": spec, "result": result})
    return result


# --------------------------------------------------------------------------- report

COST_KEYS = (
    "parameters",
    "train_examples_per_s",
    "embed_notes_per_s_batch",
    "embed_notes_per_s_single",
    "embed_batch_size",
    "peak_rss_mb",
    "batch_size",
    "crop_seconds",
    "threads",
)
QUALITY_KEYS = (
    "EER",
    "minDCF",
    "family_micro_f1",
    "family_macro_f1",
    "n_notes",
    "n_target_trials",
    "n_nontarget_trials",
    "wall_seconds",
    "philharmonia_family_accuracy",
    "rwc_family_accuracy",
)
#: real_samples.family_sets name -> the nsynth_real record's key of its family accuracy.
REAL_FAMILY_KEYS = {"philharmonia-sample": "philharmonia_family_accuracy", "rwc-sample/notes": "rwc_family_accuracy"}


def make_row(system, scenario, record, cost, folder):
    row = {"system": system, "scenario": scenario, "folder": folder, "status": "ok"}
    row.update({k: record.get(k) for k in QUALITY_KEYS})
    row["train_wall_seconds"] = record.get("wall_seconds") if scenario != "nsynth_real" else None
    row.update({k: (cost or {}).get(k) for k in COST_KEYS})
    return row


def _fmt(value, spec, missing="-"):
    return missing if value is None else format(value, spec)


def markdown(report):
    m = report["machine"]
    lines = [
        f"# Benchmark: {', '.join(report['systems'])}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m.get('torch_threads')} threads), "
        f"speechbrain {m.get('speechbrain', '?')}, Python {m.get('python', '?')}; load average at start "
        f"{m.get('load_average_at_start')}, at end {m.get('load_average_at_end')}. {report['date']}.",
        "",
        "Budget, the same for every system: `"
        + " ".join(report["common_overrides"])
        + "`"
        + (" + `" + " ".join(report["extra_overrides"]) + "`" if report["extra_overrides"] else "")
        + " (seed: each YAML's own).",
        "",
    ]
    for scenario in report["scenarios"]:
        lines.append(f"- `{scenario}`: {report['scenario_notes'][scenario]}")
    lines += [
        "",
        "| system | scenario | EER (%) | minDCF | family micro-F1 | family macro-F1 | test notes "
        "| params | train ex/s | embed notes/s (batch / single) | peak RSS | train + test wall "
        "| family acc. Philharmonia / RWC notes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        if r["status"] != "ok":
            lines.append(f"| {r['system']} | {r['scenario']} | {r['status']} | | | | | | | | | | |")
            continue
        params = _fmt(r["parameters"] and r["parameters"] / 1e6, ".2f")
        embed = f"{_fmt(r['embed_notes_per_s_batch'], '.1f')} / {_fmt(r['embed_notes_per_s_single'], '.1f')}"
        wall = "-" if r["train_wall_seconds"] is None else f"{r['train_wall_seconds']:.0f} s"
        real_family = "-"
        if r["scenario"] == "nsynth_real":
            phil, rwc = r.get("philharmonia_family_accuracy"), r.get("rwc_family_accuracy")
            real_family = f"{_fmt(phil, '.3f', 'absent')} / {_fmt(rwc, '.3f', 'absent')}"
        lines.append(
            f"| {r['system']} | {r['scenario']} | {r['EER']:.2f} | {r['minDCF']:.3f} | {r['family_micro_f1']:.3f} "
            f"| {r['family_macro_f1']:.3f} | {r['n_notes']} | {params} M | {_fmt(r['train_examples_per_s'], '.1f')} "
            f"| {embed} | {_fmt(r['peak_rss_mb'], '.0f')} MB | {wall} | {real_family} |"
        )
    lines += [
        "",
        "Costs are per system (the same in every scenario): parameters of the trained modules "
        "(front end, encoder, heads); training examples/s and embedding notes/s (4 s notes) from "
        "`profile_systems.py`'s step worker on random inputs; peak RSS of that process.",
        "",
        "Per-system sizes:",
    ]
    for system in report["systems"]:
        lines.append(f"- {system}: `" + " ".join(report["system_overrides"].get(system, [])) + "`")
    return "\n".join(lines) + "\n"


def plot(report, path):
    """Bar chart of EER and family micro-F1 per system, one bar per scenario (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    systems, scenarios = report["systems"], report["scenarios"]
    value = {(r["system"], r["scenario"]): r for r in report["rows"] if r["status"] == "ok"}
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(systems) + 4), 4.5))
    width = 0.8 / max(1, len(scenarios))
    x = np.arange(len(systems))
    for ax, key, label in (
        (axes[0], "EER", "EER (%), lower is better"),
        (axes[1], "family_micro_f1", "family micro-F1, higher is better"),
    ):
        for k, scenario in enumerate(scenarios):
            heights = [value[(s, scenario)][key] if (s, scenario) in value else np.nan for s in systems]
            ax.bar(x + (k - (len(scenarios) - 1) / 2) * width, heights, width, label=scenario)
        ax.set_xticks(x, systems, rotation=30, ha="right")
        ax.set_title(label)
        ax.grid(axis="y", alpha=0.3)
    axes[1].set_ylim(0, 1)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(scenarios), fontsize="small")
    fig.suptitle("Equal-budget benchmark")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    save_figure(fig, path, dpi=100)


def write_report(report, output):
    write_json(os.path.join(output, "benchmark.json"), report)
    from timbre_lobes.atomic import atomic_open

    with atomic_open(os.path.join(output, "benchmark.md")) as handle:
        handle.write(markdown(report))
    plot(report, os.path.join(output, "benchmark.png"))


# --------------------------------------------------------------------------- driver


def split_list(text, allowed=None, what="value"):
    items = [t.strip() for t in text.split(",") if t.strip()]
    if allowed is not None:
        unknown = [t for t in items if t not in allowed]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {what} {unknown}; choose from {list(allowed)}")
    return items


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--systems",
        default=None,
        help="comma list of hparams/<system>.yaml names (default: every system of the config)",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        type=lambda t: split_list(t, SCENARIOS, "scenario"),
        help="comma list (default: %(default)s): rendered = the corpus's test instruments; leave_one_source_out = "
        "every instrument of one source group in test, never in training; nsynth_real = the rendered models on "
        "real NSynth notes",
    )
    parser.add_argument("--output", default="results/benchmark", help="output folder (default: %(default)s)")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="budget file (default: %(default)s)")
    parser.add_argument("--corpus", default=DEFAULT_CORPUS, help="rendered corpus of the rendered scenario")
    parser.add_argument(
        "--leave_out",
        default=None,
        help="source held out in leave_one_source_out, with its whole source group (a catalogue name such as "
        "generaluser, or a SoundFont file name for older corpora; default: the config's leave_out_source)",
    )
    parser.add_argument("--nsynth_real", default=DEFAULT_NSYNTH_REAL, help="real NSynth notes to evaluate on")
    args, extra = parser.parse_known_args(argv)
    for arg in extra:
        if override_key(arg) in RESERVED_KEYS:
            parser.error(f"{arg}: the benchmark chooses data and output folders")
    return args, extra


def main(argv):
    args, extra = parse_args(argv)
    config = load_config(args.config)
    systems = split_list(args.systems) if args.systems else list(config["systems"])
    missing = [s for s in systems if s not in config["systems"]]
    if missing:
        raise BenchmarkError(
            f"{args.config} has no size overrides for {missing} (its systems: "
            f"{list(config['systems'])}); the YAML defaults are paper-sized"
        )
    unknown = [s for s in systems if not os.path.isfile(os.path.join(REPO, "hparams", f"{s}.yaml"))]
    if unknown:
        raise BenchmarkError(f"no hparams/<system>.yaml for {unknown}")
    scenarios = args.scenarios
    output = os.path.abspath(args.output)
    progress = Progress()
    leave_out = args.leave_out or config["leave_out_source"]
    overrides = {s: merge_overrides(config["common"], config["systems"][s], extra) for s in systems}
    run_opts, common_values = override_values(merge_overrides(config["common"], extra))
    device = run_opts.get("device", "cpu")
    protocol = protocol_of(common_values)

    corpus = os.path.abspath(args.corpus)
    if not os.path.isfile(os.path.join(corpus, "nsynth-train", "examples.json")):
        if corpus != os.path.abspath(DEFAULT_CORPUS):
            raise BenchmarkError(f"{corpus} is not an NSynth-format corpus (no nsynth-train/examples.json)")
        from timbre_lobes.render import ensure_default_corpus

        ensure_default_corpus(corpus)
    os.makedirs(output, exist_ok=True)  # only once the inputs are known good: a bad one leaves nothing behind
    notes = {
        "rendered": f"trained on `{corpus}` (train/valid), tested on its test instruments",
        "leave_one_source_out": f"test = every instrument of {leave_out}; train/valid = the other source groups "
        f"of `{corpus}` (same audio, re-assigned splits)",
        "nsynth_real": f"the `rendered` model on real NSynth notes, `{os.path.abspath(args.nsynth_real)}` "
        "(trials: " + ", ".join(f"{k}={v}" for k, v in protocol.items()) + ")",
    }
    report = {
        "systems": systems,
        "scenarios": scenarios,
        "config": os.path.abspath(args.config),
        "common_overrides": config["common"],
        "system_overrides": {s: config["systems"][s] for s in systems},
        "extra_overrides": extra,
        "scenario_notes": {s: notes[s] for s in scenarios},
        "machine": profile_systems.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "rows": [],
        "costs": {},
        "failures": [],
    }
    results = {}  # (system, scenario) -> record or None

    def record_failure(system, scenario, err):
        progress(f"{scenario}/{system}: FAILED: {err}")
        report["failures"].append({"system": system, "scenario": scenario, "error": str(err)})
        results[(system, scenario)] = None

    data_folders = {"rendered": corpus}
    if "leave_one_source_out" in scenarios:
        folder = os.path.join(output, "corpora", f"leave_out_{os.path.splitext(leave_out)[0]}")
        progress(f"leave_one_source_out: corpus in {folder}")
        try:
            summary = build_leave_one_source_out(corpus, folder, leave_out)
        except ValueError as err:
            raise BenchmarkError(f"cannot build the leave_one_source_out corpus: {err}") from None
        report["leave_one_source_out_corpus"] = dict(summary, folder=folder)
        data_folders["leave_one_source_out"] = folder
        sizes = ", ".join(
            f"{s} {v['instruments']} instruments / {v['notes']} notes" for s, v in summary["splits"].items()
        )
        progress(f"leave_one_source_out: {sizes}")
        report["scenario_notes"]["leave_one_source_out"] += f" ({sizes})"

    training = [s for s in ("rendered", "leave_one_source_out") if s in scenarios]
    if "nsynth_real" in scenarios and "rendered" not in training:
        training.insert(0, "rendered")  # nsynth_real needs the rendered models
    for scenario in training:
        for system in systems:
            folder = os.path.join(output, scenario, system)
            try:
                results[(system, scenario)] = train_system(
                    system,
                    data_folders[scenario],
                    folder,
                    overrides[system],
                    lambda m, sc=scenario: progress(f"{sc}/{m}"),
                )
            except BenchmarkError:
                raise
            except (RuntimeError, OSError) as err:
                record_failure(system, scenario, err)
            update_report(report, results, systems, scenarios, output)

    if "nsynth_real" in scenarios:
        for system in systems:
            model = os.path.join(output, "rendered", system, "model")
            if results.get((system, "rendered")) is None:
                record_failure(system, "nsynth_real", "no rendered-corpus model (its training failed)")
                continue
            try:
                results[(system, "nsynth_real")] = evaluate_real(
                    system,
                    model,
                    args.nsynth_real,
                    os.path.join(output, "nsynth_real", system),
                    protocol,
                    device,
                    lambda m: progress(f"nsynth_real/{m}"),
                )
            except (RuntimeError, ValueError, OSError) as err:
                record_failure(system, "nsynth_real", err)
            update_report(report, results, systems, scenarios, output)

    n_instruments = count_instruments(corpus)
    for system in systems:
        try:
            report["costs"][system] = profile_system(
                system,
                overrides[system],
                n_instruments,
                config["profile"],
                os.path.join(output, "profile"),
                lambda m: progress(f"costs/{m}"),
            )
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as err:
            record_failure(system, "costs", err)
        update_report(report, results, systems, scenarios, output)
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    update_report(report, results, systems, scenarios, output)
    progress(f"wrote {os.path.join(output, 'benchmark.md')}, benchmark.json and benchmark.png")
    print(markdown(report))
    if report["failures"]:
        raise SystemExit(f"{len(report['failures'])} step(s) failed: see {os.path.join(output, 'benchmark.json')}")
    return report


def update_report(report, results, systems, scenarios, output):
    """Rebuilds the rows from what is done so far and rewrites the three output files."""
    rows = []
    for scenario in scenarios:
        for system in systems:
            if (system, scenario) not in results:
                continue
            folder = os.path.join(output, scenario, system)
            record = results[(system, scenario)]
            if record is None:
                rows.append({"system": system, "scenario": scenario, "folder": folder, "status": "failed"})
            else:
                rows.append(make_row(system, scenario, record, report["costs"].get(system), folder))
    report["rows"] = rows
    write_report(report, output)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except BenchmarkError as err:
        raise SystemExit(f"benchmark.py: {err}") from None
