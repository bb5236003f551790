"""Writes SpeechBrain manifests and verification trials for NSynth-format corpora.

Reads the json/wav layout of the official NSynth release, which the SoundFont
renderer (``python -m timbre_lobes render``) also writes::

    <data_folder>/nsynth-train/examples.json   {note_str: metadata}
    <data_folder>/nsynth-train/audio/<note_str>.wav
    <data_folder>/nsynth-valid/...
    <data_folder>/nsynth-test/...

and writes into ``save_folder``:

* ``train.csv``, ``valid.csv``, ``test.csv``: ``ID, duration, wav, instrument,
  family, family_id, source, source_id, pitch, velocity, qualities`` with wav
  paths as ``$data_root/...`` (resolved by the training script);
* ``valid_enrolments.txt``/``valid_trials.txt`` and the same for test: the
  verification protocol of :mod:`timbre_lobes.scoring.verification`;
* ``prepare_report.txt``: every note that was skipped and why.

Like SpeechBrain's prep scripts it is idempotent: it does nothing when every
output exists and the options and input files are unchanged. Every file is
written atomically.
"""

import csv
import json
import logging
import os
import sys

import soundfile as sf
from tqdm import tqdm

from timbre_lobes.atomic import atomic_open, write_json
from timbre_lobes.data.audio import audio_problem
from timbre_lobes.data.nsynth_labels import FAMILIES, SAMPLE_RATE, SOURCES, SPLITS
from timbre_lobes.scoring.verification import make_trials, write_trials

logger = logging.getLogger(__name__)

MANIFEST_FIELDS = [
    "ID",
    "duration",
    "wav",
    "instrument",
    "family",
    "family_id",
    "source",
    "source_id",
    "pitch",
    "velocity",
    "qualities",
]
OPTIONS_FILE = "opt_nsynth_prepare.json"
REPORT_FILE = "prepare_report.txt"
EVAL_SPLITS = ("valid", "test")

EXPECTED_LAYOUT = """Expected NSynth's json/wav layout:
  {folder}/nsynth-train/examples.json  and  {folder}/nsynth-train/audio/<note_str>.wav
  {folder}/nsynth-valid/...            and  {folder}/nsynth-test/...
(the official release, or a corpus rendered with `python -m timbre_lobes render --out {folder}`)."""


class DataFolderError(FileNotFoundError):
    """The data folder is missing or does not hold NSynth's layout."""


def prepare_nsynth(
    data_folder,
    save_folder,
    splits=SPLITS,
    skip_prep=False,
    sample_rate=SAMPLE_RATE,
    enrol_notes=5,
    enrolments_per_instrument=20,
    targets_per_note=20,
    nontargets_per_note=20,
    trial_seed=1234,
):
    """Prepares manifests and trials for the ``splits`` of an NSynth-format corpus.

    Arguments
    ---------
    data_folder : str
        Folder holding ``nsynth-<split>/`` folders.
    save_folder : str
        Where manifests, trials and the report go.
    splits : sequence of str
        Split names to prepare; each needs ``<data_folder>/nsynth-<split>/examples.json``.
    skip_prep : bool
        If True, do nothing.
    sample_rate : int
        Sample rate every wav must have.
    enrol_notes, enrolments_per_instrument, targets_per_note, nontargets_per_note, trial_seed
        Verification protocol, see :func:`timbre_lobes.scoring.verification.make_trials`.

    Returns
    -------
    dict
        split -> manifest path.
    """
    if skip_prep:
        return {split: os.path.join(save_folder, f"{split}.csv") for split in splits}
    split_folders = {split: os.path.join(data_folder, f"nsynth-{split}") for split in splits}
    _check_layout(data_folder, split_folders)
    options = {
        "data_folder": os.path.abspath(data_folder),
        "splits": list(splits),
        "sample_rate": sample_rate,
        "trials": [enrol_notes, enrolments_per_instrument, targets_per_note, nontargets_per_note, trial_seed],
        "inputs": {s: _signature(os.path.join(f, "examples.json")) for s, f in split_folders.items()},
    }
    outputs = _outputs(save_folder, splits)
    if _already_done(save_folder, options, outputs):
        logger.info("NSynth manifests in %s are up to date; skipping preparation", save_folder)
        return {split: os.path.join(save_folder, f"{split}.csv") for split in splits}

    os.makedirs(save_folder, exist_ok=True)
    # Outputs are about to change: until they all match the new options, no run may trust them.
    opt_path = os.path.join(save_folder, OPTIONS_FILE)
    if os.path.exists(opt_path):
        os.remove(opt_path)
    problems = []
    seen_ids = set()
    manifests = {}
    for split, folder in split_folders.items():
        rows = read_nsynth_folder(folder, data_folder, sample_rate, problems, seen_ids)
        if not rows:
            raise DataFolderError(f"no usable notes in {folder}; see {os.path.join(save_folder, REPORT_FILE)}")
        manifests[split] = os.path.join(save_folder, f"{split}.csv")
        write_manifest(rows, manifests[split])
        if split in EVAL_SPLITS:
            enrolments, trials = make_trials(
                {row["ID"]: row["instrument"] for row in rows},
                enrol_notes,
                enrolments_per_instrument,
                targets_per_note,
                nontargets_per_note,
                trial_seed,
            )
            write_trials(
                enrolments,
                trials,
                os.path.join(save_folder, f"{split}_enrolments.txt"),
                os.path.join(save_folder, f"{split}_trials.txt"),
            )
        logger.info("%s: %d notes of %d instruments", split, len(rows), len({r["instrument"] for r in rows}))
    write_report(problems, os.path.join(save_folder, REPORT_FILE))
    # Written last: its presence with equal options is what marks the preparation complete.
    write_json(os.path.join(save_folder, OPTIONS_FILE), options)
    return manifests


def read_nsynth_folder(folder, data_root, sample_rate=SAMPLE_RATE, problems=None, seen_ids=None):
    """Reads one NSynth-format folder (``examples.json`` + ``audio/``) into manifest rows.

    Notes whose wav is missing, unreadable, truncated or at the wrong sample
    rate, and note ids already seen (in this or an earlier split), are appended
    to ``problems`` as ``(note_id, path, reason)`` and left out; one warning
    sums them up.

    Arguments
    ---------
    folder : str
        The folder holding ``examples.json`` and ``audio/``.
    data_root : str
        Folder that ``$data_root`` stands for in the manifest's wav paths.
    sample_rate : int
        Required sample rate.
    problems : list, optional
        Collects the skipped notes.
    seen_ids : set, optional
        Note ids of earlier splits, to catch duplicates across splits.

    Returns
    -------
    list of dict
        One row per usable note, keys :data:`MANIFEST_FIELDS`.
    """
    problems = [] if problems is None else problems
    seen_ids = set() if seen_ids is None else seen_ids
    n_before = len(problems)
    meta_path = os.path.join(folder, "examples.json")
    examples = _load_examples(meta_path, problems)
    rows = []
    for note_id, meta in tqdm(
        examples, desc=f"checking {os.path.basename(folder)}", unit="note", disable=not sys.stderr.isatty()
    ):
        wav = os.path.join(folder, "audio", f"{note_id}.wav")
        if note_id in seen_ids:
            problems.append((note_id, wav, "duplicate note id"))
            continue
        reason = _metadata_problem(meta) or audio_problem(wav, sample_rate)
        if reason:
            problems.append((note_id, wav, reason))
            continue
        seen_ids.add(note_id)
        rel = os.path.relpath(os.path.abspath(wav), os.path.abspath(data_root))
        rows.append(
            {
                "ID": note_id,
                "duration": round(sf.info(wav).duration, 4),
                "wav": "$data_root/" + rel.replace(os.sep, "/"),
                "instrument": meta["instrument_str"],
                "family": FAMILIES[int(meta["instrument_family"])],
                "family_id": int(meta["instrument_family"]),
                "source": SOURCES[int(meta["instrument_source"])],
                "source_id": int(meta["instrument_source"]),
                "pitch": int(meta["pitch"]),
                "velocity": int(meta["velocity"]),
                "qualities": "".join(str(int(q)) for q in meta.get("qualities", [0] * 10)),
            }
        )
    skipped = len(problems) - n_before
    if skipped:
        logger.warning(
            "%s: skipped %d of %d notes (missing, unreadable, wrong rate or duplicate); see the preparation report",
            folder,
            skipped,
            len(examples),
        )
    return rows


def write_manifest(rows, path):
    """Atomically writes manifest rows as a SpeechBrain CSV."""
    with atomic_open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def write_report(problems, path):
    """Atomically writes ``note_id<TAB>path<TAB>reason`` lines for every skipped note."""
    with atomic_open(path) as handle:
        handle.write(f"# {len(problems)} notes skipped\n")
        for note_id, wav, reason in problems:
            handle.write(f"{note_id}\t{wav}\t{reason}\n")


def _load_examples(meta_path, problems):
    """[(note_id, metadata)] from examples.json; duplicate keys go to ``problems``."""

    def pairs_hook(pairs):
        return pairs

    try:
        with open(meta_path) as handle:
            pairs = json.load(handle, object_pairs_hook=pairs_hook)
    except json.JSONDecodeError as err:
        raise DataFolderError(f"{meta_path} is not valid JSON ({err}); is it half-written?") from None
    examples, keys = [], set()
    for note_id, meta in pairs:
        if note_id in keys:
            problems.append((note_id, meta_path, "duplicate note id in examples.json"))
            continue
        keys.add(note_id)
        examples.append((note_id, dict(meta)))
    return examples


def _metadata_problem(meta):
    """Says which required metadata field is missing or out of range, or None."""
    for field in ("instrument_str", "instrument_family", "instrument_source", "pitch", "velocity"):
        if field not in meta:
            return f"metadata lacks {field}"
    if not 0 <= int(meta["instrument_family"]) < len(FAMILIES):
        return f"unknown instrument_family {meta['instrument_family']}"
    if not 0 <= int(meta["instrument_source"]) < len(SOURCES):
        return f"unknown instrument_source {meta['instrument_source']}"
    return None


def _check_layout(data_folder, split_folders):
    """Raises :class:`DataFolderError` naming what is missing and what is expected."""
    if not os.path.isdir(data_folder):
        raise DataFolderError(
            f"data folder {data_folder!r} does not exist.\n" + EXPECTED_LAYOUT.format(folder=data_folder)
        )
    missing = [f for f in split_folders.values() if not os.path.isfile(os.path.join(f, "examples.json"))]
    if missing:
        raise DataFolderError(
            f"{data_folder!r} lacks {', '.join(os.path.join(m, 'examples.json') for m in missing)}.\n"
            + EXPECTED_LAYOUT.format(folder=data_folder)
        )


def _signature(path):
    """Size and modification time of an input file, to notice when it changes."""
    stat = os.stat(path)
    return [stat.st_size, int(stat.st_mtime)]


def _outputs(save_folder, splits):
    files = [f"{s}.csv" for s in splits] + [REPORT_FILE]
    files += [f"{s}_{kind}.txt" for s in splits if s in EVAL_SPLITS for kind in ("enrolments", "trials")]
    return [os.path.join(save_folder, f) for f in files]


def _already_done(save_folder, options, outputs):
    opt_path = os.path.join(save_folder, OPTIONS_FILE)
    if not all(os.path.isfile(p) for p in outputs + [opt_path]):
        return False
    try:
        with open(opt_path) as handle:
            return json.load(handle) == options
    except (OSError, json.JSONDecodeError):
        return False
