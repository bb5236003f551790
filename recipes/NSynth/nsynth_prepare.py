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
* ``family_encoder.txt`` (the family label space, from the data: NSynth's 11
  families, or the corpus's own categories) and ``instrument_encoder.txt`` (the
  training instruments): SpeechBrain label files that size the heads;
* ``valid_enrolments.txt``/``valid_trials.txt`` and the same for test: the
  verification protocol of :mod:`timbre_lobes.scoring.verification`;
* ``prepare_report.txt``: every note that was skipped and why.

Like SpeechBrain's prep scripts it is idempotent: it does nothing when every
output exists and the options and input files are unchanged. Every file is
written atomically.
"""

import logging
import os

from timbre_lobes.atomic import write_json
from timbre_lobes.data import manifest
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
PREPARE_VERSION = 2
REPORT_FILE = "prepare_report.txt"
EVAL_SPLITS = ("valid", "test")


def prepare_nsynth(
    data_folder,
    save_folder,
    splits=SPLITS,
    skip_prep=False,
    sample_rate=SAMPLE_RATE,
    protocol=None,
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

    Returns
    -------
    dict
        split -> manifest path.

    Raises
    ------
    DataFolderError
        The folder or a split's ``examples.json`` is missing, or a split has no
        usable note (the report, written first, says why each note was skipped).
    """
    if skip_prep:
        return {split: os.path.join(save_folder, f"{split}.csv") for split in splits}
    protocol = {**DEFAULT_PROTOCOL, **(protocol or {})}
    split_folders = {split: os.path.join(data_folder, f"nsynth-{split}") for split in splits}
    check_layout(data_folder, split_folders)
    options = {
        "data_folder": os.path.abspath(data_folder),
        "splits": list(splits),
        "sample_rate": sample_rate,
        "trials": [protocol[k] for k in DEFAULT_PROTOCOL],
        "inputs": {s: manifest.file_signature(os.path.join(f, "examples.json")) for s, f in split_folders.items()},
        "version": PREPARE_VERSION,
    }
    outputs = _outputs(save_folder, splits)
    if manifest.preparation_done(os.path.join(save_folder, OPTIONS_FILE), options, outputs):
        logger.info("NSynth manifests in %s are up to date; skipping preparation", save_folder)
        return {split: os.path.join(save_folder, f"{split}.csv") for split in splits}

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
    # The report first: every failure below points at it.
    write_report(problems, report)
    empty = [split_folders[s] for s, rows in rows_of.items() if not rows]
    if empty:
        raise DataFolderError(f"no usable notes in {', '.join(empty)}; see {report}")

    families = family_label_space(r["family"] for rows in rows_of.values() for r in rows)
    write_label_file(families, os.path.join(save_folder, FAMILY_LABELS))
    if "train" in rows_of:
        # The instrument head's rows: training instruments in order of first appearance.
        write_label_file([r["instrument"] for r in rows_of["train"]], os.path.join(save_folder, INSTRUMENT_LABELS))
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
    # Written last: its presence with equal options is what marks the preparation complete.
    write_json(opt_path, options)
    return manifests


def write_manifest(rows, path):
    """Atomically writes manifest rows (:data:`MANIFEST_FIELDS`) as a SpeechBrain CSV."""
    manifest.write_manifest(rows, path, MANIFEST_FIELDS)


def _outputs(save_folder, splits):
    files = [f"{s}.csv" for s in splits] + [REPORT_FILE, FAMILY_LABELS]
    files += [INSTRUMENT_LABELS] if "train" in splits else []
    files += [f"{s}_{kind}.txt" for s in splits if s in EVAL_SPLITS for kind in ("enrolments", "trials")]
    return [os.path.join(save_folder, f) for f in files]
