"""Writes SpeechBrain manifests and verification trials for NSynth-format corpora.

Reads (with :func:`timbre_lobes.data.nsynth.read_nsynth_folder`) the json/wav
layout of the official NSynth release, which the renderer
(``python -m timbre_lobes render``) also writes::

    <data_folder>/nsynth-train/examples.json   {note_str: metadata}
    <data_folder>/nsynth-train/audio/<note_str>.wav
    <data_folder>/nsynth-valid/...
    <data_folder>/nsynth-test/...

and writes into ``save_folder``:

* ``train.csv``, ``valid.csv``, ``test.csv``: ``ID, duration, wav, instrument,
  family, source, pitch, velocity, qualities`` with wav paths as
  ``$data_root/...`` (resolved by the training script);
* ``closed_set.csv`` (same columns): the closed set, a share
  (``closed_set_share``) of every training instrument's notes, spread over its
  pitches and left out of ``train.csv`` (:func:`timbre_lobes.data.closed_set.hold_out`);
  only its header when the share is 0;
* ``family_encoder.txt`` (the family label space, from the data: NSynth's 11
  families, or the corpus's own categories) and ``instrument_encoder.txt`` (the
  training instruments): SpeechBrain label files that size the heads;
* ``valid_enrolments.txt``/``valid_trials.txt`` and the same for test: the
  verification protocol of :mod:`timbre_lobes.scoring.verification`;
* ``prepare_report.txt``: every note that was skipped and why, and what the
  closed set holds (with the training instruments too small to give it a note).

Like SpeechBrain's prep scripts it is idempotent: it does nothing when every
output exists and the options and input files are unchanged. Every file is
written atomically.
"""

import logging
import os

from timbre_lobes.atomic import atomic_open, write_json
from timbre_lobes.data import closed_set, manifest
from timbre_lobes.data.nsynth import (
    DataFolderError,
    check_layout,
    family_label_space,
    read_nsynth_folder,
    write_label_file,
    write_report,
)
from timbre_lobes.data.nsynth_labels import SAMPLE_RATE, SPLITS
from timbre_lobes.scoring.verification import DEFAULT_PROTOCOL, protocol_trials, write_trials
from timbre_lobes.training import FAMILY_LABELS, INSTRUMENT_LABELS

__all__ = ["DataFolderError", "MANIFEST_FIELDS", "prepare_nsynth", "read_nsynth_folder", "write_manifest"]

logger = logging.getLogger(__name__)

MANIFEST_FIELDS = [
    "ID",
    "duration",
    "wav",
    "instrument",
    "family",
    "source",
    "pitch",
    "velocity",
    "qualities",
]
OPTIONS_FILE = "opt_nsynth_prepare.json"
#: Changes whenever the outputs' format changes, so older preparations are redone.
PREPARE_VERSION = 3
REPORT_FILE = "prepare_report.txt"
EVAL_SPLITS = ("valid", "test")


def prepare_nsynth(
    data_folder,
    save_folder,
    splits=SPLITS,
    skip_prep=False,
    sample_rate=SAMPLE_RATE,
    protocol=None,
    closed_set_share=0.0,
    closed_set_seed=closed_set.DEFAULT_SEED,
):
    """Prepares manifests, label files and trials for the ``splits`` of an NSynth-format corpus.

    Arguments
    ---------
    data_folder : str
        Folder holding ``nsynth-<split>/`` folders.
    save_folder : str
        Where manifests, label files, trials and the report go.
    splits : sequence of str
        Split names to prepare; each needs ``<data_folder>/nsynth-<split>/examples.json``.
    skip_prep : bool
        If True, do nothing.
    sample_rate : int
        Sample rate every wav must have, in Hz.
    protocol : dict, optional
        Verification protocol (keys of :data:`timbre_lobes.scoring.verification.DEFAULT_PROTOCOL`,
        missing ones take its values), see :func:`timbre_lobes.scoring.verification.make_trials`.
    closed_set_share : float
        Share of every training instrument's notes held out of ``train.csv`` into
        ``closed_set.csv``, in ``[0, 1)``; 0 = no closed set. An instrument with
        fewer than ``1 / closed_set_share`` notes keeps them all (the report lists it).
    closed_set_seed : int
        Seed of the choice of the held-out notes.

    Returns
    -------
    dict
        split -> manifest path (and ``closed_set`` -> ``closed_set.csv`` when ``train`` is prepared).

    Raises
    ------
    DataFolderError
        The folder or a split's ``examples.json`` is missing, or a split has no
        usable note (the report, written first, says why each note was skipped).
    ValueError
        ``closed_set_share`` is not in ``[0, 1)``.
    """
    if skip_prep:
        return _manifest_paths(save_folder, splits)
    closed_set.check_share(closed_set_share)
    protocol = {**DEFAULT_PROTOCOL, **(protocol or {})}
    split_folders = {split: os.path.join(data_folder, f"nsynth-{split}") for split in splits}
    check_layout(data_folder, split_folders)
    options = {
        "data_folder": os.path.abspath(data_folder),
        "splits": list(splits),
        "sample_rate": sample_rate,
        "trials": [protocol[k] for k in DEFAULT_PROTOCOL],
        # The seed only matters when notes are held out.
        "closed_set": [closed_set_share, closed_set_seed] if closed_set_share and "train" in splits else 0,
        "inputs": {s: manifest.file_signature(os.path.join(f, "examples.json")) for s, f in split_folders.items()},
        "version": PREPARE_VERSION,
    }
    outputs = _outputs(save_folder, splits)
    if manifest.preparation_done(os.path.join(save_folder, OPTIONS_FILE), options, outputs):
        logger.info("NSynth manifests in %s are up to date; skipping preparation", save_folder)
        return _manifest_paths(save_folder, splits)

    os.makedirs(save_folder, exist_ok=True)
    # Outputs are about to change: until they all match the new options, no run may trust them.
    opt_path = os.path.join(save_folder, OPTIONS_FILE)
    if os.path.exists(opt_path):
        os.remove(opt_path)
    report = os.path.join(save_folder, REPORT_FILE)
    problems = []
    seen_ids = set()
    rows_of = {}
    for split, folder in split_folders.items():
        rows_of[split] = read_nsynth_folder(folder, data_folder, sample_rate, problems, seen_ids)
        logger.info(
            "%s: %d notes of %d instruments",
            split,
            len(rows_of[split]),
            len({r["instrument"] for r in rows_of[split]}),
        )
    held_out = None
    if "train" in rows_of:
        # The instrument head's rows: training instruments in order of first appearance, closed set included.
        instruments = [r["instrument"] for r in rows_of["train"]]
        kept, held, too_few = closed_set.hold_out(rows_of["train"], closed_set_share, closed_set_seed)
        rows_of["train"], held_out = kept, held
        logger.info(
            "closed set: %d notes of %d training instruments held out of train.csv (%d instruments too small)",
            len(held),
            len({r["instrument"] for r in held}),
            len(too_few),
        )
    # The report first: every failure below points at it.
    write_report(problems, report)
    if held_out is not None:
        _add_to_report(report, closed_set.report_lines(closed_set_share, closed_set_seed, held_out, too_few))
    empty = [split_folders[s] for s, rows in rows_of.items() if not rows]
    if empty:
        raise DataFolderError(f"no usable notes in {', '.join(empty)}; see {report}")

    families = family_label_space(r["family"] for rows in rows_of.values() for r in rows)
    write_label_file(families, os.path.join(save_folder, FAMILY_LABELS))
    if held_out is not None:
        write_label_file(instruments, os.path.join(save_folder, INSTRUMENT_LABELS))
    manifests = {}
    for split, rows in rows_of.items():
        manifests[split] = os.path.join(save_folder, f"{split}.csv")
        write_manifest(rows, manifests[split])
        if split in EVAL_SPLITS:
            enrolments, trials = protocol_trials({row["ID"]: row["instrument"] for row in rows}, protocol)
            write_trials(
                enrolments,
                trials,
                os.path.join(save_folder, f"{split}_enrolments.txt"),
                os.path.join(save_folder, f"{split}_trials.txt"),
            )
    if held_out is not None:
        manifests[closed_set.CLOSED_SET] = os.path.join(save_folder, f"{closed_set.CLOSED_SET}.csv")
        write_manifest(held_out, manifests[closed_set.CLOSED_SET])
    # Written last: its presence with equal options is what marks the preparation complete.
    write_json(opt_path, options)
    return manifests


def write_manifest(rows, path):
    """Atomically writes manifest rows (:data:`MANIFEST_FIELDS`) as a SpeechBrain CSV."""
    manifest.write_manifest(rows, path, MANIFEST_FIELDS)


def _add_to_report(path, lines):
    """Atomically appends ``lines`` to the report at ``path``."""
    with open(path) as handle:
        text = handle.read()
    with atomic_open(path) as handle:
        handle.write(text + "".join(line + "\n" for line in lines))


def _manifest_paths(save_folder, splits):
    paths = {split: os.path.join(save_folder, f"{split}.csv") for split in splits}
    if "train" in splits:
        paths[closed_set.CLOSED_SET] = os.path.join(save_folder, f"{closed_set.CLOSED_SET}.csv")
    return paths


def _outputs(save_folder, splits):
    files = [f"{s}.csv" for s in splits] + [REPORT_FILE, FAMILY_LABELS]
    files += [INSTRUMENT_LABELS, f"{closed_set.CLOSED_SET}.csv"] if "train" in splits else []
    files += [f"{s}_{kind}.txt" for s in splits if s in EVAL_SPLITS for kind in ("enrolments", "trials")]
    return [os.path.join(save_folder, f) for f in files]
