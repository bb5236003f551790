"""Prepares the RWC Musical Instrument Sound Database (RWC-MDB-I-2001) for the training core.

Reads RWC as distributed: one folder per CD and instrument (``RWC_I_05/172/172VCSPP.flac``) or a
flat folder, ``.wav``, ``.flac`` or ``.aif(f)`` files at any sample rate. A file name reads
``NNVccssD`` (:func:`parse_rwc_name`): instrument number ``NN``, variation ``V`` (maker/player),
instrument code ``cc``, playing style ``ss``, dynamics ``D`` (F/M/P). A name ``NNVccssD_<k>`` is a
single note already cut from that file (note index ``k``, counted from 0). Each whole file is a run
of single notes separated by silence: :func:`split_notes` cuts it into notes, which are resampled to
``sample_rate`` and written as 16-bit wavs into ``notes_folder``.

Writes into ``save_folder``:

* ``train.csv``, ``valid.csv``, ``test.csv``: :data:`MANIFEST_FIELDS`, wav paths as
  ``$data_root/<ID>.wav`` where ``$data_root`` is ``notes_folder``. ``family`` is the category
  the family head predicts (:data:`CATEGORY_TABLE`); ``instrument`` is category + variation as
  RWC numbers it (``172VC``: cello, variation 2), the unit of the verification trials;
* ``family_encoder.txt`` (the categories present, in the table's order) and
  ``instrument_encoder.txt`` (the training instruments): the label files that size the heads;
* ``valid_enrolments.txt``/``valid_trials.txt`` and the same for test (verification protocol);
* ``prepare_report.txt``: every file and note skipped, and why.

The split (:func:`assign_splits`): a category with two or more variations has its highest-numbered
variation in ``test`` only (``held_out=variation``: a maker/player never seen in training); a
category with a single variation gives a share of its notes to ``test`` (``held_out=notes``, a
note-level split, labelled so: the same instrument is in training). ``valid`` holds a share of the
training variations' notes (``held_out=notes``), for checkpoint selection only.

Like ``nsynth_prepare`` it is skippable (``skip_prep``) and idempotent: nothing is redone when
every output exists and neither the options nor the input files changed; cut notes are cached per
source file. Every file is written atomically; the options file last.
"""

import csv
import hashlib
import json
import logging
import os
import random
import re

import numpy as np
import soundfile as sf

from timbre_lobes.atomic import atomic_open, write_json
from timbre_lobes.data import manifest
from timbre_lobes.data.audio import audio_problem
from timbre_lobes.data.nsynth import DataFolderError, write_label_file
from timbre_lobes.scoring.verification import DEFAULT_PROTOCOL, protocol_trials, write_trials
from timbre_lobes.training import FAMILY_LABELS, INSTRUMENT_LABELS

logger = logging.getLogger(__name__)

MANIFEST_FIELDS = [
    "ID",
    "duration",
    "wav",
    "instrument",
    "family",
    "category",
    "number",
    "code",
    "variation",
    "style",
    "dynamics",
    "pitch",
    "file",
    "note_index",
    "start",
    "stop",
    "held_out",
]
AUDIO_EXTENSIONS = (".wav", ".flac", ".aif", ".aiff")
OPTIONS_FILE = "opt_rwc_prepare.json"
REPORT_FILE = "prepare_report.txt"
#: Changes whenever the outputs' format or the note splitting changes, so older preparations
#: and cut notes are redone (the cut notes' cache is keyed by it).
PREPARE_VERSION = 2
EVAL_SPLITS = ("valid", "test")
STATE_DIR = ".cut_state"

#: ``(number, code, category)``: RWC instrument number, instrument code (``None``: any code is
#: accepted, since the code of that number could not be checked here) and the category the family
#: head predicts. Where a number holds two instruments (29: oboe and English horn, 33: flute and
#: pan flute) the code decides. Numbers absent from the table (unpitched percussion sets, drums,
#: voices: see the recipe README) are reported, never guessed. ``recipes/RWC/README.md`` says which
#: rows were checked against what.
CATEGORY_TABLE = (
    (1, "PF", "piano"),
    (2, "EP", "electric_piano"),
    (3, "HC", "harpsichord"),
    (4, "GL", "glockenspiel"),
    (5, "XY", "xylophone"),
    (6, None, "pipe_organ"),
    (7, "AC", "accordion"),
    (8, "HA", "harmonica"),
    (9, "CG", "classical_guitar"),
    (10, "UK", "ukulele"),
    (11, "AG", "acoustic_guitar"),
    (12, "MD", "mandolin"),
    (13, "EG", "electric_guitar"),
    (14, "EB", "electric_bass"),
    (15, "VN", "violin"),
    (16, "VL", "viola"),
    (17, "VC", "cello"),
    (18, "CB", "contrabass"),
    (19, "HP", "harp"),
    (20, "TI", "timpani"),
    (21, "TR", "trumpet"),
    (22, "TB", "trombone"),
    (23, "TU", "tuba"),
    (24, "HR", "horn"),
    (25, "SS", "soprano_sax"),
    (26, "AS", "alto_sax"),
    (27, "TS", "tenor_sax"),
    (28, "BS", "baritone_sax"),
    (29, "OB", "oboe"),
    (29, "EH", "english_horn"),
    (30, "FG", "bassoon"),
    (31, "CL", "clarinet"),
    (32, "PC", "piccolo"),
    (33, "FL", "flute"),
    (33, "PN", "pan_flute"),
    (34, "RC", "recorder"),
    (35, None, "shakuhachi"),
    (36, "BJ", "banjo"),
    (37, None, "shamisen"),
    (38, "KT", "koto"),
    (39, "SO", "sho"),
)

NAME_PATTERN = re.compile(
    r"^(?P<number>\d{2})(?P<variation>\d)(?P<code>[A-Z][A-Z0-9])(?P<style>[A-Z0-9]{2})(?P<dynamics>[A-Z])"
    r"(?:_(?P<note_index>\d+))?$"
)
DYNAMICS = {"F": "forte", "M": "mezzo", "P": "piano"}


class RWCNameError(ValueError):
    """A file name that is not an RWC name, or names an instrument the category table does not hold."""


def parse_rwc_name(path, table=CATEGORY_TABLE):
    """Reads an RWC file name (``NNVccssD`` or ``NNVccssD_<k>``, any folder and audio extension).

    Arguments
    ---------
    path : str
        The file's path or name.
    table : sequence of (int, str or None, str)
        The category table (:data:`CATEGORY_TABLE`).

    Returns
    -------
    dict
        ``stem`` (``NNVccssD``), ``number`` (int), ``variation`` (int), ``code``, ``style``,
        ``dynamics`` (``F``/``M``/``P``), ``note_index`` (int for a single-note clip, else None),
        ``category``, ``instrument`` (``NNVcc``).

    Raises
    ------
    RWCNameError
        The name does not read ``NNVccssD[_k]``, the variation is 0, the dynamics are not F/M/P, or
        the table holds no category for the instrument number and code; the message says which.

    Example
    -------
    >>> name = parse_rwc_name("RWC_I_05/172/172VCSPP.flac")
    >>> name["category"], name["instrument"], name["variation"], name["style"], name["dynamics"]
    ('cello', '172VC', 2, 'SP', 'P')
    >>> parse_rwc_name("notes/212TRC2F_24.flac")["note_index"]
    24
    >>> parse_rwc_name("172XXSPP.flac")
    Traceback (most recent call last):
    ...
    rwc_prepare.RWCNameError: 172XXSPP.flac: instrument number 17 is cello (code VC) in the category table, not code XX
    """
    base = os.path.basename(path)
    stem = os.path.splitext(base)[0]
    match = NAME_PATTERN.match(stem)
    if not match:
        raise RWCNameError(f"{base}: not an RWC name NNVccssD[_k] (number, variation, code, style, dynamics)")
    number, variation, code = int(match["number"]), int(match["variation"]), match["code"]
    if variation == 0:
        raise RWCNameError(f"{base}: variation 0 (RWC numbers variations from 1)")
    if match["dynamics"] not in DYNAMICS:
        raise RWCNameError(f"{base}: dynamics {match['dynamics']!r} is not F, M or P")
    rows = [row for row in table if row[0] == number]
    if not rows:
        raise RWCNameError(
            f"{base}: instrument number {number:02d} is not in the category table (see recipes/RWC/README.md)"
        )
    category = next((cat for num, row_code, cat in rows if row_code == code), None)
    if category is None:
        category = next((cat for num, row_code, cat in rows if row_code is None), None)
    if category is None:
        known = ", ".join(f"{cat} (code {row_code})" for _, row_code, cat in rows)
        raise RWCNameError(f"{base}: instrument number {number:02d} is {known} in the category table, not code {code}")
    return {
        "stem": stem[:8],
        "number": number,
        "variation": variation,
        "code": code,
        "style": match["style"],
        "dynamics": match["dynamics"],
        "note_index": None if match["note_index"] is None else int(match["note_index"]),
        "category": category,
        "instrument": stem[:5],
    }


def load_category_table(path):
    """Reads a category table from a CSV file with columns ``number, code, category``.

    An empty ``code`` accepts any code for that number. Use it to replace :data:`CATEGORY_TABLE`
    (e.g. with the official instrument list of your copy of RWC).

    Raises
    ------
    ValueError
        A row lacks a number or a category, or a number is not an integer.
    """
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        for line, record in enumerate(csv.DictReader(handle), start=2):
            try:
                number = int(record["number"])
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"{path}:{line}: 'number' must be an integer, got {record.get('number')!r}") from None
            category = (record.get("category") or "").strip()
            if not category:
                raise ValueError(f"{path}:{line}: empty category")
            rows.append((number, (record.get("code") or "").strip() or None, category))
    return tuple(rows)


# ---------------------------------------------------------------------------
# Note splitting
# ---------------------------------------------------------------------------

#: The splitter's settings (see :func:`split_notes`); part of the preparation's options.
SPLIT_DEFAULTS = {
    "hop_seconds": 0.0025,
    "floor_percentile": 5.0,
    "floor_margin_db": 10.0,
    "release_margin_db": 3.0,
    "sustain_seconds": 0.03,
    "top_db": 80.0,
    "rise_db": 15.0,
    "rise_seconds": 0.3,
    "min_separation": 0.25,
    "snap_seconds": 0.3,
    "release_seconds": 0.3,
    "min_note_seconds": 0.1,
    "digital_silence_seconds": 0.01,
}


def split_notes(y, sr, **options):
    """Cuts a recording of single notes separated by silence into notes.

    1. A frame envelope (RMS in dBFS, ``hop_seconds`` hop) and the recording's noise floor, the
       ``floor_percentile`` of its frames that are not digital silence (at most 40 dB below the
       peak): the threshold of activity is ``floor_margin_db`` above it (or ``top_db`` below the
       peak, the higher). ``librosa.effects.split`` gives the active intervals, so soft notes count as
       long as they rise above the floor, however far below the loudest note.
    2. Note candidates: each interval's start, moved to the strongest spectral-flux onset
       (``librosa.onset.onset_detect``, backtracked to the preceding energy minimum) within
       ``snap_seconds`` after it, and every other backtracked onset, which finds a note whose
       attack starts inside the previous note's reverberant tail.
    3. A candidate is a note when within ``rise_seconds`` the level rises ``rise_db`` above the
       median level of the 100 ms before it (or above the floor); this keeps slow attacks and
       refuses the bumps of a decaying tail, bow changes and vibrato. Notes closer than
       ``min_separation`` to the previous one are dropped.
    4. A note spans from 150 ms before its candidate to 150 ms before the next one's; its own noise
       floor is the 10th percentile of the 5 ms levels there (at least the recording's floor, at
       most 20 dB below the note's peak).
       The note starts where its level first stays ``floor_margin_db`` above that floor, or
       above the valley between the previous note's tail and this attack when no silence
       separates them (median over ``sustain_seconds``: the start of its attack, not a noise
       spike) and ends ``release_seconds``
       after its level last falls below ``release_margin_db`` above the floor
       (the release and its tail are kept), or earlier at the next note's span. Where the
       recording was edited, digital silence decides: a note ends at the first
       ``digital_silence_seconds`` of exact zeros after its start, and a note that rises straight
       out of digital silence (no noise of its own, or loud at once) starts where the silence ends.
       (A slow attack out of digital silence, with no noise at all, can be cut up to ~80 ms late:
       its first frames look like a quiet pre-roll.)

    Arguments
    ---------
    y : numpy.ndarray
        [samples] mono waveform.
    sr : int
        Its sample rate in Hz.
    **options
        Overrides of :data:`SPLIT_DEFAULTS`.

    Returns
    -------
    list of (int, int)
        ``(start, stop)`` sample indices of each note, in order; notes shorter than
        ``min_note_seconds`` are left out.

    Raises
    ------
    ValueError
        An unknown option.

    Example
    -------
    >>> sr = 16000
    >>> t = np.arange(sr) / sr
    >>> note = np.sin(2 * np.pi * 440 * t) * np.exp(-3 * t)
    >>> y = np.concatenate([np.zeros(sr // 2), note, np.zeros(sr // 2), 0.1 * note, np.zeros(sr // 2)])
    >>> [(round(a / sr, 2), round(b / sr, 2)) for a, b in split_notes(y, sr)]
    [(0.49, 1.5), (1.99, 3.0)]
    """
    import librosa

    unknown = sorted(set(options) - set(SPLIT_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown note-splitting options {unknown}; known: {sorted(SPLIT_DEFAULTS)}")
    opt = {**SPLIT_DEFAULTS, **options}
    y = np.asarray(y, dtype=np.float32)
    hop = max(1, round(sr * opt["hop_seconds"]))
    frame = 8 * hop  # 20 ms frames to find notes, 5 ms frames to place their onsets
    level = _level_db(y, frame, hop)
    fine = _level_db(y, 2 * hop, hop)
    live = fine > -140.0
    if not live.any():
        return []
    peak = float(level.max())
    # At least 40 dB below the peak: in a recording with no noise at all (digital silence between
    # rendered notes) the quietest live frames are the notes themselves.
    floor = min(float(np.percentile(fine[live], opt["floor_percentile"])), peak - 40.0)
    threshold = max(floor + opt["floor_margin_db"], peak - opt["top_db"])
    if peak < threshold:
        return []
    intervals = librosa.effects.split(y, top_db=peak - threshold, frame_length=frame, hop_length=hop)
    strength = librosa.onset.onset_strength(y=y, sr=sr, hop_length=hop)
    peaks = librosa.onset.onset_detect(onset_envelope=strength, sr=sr, hop_length=hop)
    backtracked = librosa.onset.onset_backtrack(peaks, level) if len(peaks) else np.array([], dtype=int)

    def frames(seconds):
        return max(1, round(seconds * sr / hop))

    snap, rise_window, before = frames(opt["snap_seconds"]), frames(opt["rise_seconds"]), frames(0.1)
    candidates = set(int(b) for b in backtracked)
    for start, _ in intervals:
        first = start // hop
        near = [(strength[p], int(b)) for p, b in zip(peaks, backtracked) if first <= p < first + snap]
        candidates.add(max(near)[1] if near else first)

    notes = []
    for f in sorted(candidates):
        if f >= len(level):
            continue
        after = level[f : f + rise_window].max()
        prior = np.median(level[max(0, f - before) : f]) if f > 0 else -np.inf
        if after < threshold or after - max(prior, floor) < opt["rise_db"]:
            continue
        if notes and f - notes[-1] < frames(opt["min_separation"]):
            continue
        notes.append(f)

    zero_runs = _zero_runs(y, max(1, round(opt["digital_silence_seconds"] * sr)))
    cuts = []
    for i, f in enumerate(notes):
        # Spans are disjoint: each starts 150 ms before its candidate, where the next one's begins.
        lo = max(notes[i - 1] + 1 if i else 0, f - frames(0.15))
        hi = max(f + 1, notes[i + 1] - frames(0.15)) if i + 1 < len(notes) else len(fine)
        # The note's noise floor: its quietest live frames (pre-roll and the end of its tail).
        span = fine[lo:hi]
        # At least 20 dB below the note's peak: a note alone between digital silences has no
        # noise of its own, its quietest frames are its own.
        note_peak = float(span.max())
        quiet = float(np.percentile(span[span > -140.0], 10))
        note_floor = max(floor, min(quiet, note_peak - 20.0))
        # Audible: 10 dB above the floor over the next sustain_seconds (median), not a noise spike.
        sustained = _running_median(span, frames(opt["sustain_seconds"]))
        # The attack rises from the valley before the candidate: out of the noise floor, or out
        # of the previous note's reverberant tail when no silence separates them.
        valley = int(np.argmin(level[lo : f + 1]))
        onset_level = max(note_floor, float(level[lo + valley])) + opt["floor_margin_db"]
        audible = np.flatnonzero(sustained >= note_floor + opt["floor_margin_db"])
        rising = np.flatnonzero(sustained[valley:] >= onset_level)
        if not len(audible) or not len(rising):
            continue
        start = (lo + valley + int(rising[0])) * hop
        silent = np.flatnonzero(fine[lo : lo + valley + int(rising[0]) + 1] <= -140.0)
        gate = lo + int(silent[-1]) + 1 if len(silent) else None
        if gate is not None and (
            quiet > note_peak - 20.0 or fine[gate : gate + frames(0.01)].min() >= note_peak - 15.0
        ):
            # No noise of its own (its quietest frames are loud) or loud at once (no pre-roll of
            # noise): the note rises straight out of digital silence, and starts there.
            start = gate * hop
        limit = hi * hop if hi < len(fine) else len(y)
        # Digital silence after the attack: the recording was edited there, the note is over.
        edited = [zero_start for zero_start, _ in zero_runs if start < zero_start < limit]
        if edited:
            stop = edited[0]
        else:  # the release lasts while the level stays release_margin_db above the floor (hysteresis)
            sounding = np.flatnonzero(sustained >= note_floor + opt["release_margin_db"])
            last = max(int(audible[-1]), int(sounding[-1]))
            stop = min(limit, (lo + last + 1) * hop + round(opt["release_seconds"] * sr))
        if stop - start >= opt["min_note_seconds"] * sr:
            cuts.append((start, stop))
    return cuts


def _running_median(values, width):
    """[n] median of ``values[k : k + width]`` for each k (shorter windows at the end)."""
    if width <= 1 or len(values) < width:
        return values
    windows = np.lib.stride_tricks.sliding_window_view(values, width)
    tail = [np.median(values[k:]) for k in range(len(values) - width + 1, len(values))]
    return np.concatenate([np.median(windows, axis=1), tail])


def _level_db(y, frame, hop):
    """[frames] RMS level in dBFS (frames centred on ``k * hop``); digital silence is -200 dB."""
    import librosa

    rms = librosa.feature.rms(y=y, frame_length=frame, hop_length=hop)[0]
    return librosa.amplitude_to_db(rms, ref=1.0, amin=1e-10, top_db=None)


def _zero_runs(y, min_length):
    """``(start, stop)`` of every run of at least ``min_length`` exact zeros in ``y``."""
    zero = np.concatenate([[0], (y == 0).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(zero))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2]) if b - a >= min_length]


# ---------------------------------------------------------------------------
# Cutting files into notes
# ---------------------------------------------------------------------------


#: What an RWC data folder must hold, said by every error about one.
RWC_LAYOUT = (
    "give RWC-MDB-I as distributed (RWC_I_*/NNV/NNVccssD.flac) or a folder of RWC-named "
    f"{', '.join(AUDIO_EXTENSIONS)} files"
)


def check_rwc_folder(data_folder):
    """Raises :class:`DataFolderError` unless ``data_folder`` exists and holds an audio file.

    Reads nothing but the folder listing, so the recipe checks its data folder
    before it creates anything (:func:`timbre_lobes.training.check_inputs`); files
    that are not RWC notes are the preparation's report's to list.
    """
    if not os.path.isdir(data_folder):
        raise DataFolderError(f"RWC data folder {data_folder!r} does not exist: {RWC_LAYOUT}")
    if not find_audio_files(data_folder):
        raise DataFolderError(f"RWC data folder {data_folder!r} holds no audio file: {RWC_LAYOUT}")


def find_audio_files(data_folder):
    """Every audio file under ``data_folder`` (:data:`AUDIO_EXTENSIONS`), as sorted relative paths."""
    found = []
    for root, dirs, files in os.walk(data_folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.lower().endswith(AUDIO_EXTENSIONS) and not name.startswith("."):
                found.append(os.path.relpath(os.path.join(root, name), data_folder))
    return sorted(found)


def read_mono(path):
    """A file's samples as mono float32 ``[samples]`` and its sample rate (channels averaged)."""
    y, sr = sf.read(path, dtype="float32", always_2d=True)
    return y.mean(axis=1), sr


def cut_file(path, name, notes_folder, sample_rate, split_options):
    """Cuts one RWC file into notes in ``notes_folder``; a file cut before with the same options is reused.

    Arguments
    ---------
    path : str
        The audio file.
    name : dict
        Its :func:`parse_rwc_name` fields.
    notes_folder : str
        Where ``<stem>_<k:03d>.wav`` notes (16-bit, ``sample_rate``) and the cut state go.
    sample_rate : int
        Sample rate of the written notes, in Hz.
    split_options : dict
        :func:`split_notes` options.

    Returns
    -------
    list of dict
        One per note: ``ID, note_index, start, stop`` (seconds in the source file), ``duration``
        (seconds, as written).
    """
    import librosa

    stat = os.stat(path)
    state = {
        "file": os.path.abspath(path),
        "signature": [stat.st_size, int(stat.st_mtime)],
        "sample_rate": sample_rate,
        "split": split_options,
        "version": PREPARE_VERSION,
    }
    state_path = os.path.join(notes_folder, STATE_DIR, f"{name['stem']}_{_digest(state['file'])}.json")
    saved = _read_json(state_path)
    if (
        saved
        and saved.get("state") == state
        and all(os.path.isfile(os.path.join(notes_folder, f"{n['ID']}.wav")) for n in saved["notes"])
    ):
        return saved["notes"]
    y, sr = read_mono(path)
    if name["note_index"] is None:
        cuts = split_notes(y, sr, **split_options)
        indices = range(len(cuts))
    else:  # a clip already holding one note
        cuts, indices = [(0, len(y))], [name["note_index"]]
    notes = []
    for index, (start, stop) in zip(indices, cuts):
        note = y[start:stop]
        if sr != sample_rate:
            note = librosa.resample(note, orig_sr=sr, target_sr=sample_rate)
        note_id = f"{name['stem']}_{index:03d}"
        _write_wav(os.path.join(notes_folder, f"{note_id}.wav"), note, sample_rate)
        notes.append(
            {
                "ID": note_id,
                "note_index": index,
                "start": round(start / sr, 4),
                "stop": round(stop / sr, 4),
                "duration": round(len(note) / sample_rate, 4),
            }
        )
    write_json(state_path, {"state": state, "notes": notes})
    return notes


def _write_wav(path, audio, sample_rate):
    """Atomically writes ``audio`` (float, clipped to [-1, 1]) as a 16-bit PCM wav."""
    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
    with atomic_open(path, "wb") as handle:
        sf.write(handle, pcm, sample_rate, subtype="PCM_16", format="WAV")


def _read_json(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError):
        return None


def _digest(text):
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def read_pitch_ranges(path):
    """Reads ``file, lowest, highest[, step]`` rows: a file's notes ascend from MIDI ``lowest`` by ``step``.

    Returns
    -------
    dict
        file stem (``NNVccssD``) -> list of MIDI pitches.
    """
    ranges = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for record in csv.DictReader(handle):
            stem = os.path.splitext(os.path.basename(record["file"]))[0]
            step = int(record.get("step") or 1)
            ranges[stem] = list(range(int(record["lowest"]), int(record["highest"]) + 1, step))
    return ranges


# ---------------------------------------------------------------------------
# Splits and manifests
# ---------------------------------------------------------------------------


def assign_splits(rows, valid_share=0.1, test_share=0.2, seed=1234):
    """Sets each row's ``split`` and ``held_out`` (in place): the honest split of the module docstring.

    Arguments
    ---------
    rows : list of dict
        Note rows with ``ID``, ``category``, ``variation``, ``instrument``.
    valid_share : float
        Share of each training instrument's notes held out for validation (at least one note
        stays in training).
    test_share : float
        Share of the notes of a single-variation category held out for test.
    seed : int
        Seed of the note-level draws.

    Returns
    -------
    dict
        category -> ``{"test_variation": int or None, "variations": [int]}``.

    Example
    -------
    >>> rows = [{"ID": f"{v}-{k}", "category": "cello", "variation": v, "instrument": f"17{v}VC"}
    ...         for v in (1, 2) for k in range(10)]
    >>> plan = assign_splits(rows)
    >>> plan["cello"]["test_variation"], {r["split"] for r in rows if r["variation"] == 2}
    (2, {'test'})
    """
    rng = random.Random(seed)
    plan = {}
    by_category = {}
    for row in rows:
        by_category.setdefault(row["category"], []).append(row)
    for category in sorted(by_category):
        members = by_category[category]
        variations = sorted({r["variation"] for r in members})
        test_variation = variations[-1] if len(variations) > 1 else None
        plan[category] = {"test_variation": test_variation, "variations": variations}
        train_rows = []
        for row in members:
            if row["variation"] == test_variation:
                row["split"], row["held_out"] = "test", "variation"
            else:
                row["split"], row["held_out"] = "train", ""
                train_rows.append(row)
        if test_variation is None:
            train_rows = _hold_out(train_rows, test_share, "test", rng)
        by_instrument = {}
        for row in train_rows:
            by_instrument.setdefault(row["instrument"], []).append(row)
        for instrument in sorted(by_instrument):
            _hold_out(by_instrument[instrument], valid_share, "valid", rng)
    return plan


def _hold_out(rows, share, split, rng):
    """Moves ``round(share * n)`` of ``rows`` (never all) to ``split``; returns those left in training."""
    ordered = sorted(rows, key=lambda r: r["ID"])
    count = min(len(ordered) - 1, round(share * len(ordered)))
    chosen = set(r["ID"] for r in rng.sample(ordered, max(0, count)))
    for row in ordered:
        if row["ID"] in chosen:
            row["split"], row["held_out"] = split, "notes"
    return [r for r in ordered if r["ID"] not in chosen]


def category_label_space(categories, table=CATEGORY_TABLE):
    """The categories present, in the table's order (so an index means the same in every run).

    Not :func:`timbre_lobes.data.nsynth.family_label_space`: RWC categories such as ``flute`` are
    also NSynth family names, and a subset made only of such names would become NSynth's 11.

    Example
    -------
    >>> category_label_space(["flute", "cello", "flute"])
    ['cello', 'flute']
    """
    present = set(categories)
    order = list(dict.fromkeys(cat for _, _, cat in table))
    return [cat for cat in order if cat in present] + sorted(present - set(order))


def write_manifest(rows, path):
    """Atomically writes manifest rows (:data:`MANIFEST_FIELDS`) as a SpeechBrain CSV."""
    manifest.write_manifest(rows, path, MANIFEST_FIELDS, extra_keys="ignore")


def write_report(problems, plan, path, rows=()):
    """Atomically writes the skipped files and notes (``item<TAB>reason``), the notes found per file and the split.

    ``rows`` are the usable notes with their ``split`` (:func:`assign_splits`): each source file's
    note count, and each category's notes per split, so a category whose note-level test share
    came out empty says so.
    """
    per_file, per_split = {}, {}
    for row in rows:
        per_file[row["file"]] = per_file.get(row["file"], 0) + 1
        counts = per_split.setdefault(row["category"], {"train": 0, "valid": 0, "test": 0})
        counts[row["split"]] += 1
    with atomic_open(path) as handle:
        handle.write(f"# {len(problems)} files or notes skipped\n")
        for item, reason in problems:
            handle.write(f"{item}\t{reason}\n")
        handle.write(f"# {sum(per_file.values())} notes from {len(per_file)} files\n")
        for file, count in sorted(per_file.items()):
            handle.write(f"# {file}\t{count} notes\n")
        handle.write("# split per category: test variation (held out whole) or note-level test split\n")
        for category, entry in plan.items():
            held = f"variation {entry['test_variation']}" if entry["test_variation"] else "notes (single variation)"
            variations = ",".join(str(v) for v in entry["variations"])
            counts = per_split.get(category)
            split = "" if counts is None else "\t" + ", ".join(f"{k} {v}" for k, v in counts.items())
            handle.write(f"# {category}\tvariations {variations}\ttest: {held}{split}\n")


def prepare_rwc(
    data_folder,
    save_folder,
    notes_folder=None,
    skip_prep=False,
    sample_rate=16000,
    protocol=None,
    valid_share=0.1,
    test_share=0.2,
    seed=1234,
    category_table=None,
    pitch_ranges=None,
    split_options=None,
):
    """Prepares notes, manifests, label files and trials from an RWC folder.

    Arguments
    ---------
    data_folder : str
        RWC as distributed (``RWC_I_*/NNV/NNVccssD.flac``) or a flat folder of RWC-named files.
    save_folder : str
        Where manifests, label files, trials and the report go.
    notes_folder : str, optional
        Where the cut notes go, in a subfolder per data folder (:func:`notes_folder_for`; default
        ``<save_folder>/notes``); runs may share it.
    skip_prep : bool
        If True, do nothing.
    sample_rate : int
        Sample rate of the written notes, in Hz.
    protocol : dict, optional
        Verification protocol (keys of :data:`timbre_lobes.scoring.verification.DEFAULT_PROTOCOL`).
    valid_share, test_share, seed
        See :func:`assign_splits`.
    category_table : str, optional
        CSV replacing :data:`CATEGORY_TABLE` (:func:`load_category_table`).
    pitch_ranges : str, optional
        CSV of each file's pitch range (:func:`read_pitch_ranges`); default
        ``<data_folder>/pitch_ranges.csv`` when it exists. A file whose note count differs from its
        range gets empty pitches (reported).
    split_options : dict, optional
        :func:`split_notes` options.

    Returns
    -------
    dict
        split -> manifest path.

    Raises
    ------
    DataFolderError
        ``data_folder`` is missing, holds no audio file or no usable note, a split is empty, or a split has too
        few instruments for the verification trials (the report, written first, says why files
        and notes were skipped).
    """
    notes_folder = notes_folder_for(data_folder, notes_folder or os.path.join(save_folder, "notes"))
    manifests = {split: os.path.join(save_folder, f"{split}.csv") for split in ("train", "valid", "test")}
    if skip_prep:
        return manifests
    check_rwc_folder(data_folder)
    protocol = {**DEFAULT_PROTOCOL, **(protocol or {})}
    split_options = {**SPLIT_DEFAULTS, **(split_options or {})}
    table = load_category_table(category_table) if category_table else CATEGORY_TABLE
    if pitch_ranges is None and os.path.isfile(os.path.join(data_folder, "pitch_ranges.csv")):
        pitch_ranges = os.path.join(data_folder, "pitch_ranges.csv")
    files = find_audio_files(data_folder)
    options = {
        "data_folder": os.path.abspath(data_folder),
        "notes_folder": os.path.abspath(notes_folder),
        "sample_rate": sample_rate,
        "trials": [protocol[k] for k in DEFAULT_PROTOCOL],
        "shares": [valid_share, test_share, seed],
        "table": [list(row) for row in table],
        "pitch_ranges": manifest.file_signature(pitch_ranges) if pitch_ranges else None,
        "split": split_options,
        "inputs": {f: manifest.file_signature(os.path.join(data_folder, f)) for f in files},
        "version": PREPARE_VERSION,
    }
    outputs = list(manifests.values()) + [os.path.join(save_folder, f) for f in (REPORT_FILE, *LABEL_FILES)]
    outputs += [os.path.join(save_folder, f"{s}_{kind}.txt") for s in EVAL_SPLITS for kind in ("enrolments", "trials")]
    opt_path = os.path.join(save_folder, OPTIONS_FILE)
    if manifest.preparation_done(opt_path, options, outputs):
        logger.info("RWC manifests in %s are up to date; skipping preparation", save_folder)
        return manifests
    os.makedirs(save_folder, exist_ok=True)
    if os.path.exists(opt_path):
        os.remove(opt_path)

    problems = []
    ranges = read_pitch_ranges(pitch_ranges) if pitch_ranges else {}
    rows = read_rwc_notes(data_folder, notes_folder, sample_rate, split_options, table, ranges, problems)
    plan = assign_splits(rows, valid_share, test_share, seed) if rows else {}
    report = os.path.join(save_folder, REPORT_FILE)
    write_report(problems, plan, report, rows)  # first: every failure below points at it
    by_split = {split: [r for r in rows if r["split"] == split] for split in manifests}
    empty = [split for split, split_rows in by_split.items() if not split_rows]
    if empty:
        raise DataFolderError(
            f"{data_folder}: {len(rows)} usable notes leave no notes for {', '.join(empty)} (valid takes a share "
            "of each training instrument's notes but always leaves it one, so it needs instruments with 2 or more "
            f"notes; test needs a category with 2 variations or 2 notes); see {report}"
        )
    write_label_file(category_label_space(r["family"] for r in rows), os.path.join(save_folder, FAMILY_LABELS))
    write_label_file([r["instrument"] for r in by_split["train"]], os.path.join(save_folder, INSTRUMENT_LABELS))
    for split, split_rows in by_split.items():
        write_manifest(split_rows, manifests[split])
        if split in EVAL_SPLITS:
            try:
                enrolments, trials = protocol_trials({r["ID"]: r["instrument"] for r in split_rows}, protocol)
            except ValueError as err:
                raise DataFolderError(
                    f"{split} split of {data_folder}: {err} (lower enrol_notes, or raise the valid share); see {report}"
                ) from None
            write_trials(
                enrolments,
                trials,
                os.path.join(save_folder, f"{split}_enrolments.txt"),
                os.path.join(save_folder, f"{split}_trials.txt"),
            )
    write_json(opt_path, options)  # last: marks the preparation complete
    return manifests


LABEL_FILES = (FAMILY_LABELS, INSTRUMENT_LABELS)


def notes_folder_for(data_folder, notes_root):
    """The folder of ``data_folder``'s cut notes inside ``notes_root``: ``$data_root`` of the manifests.

    One subfolder per data folder (its name and a digest of its path), so that two corpora with
    the same RWC file names never share a note file.
    """
    path = os.path.abspath(data_folder)
    return os.path.join(notes_root, f"{os.path.basename(path.rstrip(os.sep)) or 'rwc'}-{_digest(path)}")


def read_rwc_notes(
    data_folder, notes_folder, sample_rate=16000, split_options=None, table=CATEGORY_TABLE, ranges=None, problems=None
):
    """Parses, cuts and describes every RWC file's notes (no split yet).

    Arguments
    ---------
    data_folder : str
        The RWC folder.
    notes_folder : str
        Where the notes are written (:func:`cut_file`).
    sample_rate : int
        Sample rate of the written notes, in Hz.
    split_options : dict, optional
        :func:`split_notes` options.
    table : sequence
        The category table.
    ranges : dict, optional
        file stem -> MIDI pitches of its notes in order (:func:`read_pitch_ranges`).
    problems : list, optional
        Collects ``(file, reason)`` for every file or note skipped.

    Returns
    -------
    list of dict
        One row per note, with the manifest's fields but ``split`` and ``held_out``.
    """
    split_options = {**SPLIT_DEFAULTS, **(split_options or {})}
    ranges = ranges or {}
    problems = [] if problems is None else problems
    files = find_audio_files(data_folder)
    rows, seen = [], {}
    for rel in files:
        try:
            name = parse_rwc_name(rel, table)
        except RWCNameError as err:
            problems.append((rel, str(err)))
            continue
        # Damage a decoder would not notice (a WAV cut short by an interrupted copy reads as a shorter one).
        damage = audio_problem(os.path.join(data_folder, rel), sample_rate=None, channels=None)
        if damage:
            problems.append((rel, damage))
            continue
        try:
            notes = cut_file(os.path.join(data_folder, rel), name, notes_folder, sample_rate, split_options)
        except (RuntimeError, OSError, ValueError) as err:  # unreadable or corrupt audio
            problems.append((rel, f"unreadable audio: {err}"))
            continue
        if not notes:
            problems.append((rel, "no note found (silent, or below the noise floor)"))
            continue
        pitches = ranges.get(name["stem"]) if name["note_index"] is None else None
        if pitches is not None and len(pitches) != len(notes):
            problems.append((rel, f"{len(notes)} notes found but its pitch range lists {len(pitches)}: pitch empty"))
            pitches = None
        for k, note in enumerate(notes):
            if note["ID"] in seen:
                problems.append((rel, f"note {note['ID']} also comes from {seen[note['ID']]}: duplicate skipped"))
                continue
            seen[note["ID"]] = rel
            rows.append(
                {
                    **note,
                    "wav": f"$data_root/{note['ID']}.wav",
                    "instrument": name["instrument"],
                    "family": name["category"],
                    "category": name["category"],
                    "number": name["number"],
                    "code": name["code"],
                    "variation": name["variation"],
                    "style": name["style"],
                    "dynamics": name["dynamics"],
                    "pitch": "" if pitches is None else pitches[k],
                    "file": rel.replace(os.sep, "/"),
                }
            )
    return rows
