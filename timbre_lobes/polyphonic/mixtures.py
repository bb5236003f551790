"""Polyphonic mixtures made from single notes: a deterministic sampler, its manifest, and the mixing.

A mixture sums 1 to ``max_sources`` notes of *distinct* instruments of one
NSynth-format note set, each shifted by a random onset and scaled by a random gain
in dB, then peak-normalised. Its labels are the set of instruments and families
present, with their gains. Mixtures of one corpus split hold only that split's
instruments, so the instrument-disjoint splits of the corpus (unseen test
instruments) carry over to the mixtures.

    notes = read_nsynth_folder(folder, data_root=folder)                # manifest rows
    mixtures = sample_mixtures(notes, 400, max_sources=4, seed=0)     # list of dicts
    write_mixtures("test_mixtures.json", mixtures, options)           # the comparable manifest
    signal = mix_audio(mixtures[0], data_root=folder)                 # np.ndarray [samples], 16 kHz

The sampler is the speaker-recognition community's overlapped-speech simulation
(e.g. LibriMix, Cosentino et al. 2020) applied to NSynth's single notes; the mixture
counts are balanced (every count from ``min_sources`` to ``max_sources`` as often), so
figures by number of sources rest on equal numbers of mixtures.
"""

import json
import os

import numpy as np
import torch

from timbre_lobes.atomic import write_json
from timbre_lobes.data.audio import read_audio_file, resample

#: Version of the manifest layout written by :func:`write_mixtures`.
MANIFEST_VERSION = 1

#: Scales a mixture's pitches may be drawn from (semitone offsets from a random root).
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}

#: Peak of every mixture after normalisation (linear, full scale = 1).
PEAK = 0.9


class MixtureError(ValueError):
    """The notes cannot give the mixtures asked for (too few instruments, a bad option)."""


def _by_instrument(notes):
    groups = {}
    for row in notes:
        groups.setdefault(row["instrument"], []).append(row)
    return {name: sorted(rows, key=lambda r: r["ID"]) for name, rows in sorted(groups.items())}


def sample_mixtures(
    notes,
    n_mixtures,
    max_sources=4,
    min_sources=1,
    seconds=4.0,
    max_onset_seconds=1.0,
    gain_db=(-12.0, 0.0),
    scale=None,
    seed=0,
    prefix="mix",
):
    """Draws ``n_mixtures`` mixture descriptions from single-note manifest rows.

    Mixture ``i`` has ``min_sources + i % (max_sources - min_sources + 1)`` sources
    (balanced counts), notes of distinct instruments drawn uniformly; each source
    gets an onset uniform in ``[0, max_onset_seconds]`` s and a gain uniform in
    ``gain_db`` dB. With ``scale`` (``"major"`` or ``"minor"``), a random root is
    drawn per mixture (among the roots whose scale holds notes of enough
    instruments) and only notes whose pitch class lies in its scale are used (an
    instrument with none is not drawn for that mixture).

    Arguments
    ---------
    notes : list of dict
        Manifest rows with at least ``ID, wav, instrument, family``; ``pitch`` is
        needed with ``scale`` (as :func:`timbre_lobes.data.nsynth.read_nsynth_folder` gives).
    n_mixtures : int
        Number of mixtures.
    max_sources, min_sources : int
        Range of the number of sources (distinct instruments) per mixture.
    seconds : float
        Length of every mixture in s (notes are cut at its end).
    max_onset_seconds : float
        Latest onset in s; must be below ``seconds``.
    gain_db : (float, float)
        Range of the sources' gains in dB (before the mixture's peak normalisation).
    scale : str, optional
        One of :data:`SCALES`, or None for any pitches.
    seed : int or sequence of int
        The draw is a function of ``(notes, options, seed)`` only (e.g. ``[seed, epoch]``).
    prefix : str
        Mixture ids are ``<prefix><index, 5 digits>``.

    Returns
    -------
    list of dict
        ``{"id", "n_sources", "seconds", "sources": [{"note", "wav", "instrument",
        "family", "pitch", "onset" (s), "gain_db"}]}``, sources in drawing order.

    Raises
    ------
    MixtureError
        Fewer instruments than ``max_sources``, an empty range, onsets past the end,
        or no key that holds notes of enough instruments.

    Example
    -------
    >>> notes = [{"ID": f"n{i}", "wav": f"n{i}.wav", "instrument": f"i{i % 5}", "family": "f", "pitch": 60}
    ...          for i in range(20)]
    >>> mixtures = sample_mixtures(notes, 4, max_sources=2, seed=1)
    >>> [m["n_sources"] for m in mixtures]
    [1, 2, 1, 2]
    >>> mixtures == sample_mixtures(notes, 4, max_sources=2, seed=1)
    True
    """
    if not 1 <= min_sources <= max_sources:
        raise MixtureError(f"need 1 <= min_sources <= max_sources, got {min_sources} and {max_sources}")
    if not 0 <= max_onset_seconds < seconds:
        raise MixtureError(f"max_onset_seconds must lie in [0, seconds={seconds}), got {max_onset_seconds}")
    if scale is not None and scale not in SCALES:
        raise MixtureError(f"scale must be one of {sorted(SCALES)} or None, got {scale!r}")
    low, high = sorted(float(g) for g in gain_db)
    groups = _by_instrument(notes)
    if len(groups) < max_sources:
        raise MixtureError(
            f"{len(groups)} instruments cannot give mixtures of {max_sources} distinct instruments: "
            "lower max_sources or use a larger note set"
        )
    names = list(groups)
    in_key = {}
    if scale is not None:  # root -> {instrument: its notes whose pitch class lies in the root's scale}
        for root in range(12):
            allowed = {(root + step) % 12 for step in SCALES[scale]}
            kept = {name: [r for r in rows if int(r["pitch"]) % 12 in allowed] for name, rows in groups.items()}
            in_key[root] = {name: rows for name, rows in kept.items() if rows}
    rng = np.random.default_rng(seed)
    span = max_sources - min_sources + 1
    mixtures = []
    for index in range(int(n_mixtures)):
        n_sources = min_sources + index % span
        candidates = groups
        if scale is not None:  # a random root among those whose scale leaves enough instruments
            roots = [root for root in range(12) if len(in_key[root]) >= n_sources]
            if not roots:
                raise MixtureError(f"no {scale} scale holds notes of {n_sources} instruments")
            candidates = in_key[roots[int(rng.integers(len(roots)))]]
        pool = [name for name in names if name in candidates]
        chosen = rng.choice(len(pool), size=n_sources, replace=False)
        sources = []
        for pick in chosen:
            rows = candidates[pool[int(pick)]]
            row = rows[int(rng.integers(len(rows)))]
            sources.append(
                {
                    "note": row["ID"],
                    "wav": row["wav"],
                    "instrument": row["instrument"],
                    "family": row["family"],
                    "pitch": int(row["pitch"]) if str(row.get("pitch", "")).strip() else None,
                    "onset": round(float(rng.uniform(0.0, max_onset_seconds)), 4),
                    "gain_db": round(float(rng.uniform(low, high)), 2),
                }
            )
        mixtures.append(
            {"id": f"{prefix}{index:05d}", "n_sources": n_sources, "seconds": float(seconds), "sources": sources}
        )
    return mixtures


def split_enrolment(notes, n_enrol=3, seed=0):
    """Sets aside ``n_enrol`` notes of each instrument as its enrolment; the rest may be mixed.

    Enrolment notes never appear in a mixture, as a speaker's enrolment
    utterances are never among the test recordings.

    Returns
    -------
    (dict, list)
        ``{instrument: [enrolment rows]}`` and the remaining rows. An instrument
        with fewer than ``n_enrol + 1`` notes is enrolled with all but one.

    Example
    -------
    >>> notes = [{"ID": f"n{i}", "instrument": "a" if i < 4 else "b"} for i in range(8)]
    >>> enrol, rest = split_enrolment(notes, n_enrol=2)
    >>> sorted(enrol), [len(v) for v in enrol.values()], len(rest)
    (['a', 'b'], [2, 2], 4)
    """
    rng = np.random.default_rng(seed)
    enrol, rest = {}, []
    for name, rows in _by_instrument(notes).items():
        if len(rows) < 2:
            rest += rows
            continue
        order = rng.permutation(len(rows))
        k = min(n_enrol, len(rows) - 1)
        enrol[name] = [rows[i] for i in sorted(order[:k])]
        rest += [rows[i] for i in sorted(order[k:])]
    return enrol, rest


def resolve_wav(wav, data_root):
    """A manifest wav path with ``$data_root`` replaced by ``data_root``."""
    return wav.replace("$data_root", os.fspath(data_root)) if data_root is not None else wav


def read_note(path, seconds, sample_rate=16000):
    """The first ``seconds`` of a note as [samples] float32 at ``sample_rate`` (resampled, down-mixed).

    Raises
    ------
    timbre_lobes.data.audio.AudioError
        The file is unusable (the message names it).
    """
    signal, rate, _ = read_audio_file(path, max_seconds=seconds)
    return resample(torch.from_numpy(signal), rate, sample_rate).numpy()


def mix_audio(mixture, data_root=None, sample_rate=16000, read=None):
    """The waveform of one mixture: [samples] float32 at ``sample_rate``, peak :data:`PEAK`.

    Each source is read (any rate: resampled; any channels: down-mixed), scaled by
    ``10 ** (gain_db / 20)``, placed at its onset and cut at the mixture's end.

    Arguments
    ---------
    mixture : dict
        One entry of :func:`sample_mixtures`.
    data_root : str, optional
        What ``$data_root`` in the wav paths stands for.
    sample_rate : int
        Output rate in Hz.
    read : callable, optional
        ``read(path) -> np.ndarray [samples]`` at ``sample_rate`` (e.g. a cache);
        default: :func:`timbre_lobes.data.audio.read_audio_file` + resampling.

    Raises
    ------
    timbre_lobes.data.audio.AudioError
        A source file is unusable (the message names it).
    """
    length = int(round(mixture["seconds"] * sample_rate))
    out = np.zeros(length, dtype=np.float64)
    for source in mixture["sources"]:
        path = resolve_wav(source["wav"], data_root)
        signal = read_note(path, mixture["seconds"], sample_rate) if read is None else read(path)
        signal = np.asarray(signal, dtype=np.float64)
        start = int(round(source["onset"] * sample_rate))
        piece = signal[: max(0, length - start)]
        out[start : start + len(piece)] += 10.0 ** (source["gain_db"] / 20.0) * piece
    peak = np.abs(out).max()
    if peak > 0:
        out *= PEAK / peak
    return out.astype(np.float32)


def labels_of(mixture):
    """``(instruments, families)`` present in a mixture, as sets of names."""
    return {s["instrument"] for s in mixture["sources"]}, {s["family"] for s in mixture["sources"]}


def write_mixtures(path, mixtures, options, enrolment=None):
    """Writes mixtures (and the enrolment notes of the detection trials) as one JSON manifest, atomically.

    ``options`` (the sampler's settings and the note set it drew from) are
    stored with them, so :func:`read_mixtures` can tell a manifest made with other settings.
    """
    record = {"version": MANIFEST_VERSION, "options": options, "mixtures": mixtures}
    if enrolment is not None:
        record["enrolment"] = {name: [row["ID"] for row in rows] for name, rows in enrolment.items()}
    write_json(path, record)


def read_mixtures(path, options=None):
    """The record :func:`write_mixtures` wrote; None if absent, unreadable or made with other ``options``."""
    return check_mixtures(path, options)[0]


def check_mixtures(path, options=None):
    """``(record, None)`` if the manifest at ``path`` can be reused, else ``(None, why)``.

    ``why`` says, for the user, why the mixtures must be drawn again: no manifest yet, a file
    cut short or of another version, or the options that differ from ``options``.
    """
    try:
        with open(path) as handle:
            record = json.load(handle)
    except FileNotFoundError:
        return None, "no manifest yet"
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None, "the manifest there is unreadable or cut short"
    if not isinstance(record, dict) or record.get("version") != MANIFEST_VERSION:
        return None, f"the manifest there is not of version {MANIFEST_VERSION}"
    stored = record.get("options")
    if options is not None and stored != options:
        stored = stored if isinstance(stored, dict) else {}
        changed = sorted(k for k in set(options) | set(stored) if options.get(k) != stored.get(k))
        return None, f"it was drawn with other settings ({', '.join(changed)})"
    return record, None
