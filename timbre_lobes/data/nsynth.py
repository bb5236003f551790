"""Reading NSynth-format folders (``examples.json`` + ``audio/``) and writing label files.

The json/wav layout of the official NSynth release, which the renderer
(``python -m timbre_lobes render``) also writes::

    <folder>/examples.json          {note_str: metadata}
    <folder>/audio/<note_str>.wav

Recipes (``recipes/NSynth/nsynth_prepare.py``), the embedding extraction
(:mod:`timbre_lobes.serving.extract`) and the benchmark read folders through
:func:`read_nsynth_folder`, so a note is accepted or skipped for the same
reasons everywhere.

Label spaces come from the data: a note's family is its ``instrument_family_str``
(NSynth's name for its ``instrument_family`` index when the string is absent), so
a corpus in NSynth's layout with other categories (RWC's instruments, a user's own
classes) needs no change here. :func:`family_label_space` keeps NSynth's 11
families in NSynth's order whenever every label is one of them.
"""

import json
import logging
import os
import sys

import soundfile as sf
from tqdm import tqdm

from timbre_lobes.atomic import atomic_open
from timbre_lobes.data.audio import audio_problem
from timbre_lobes.data.nsynth_labels import FAMILIES, SAMPLE_RATE, SOURCES, SPLITS

logger = logging.getLogger(__name__)

#: What a corpus root must hold, said by every error about one.
EXPECTED_LAYOUT = (
    "give a folder holding nsynth-train/examples.json + nsynth-train/audio/<note_str>.wav, and the same for "
    "nsynth-valid/ and nsynth-test/ (the official release, or a corpus made by `python -m timbre_lobes render`)"
)

#: Metadata fields a note needs, and the Python types each may have in ``examples.json``.
REQUIRED_FIELDS = {
    "instrument_str": (str,),
    "instrument_family": (int,),
    "instrument_source": (int,),
    "pitch": (int,),
    "velocity": (int,),
}
#: Optional fields, checked when present (``null`` is not a valid value).
OPTIONAL_FIELDS = {
    "instrument_family_str": (str,),
    "instrument_source_str": (str,),
    "qualities": (list,),
}


class DataFolderError(FileNotFoundError):
    """The data folder is missing or does not hold NSynth's layout."""


def read_nsynth_folder(folder, data_root, sample_rate=SAMPLE_RATE, problems=None, seen_ids=None):
    """Reads one NSynth-format folder (``examples.json`` + ``audio/``) into manifest rows.

    Notes whose metadata record is malformed (a missing field, a field of the
    wrong type, an id that is not a plain file name), whose wav is missing,
    unreadable, truncated or at the wrong sample rate, and note ids already seen
    (in this or an earlier split), are appended to ``problems`` as
    ``(note_id, path, reason)`` and left out; one warning sums them up.

    Arguments
    ---------
    folder : str
        The folder holding ``examples.json`` and ``audio/``.
    data_root : str
        Folder that ``$data_root`` stands for in the manifest's wav paths.
    sample_rate : int
        Required sample rate in Hz.
    problems : list, optional
        Collects the skipped notes.
    seen_ids : set, optional
        Note ids of earlier splits, to catch duplicates across splits.

    Returns
    -------
    list of dict
        One row per usable note: ``ID, duration`` (s), ``wav`` (``$data_root/...``),
        ``instrument, family, source, pitch, velocity, qualities`` (a string of 10
        0/1 flags).

    Raises
    ------
    DataFolderError
        ``examples.json`` is not valid JSON or not an object of records.
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
        id_reason = note_id_problem(note_id)
        if id_reason:
            problems.append((note_id, meta_path, id_reason))
            continue
        wav = os.path.join(folder, "audio", f"{note_id}.wav")
        if note_id in seen_ids:
            problems.append((note_id, wav, "duplicate note id"))
            continue
        reason = metadata_problem(meta) or audio_problem(wav, sample_rate)
        if reason:
            problems.append((note_id, wav, reason))
            continue
        seen_ids.add(note_id)
        rel = os.path.relpath(os.path.abspath(wav), os.path.abspath(data_root))
        qualities = meta.get("qualities") or [0] * 10
        rows.append(
            {
                "ID": note_id,
                "duration": round(sf.info(wav).duration, 4),
                "wav": "$data_root/" + rel.replace(os.sep, "/"),
                "instrument": meta["instrument_str"],
                "family": family_name(meta),
                "source": source_name(meta),
                "pitch": int(meta["pitch"]),
                "velocity": int(meta["velocity"]),
                "qualities": "".join(str(int(q)) for q in qualities),
            }
        )
    skipped = len(problems) - n_before
    if skipped:  # the reasons go into the caller's report (write_report names its path)
        logger.warning(
            "%s: skipped %d of %d notes (bad metadata, missing, unreadable, wrong rate or duplicate)",
            folder,
            skipped,
            len(examples),
        )
    return rows


def family_name(meta):
    """A note's family label: ``instrument_family_str``, else NSynth's name for ``instrument_family``."""
    return meta.get("instrument_family_str") or FAMILIES[int(meta["instrument_family"])]


def source_name(meta):
    """A note's source label: ``instrument_source_str``, else NSynth's name for ``instrument_source``."""
    return meta.get("instrument_source_str") or SOURCES[int(meta["instrument_source"])]


def note_id_problem(note_id):
    """Says why a note id cannot name a file inside ``audio/``, or returns None.

    Ids are file names: an empty id, an absolute one, one with a path separator,
    ``..`` or a NUL byte could read a file outside the data folder.

    Example
    -------
    >>> note_id_problem("guitar_acoustic_000-060-100") is None
    True
    >>> note_id_problem("../../etc/passwd")
    "note id '../../etc/passwd' is not a plain file name (path separators, '..' and absolute paths are refused)"
    """
    bad = (
        not note_id
        or os.path.isabs(note_id)
        or "/" in note_id
        or "\\" in note_id
        or "\0" in note_id
        or note_id in (".", "..")
        or note_id.startswith("..")
    )
    if bad:
        return f"note id {note_id!r} is not a plain file name (path separators, '..' and absolute paths are refused)"
    return None


def metadata_problem(meta):
    """Says which metadata field is missing, of the wrong type or out of range, or returns None.

    Example
    -------
    >>> good = {"instrument_str": "x", "instrument_family": 1, "instrument_source": 0, "pitch": 60, "velocity": 100}
    >>> metadata_problem(good) is None
    True
    >>> metadata_problem({**good, "pitch": "60"})
    "field 'pitch' is a str ('60'), expected int"
    >>> metadata_problem({**good, "instrument_family": None})
    "field 'instrument_family' is a NoneType (None), expected int"
    """
    if not isinstance(meta, dict):
        return f"metadata record is a {type(meta).__name__}, expected an object"
    for field in REQUIRED_FIELDS:
        if field not in meta:
            return f"metadata lacks {field}"
    for field, types in {**REQUIRED_FIELDS, **OPTIONAL_FIELDS}.items():
        if field not in meta:  # only optional fields may be absent; present, they must be valid (not null)
            continue
        value = meta[field]
        # bool is an int in Python, never a valid pitch or index.
        if isinstance(value, bool) or not isinstance(value, types):
            expected = " or ".join(t.__name__ for t in types)
            return f"field {field!r} is a {type(value).__name__} ({value!r:.40}), expected {expected}"
    if not meta.get("instrument_family_str") and not 0 <= meta["instrument_family"] < len(FAMILIES):
        return f"unknown instrument_family {meta['instrument_family']} and no instrument_family_str"
    if not meta.get("instrument_source_str") and not 0 <= meta["instrument_source"] < len(SOURCES):
        return f"unknown instrument_source {meta['instrument_source']} and no instrument_source_str"
    if not meta["instrument_str"].strip():
        return "empty instrument_str"
    qualities = meta.get("qualities")
    if qualities is not None and not all(q in (0, 1) and not isinstance(q, bool) for q in qualities):
        return "qualities must be a list of 0/1 flags"
    return None


def write_report(problems, path):
    """Atomically writes ``note_id<TAB>path<TAB>reason`` lines for every skipped note; warns with its path if any."""
    with atomic_open(path) as handle:
        handle.write(f"# {len(problems)} notes skipped\n")
        for note_id, wav, reason in problems:
            handle.write(f"{note_id}\t{wav}\t{reason}\n")
    if problems:
        logger.warning("%d notes skipped: each one and why in %s", len(problems), path)


def check_corpus(data_folder, splits=SPLITS):
    """Raises :class:`DataFolderError` unless ``data_folder`` holds ``nsynth-<split>/examples.json`` for ``splits``.

    Reads nothing but the folder listing, so a recipe checks its data folder
    before it creates anything (:func:`timbre_lobes.training.load_run`).
    """
    check_layout(data_folder, {split: os.path.join(data_folder, f"nsynth-{split}") for split in splits})


def check_layout(data_folder, split_folders):
    """Raises :class:`DataFolderError` naming what is missing and what is expected.

    Arguments
    ---------
    data_folder : str
        The corpus root.
    split_folders : dict
        split name -> ``<data_folder>/nsynth-<split>`` folder.
    """
    if not os.path.isdir(data_folder):
        raise DataFolderError(f"data folder {data_folder!r} does not exist: {EXPECTED_LAYOUT}")
    missing = [f for f in split_folders.values() if not os.path.isfile(os.path.join(f, "examples.json"))]
    if missing:
        raise DataFolderError(
            f"{data_folder!r} lacks {', '.join(os.path.join(m, 'examples.json') for m in missing)}: {EXPECTED_LAYOUT}"
        )


#: What a folder of notes must hold, said by every error about one.
NOTE_FOLDER_HINT = (
    "give an NSynth-format folder, examples.json + audio/<note_str>.wav, or a corpus root holding nsynth-{split}/"
)


def resolve_note_folder(data_folder, split="test"):
    """The folder holding ``examples.json``: ``data_folder`` itself or its ``nsynth-<split>/``.

    Raises
    ------
    DataFolderError
        The folder is missing, or neither it nor its ``nsynth-<split>/`` holds an ``examples.json``.
    """
    if not os.path.isdir(data_folder):
        raise DataFolderError(f"data folder {data_folder!r} does not exist: {NOTE_FOLDER_HINT.format(split=split)}")
    if os.path.isfile(os.path.join(data_folder, "examples.json")):
        return data_folder
    sub = os.path.join(data_folder, f"nsynth-{split}")
    if os.path.isfile(os.path.join(sub, "examples.json")):
        print(f"{data_folder} is a corpus root: using its {split} split {sub}")
        return sub
    raise DataFolderError(
        f"{data_folder!r} holds no examples.json (nor nsynth-{split}/examples.json): "
        + NOTE_FOLDER_HINT.format(split=split)
    )


def family_label_space(labels):
    """The family labels a head predicts, in its rows' order.

    NSynth's 11 families in NSynth's order when every label is one of them (so an
    index means the same on real NSynth and on a rendered corpus, even where a
    split lacks a family); otherwise the sorted set of labels.

    Example
    -------
    >>> family_label_space(["reed", "bass"])[:3]
    ['bass', 'brass', 'flute']
    >>> family_label_space(["strings", "winds", "strings", "percussion"])
    ['percussion', 'strings', 'winds']
    """
    labels = set(labels)
    if labels <= set(FAMILIES):
        return list(FAMILIES)
    return sorted(labels)


def write_label_file(labels, path):
    """Atomically writes a SpeechBrain ``CategoricalEncoder`` label file, index = position in ``labels``.

    Returns the encoder. Read it back with ``CategoricalEncoder().load(path)``.
    """
    from speechbrain.dataio.encoder import CategoricalEncoder

    encoder = CategoricalEncoder()
    encoder.update_from_iterable(labels)
    tmp = path + ".tmp"
    encoder.save(tmp)
    os.replace(tmp, path)
    return encoder


def _load_examples(meta_path, problems):
    """[(note_id, metadata)] from examples.json; duplicate keys go to ``problems``."""

    def pairs_hook(pairs):
        return pairs

    try:
        with open(meta_path, encoding="utf-8") as handle:
            pairs = json.load(handle, object_pairs_hook=pairs_hook)
    except json.JSONDecodeError as err:
        raise DataFolderError(f"{meta_path} is not valid JSON ({err}); is it half-written?") from None
    except UnicodeDecodeError as err:
        raise DataFolderError(f"{meta_path} is not UTF-8 text ({err})") from None
    if not isinstance(pairs, list):
        raise DataFolderError(f"{meta_path} must hold one JSON object of note records, got {type(pairs).__name__}")
    examples, keys = [], set()
    for note_id, meta in pairs:
        if note_id in keys:
            problems.append((note_id, meta_path, "duplicate note id in examples.json"))
            continue
        keys.add(note_id)
        if not isinstance(meta, list):  # a record is an object, read as a list of pairs by the hook
            problems.append((note_id, meta_path, f"metadata record is a {type(meta).__name__}, expected an object"))
            continue
        examples.append((note_id, dict(meta)))
    return examples
