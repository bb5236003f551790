"""Rendering a planned corpus to disk in NSynth's json/wav layout, resumably and in parallel.

The output is what ``nsynth_prepare`` reads for the real NSynth release::

    <out_dir>/nsynth-train/examples.json
    <out_dir>/nsynth-train/audio/<note_str>.wav
    <out_dir>/nsynth-valid/...
    <out_dir>/nsynth-test/...

Notes are rendered by the sound sources of the catalogue
(``timbre_lobes.render.catalog``: SoundFonts through FluidSynth, Gravis patches
through TiMidity++, STK, DX7 voices through Dexed) for the instruments and
splits of ``plan_corpus`` (see ``timbre_lobes.render.plan``). A note whose loudest 50 ms stay below
``silence_dbfs`` is outside the preset's playable range and is skipped (and
counted).

``examples.json`` maps each ``note_str`` to every NSynth field (``note``,
``note_str``, ``instrument``, ``instrument_str``, ``instrument_family``,
``instrument_family_str``, ``instrument_source``, ``instrument_source_str``,
``pitch``, ``velocity``, ``sample_rate``, ``qualities``, ``qualities_str``), plus
``sound_source``, ``source_group``, ``licence``, ``recorded``, ``preset``,
``preset_name`` and ``family_rule`` (how the family was decided), and for
SoundFonts ``soundfont`` (file name), ``bank`` and ``program``.
``instruments.json`` lists the instruments with their splits, and
``dropped_presets.json`` the presets left out as silent or as copies. Nobody has
annotated the qualities of rendered notes: ``qualities`` is ten zeros and
``qualities_str`` is empty, so quality labels must not be learnt from this
corpus. ``note`` is ``(instrument * 128 + pitch) * 128 + velocity``, unique and
stable.

Rendering runs in parallel over instruments and can be interrupted and
resumed: each wav is written under a temporary name and renamed, each finished
instrument's metadata is saved in ``<out_dir>/.render_state/``, and the
``examples.json`` files are written last. Re-running with the same options
renders only the missing notes; other options into the same folder are refused.

The default corpus (``ensure_default_corpus``) renders ``DEFAULT_SOURCES``
(eight source groups, five of them recorded banks; 996 instruments once 216
copies are dropped) every ``DEMO_PITCH_STEP`` semitones, staggered
(``DEMO_STAGGER``), at ``DEMO_VELOCITIES``: 14,432 notes (11,554 train, 1,434
valid, 1,444 test; 1.8 GB), surveyed and rendered in about 2.5 min on 2 idle
CPU cores; see docs/corpus.md.

MuseScore_General's "Expr." presets are played through the breath controller
(MIDI CC 2), which every note sets to 127 (at its power-on 0 they are silent).
Before the splits are drawn, each preset is surveyed (``Survey``): probed at the
grid's lowest, middle and highest pitch, and fingerprinted at MIDI 48/60/72
(``timbre_lobes.render.independence``). One that sounds at none of the probes
is left out, so a silent preset never takes a place in a split, and so is a
near-copy of a preset kept before it. The survey is cached in
``.render_state/survey.npz``.

Workers are started with ``spawn``: a script calling ``render_corpus`` needs
the usual ``if __name__ == "__main__":`` guard. What they run
(``_render_instrument``) is a module-level function, so that it pickles.
"""

import json
import multiprocessing
import os
import time
import wave
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np
from tqdm import tqdm

from timbre_lobes.atomic import atomic_open, write_json
from timbre_lobes.data.nsynth_labels import NOTE_SECONDS, QUALITIES, SAMPLE_RATE, SPLITS, note_str
from timbre_lobes.render.catalog import CATALOG, DEFAULT_SOURCES, check_installed, open_source, source_info
from timbre_lobes.render.independence import (
    COPY_THRESHOLD_DB,
    FINGERPRINT_PITCHES,
    FINGERPRINT_VELOCITY,
    preset_fingerprint,
)
from timbre_lobes.render.plan import (
    DEFAULT_FRACTIONS,
    DEFAULT_SEED,
    HIGHEST_PITCH,
    LOWEST_PITCH,
    MIDI_VALUES,
    SYNTHETIC_SOUNDFONTS,
    instrument_pitches,
    pitch_grid,
    plan_corpus,
)
from timbre_lobes.render.sources import DEFAULT_GAIN

#: NSynth's velocities.
NSYNTH_VELOCITIES = (25, 50, 75, 100, 127)
#: Notes whose loudest frame has a lower RMS (dB re full scale) are skipped as
#: silent. Unplayable notes render as dither noise, near -100 dBFS, while the
#: quietest playable ones (a piano's top key at velocity 25) reach about -60.
SILENCE_DBFS = -70.0
#: Frame length of that loudness measure.
SILENCE_FRAME_SECONDS = 0.05
INT16_FULL_SCALE = 32768

#: Pitch step and velocities of the default corpus, sized for a CPU demo: many
#: instruments with few notes each (finding 12: unseen-instrument family F1 grows
#: with the number of training instruments).
DEMO_PITCH_STEP = 12
#: Each instrument's octave grid a fifth from the previous one's (every pitch
#: class in the corpus; see ``render_corpus``).
DEMO_STAGGER = True
DEMO_VELOCITIES = (50, 100)

STATE_DIR = ".render_state"


def _split_dir(out_dir, split):
    return os.path.join(out_dir, f"nsynth-{split}")


def _wav_path(out_dir, instrument, name):
    return os.path.join(_split_dir(out_dir, instrument["split"]), "audio", f"{name}.wav")


def _state_path(out_dir, instrument):
    return os.path.join(out_dir, STATE_DIR, f"{instrument['instrument_str']}.json")


def _read_json(path):
    with open(path) as f:
        return json.load(f)


def _write_wav(path, audio, sample_rate):
    with atomic_open(path, "wb") as handle, wave.open(handle, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(audio.dtype.itemsize)
        f.setframerate(sample_rate)
        f.writeframes(audio.astype("<i2").tobytes())


def _remove_leftovers(folder):
    """Removes the temporary files of writes that an interruption cut short."""
    for name in os.listdir(folder):
        if name.startswith(".") and name.endswith(".tmp"):
            os.remove(os.path.join(folder, name))


def _note_metadata(instrument, pitch, velocity):
    family, source = (
        instrument["instrument_family_str"],
        instrument["instrument_source_str"],
    )
    number = int(instrument["instrument_str"].rsplit("_", 1)[1])
    metadata = {k: v for k, v in instrument.items() if k not in ("source_spec", "split")}
    metadata.update(
        note=(instrument["instrument"] * MIDI_VALUES + pitch) * MIDI_VALUES + velocity,
        note_str=note_str(family, source, number, pitch, velocity),
        pitch=pitch,
        velocity=velocity,
        sample_rate=SAMPLE_RATE,
        qualities=[0] * len(QUALITIES),
        qualities_str=[],
    )
    return dict(sorted(metadata.items()))


def loudest_frame_dbfs(audio, sample_rate=SAMPLE_RATE, frame_seconds=SILENCE_FRAME_SECONDS):
    """RMS of the loudest frame of 16-bit audio, in dB re full scale.

    Example
    -------
    >>> round(loudest_frame_dbfs(np.full(16000, 3277, dtype=np.int16)), 1)
    -20.0
    """
    frame = round(frame_seconds * sample_rate)
    frames = audio[: len(audio) // frame * frame].reshape(-1, frame)
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1)).max()
    return float(20 * np.log10(max(rms, 1 / INT16_FULL_SCALE) / INT16_FULL_SCALE))


# One synthesizer per process, kept while consecutive jobs share its source.
_PROCESS_SYNTH = {}


def _process_synth(spec, gain, synthetic=False):
    key = (spec, gain, synthetic)
    if _PROCESS_SYNTH.get("key") != key:
        _close_process_synth()
        _PROCESS_SYNTH["synth"] = open_source(spec, gain=gain, synthetic=synthetic)
        _PROCESS_SYNTH["key"] = key
    return _PROCESS_SYNTH["synth"]


def _close_process_synth():
    synth = _PROCESS_SYNTH.pop("synth", None)
    _PROCESS_SYNTH.pop("key", None)
    if synth is not None:
        synth.close()


def _open_for(instrument, gain):
    return _process_synth(instrument["source_spec"], gain, synthetic=not instrument["recorded"])


def _render_instrument(job):
    """Renders the missing notes of one instrument, then saves its metadata."""
    instrument, out_dir = job["instrument"], job["out_dir"]
    synth = _open_for(instrument, job["gain"])
    examples, silent, rendered, clipped = {}, [], 0, 0
    for pitch, velocity in job["notes"]:
        metadata = _note_metadata(instrument, pitch, velocity)
        path = _wav_path(out_dir, instrument, metadata["note_str"])
        if not os.path.exists(path):
            audio = synth.render_note(*instrument["preset"], pitch, velocity)
            if loudest_frame_dbfs(audio) < job["silence_dbfs"]:
                silent.append(metadata["note_str"])
                continue
            clipped += int(np.abs(audio.astype(np.int32)).max() >= INT16_FULL_SCALE - 1)
            _write_wav(path, audio, SAMPLE_RATE)
            rendered += 1
            if job["on_note"] is not None:
                job["on_note"](metadata["note_str"])
        examples[metadata["note_str"]] = metadata
    state = {"examples": examples, "silent": silent, "clipped": clipped}
    write_json(_state_path(out_dir, instrument), state)
    return instrument["instrument"], state, rendered


def _survey_preset(job):
    """Does one candidate preset sound at the probe pitches, and what is its fingerprint?"""
    candidate, probe = job["candidate"], job["probe"]
    synth = _open_for(candidate, probe["gain"])
    sounds = any(
        loudest_frame_dbfs(synth.render_note(*candidate["preset"], pitch, probe["velocity"])) >= probe["silence_dbfs"]
        for pitch in probe["pitches"]
    )
    return job["index"], sounds, preset_fingerprint(synth, candidate["preset"]) if sounds else None


class Survey:
    """Renders a few notes of every candidate preset, in parallel, for ``plan_corpus``.

    A preset *sounds* when one of its notes at the grid's lowest, middle and
    highest pitch (at the highest velocity) is louder than ``silence_dbfs``
    (:func:`loudest_frame_dbfs`); a sounding preset gets its fingerprint
    (:func:`~timbre_lobes.render.independence.preset_fingerprint`). Results are
    kept in ``cache`` (a ``.npz`` path, written by :meth:`save`), keyed by source,
    preset and probe settings, so a resumed render does not survey again.
    """

    def __init__(self, pitches, velocity, silence_dbfs=SILENCE_DBFS, gain=DEFAULT_GAIN, workers=1, progress=True):
        self.probe = {
            "pitches": sorted({pitches[0], pitches[len(pitches) // 2], pitches[-1]}),
            "velocity": velocity,
            "silence_dbfs": silence_dbfs,
            "gain": gain,
            "fingerprint": [list(FINGERPRINT_PITCHES), FINGERPRINT_VELOCITY],
        }
        self.workers, self.progress = workers, progress
        self.results = {}

    def _key(self, candidate):
        return json.dumps([candidate["source_spec"], candidate["preset"], candidate["recorded"], self.probe])

    def load(self, path):
        """Reads earlier results from a cache file, when there is one."""
        if os.path.isfile(path):
            with np.load(path, allow_pickle=False) as cache:
                keys = json.loads(str(cache["keys"]))
                for key, sounds, fingerprint in zip(keys, cache["sounds"], cache["fingerprints"]):
                    self.results[key] = (bool(sounds), None if np.isnan(fingerprint).all() else fingerprint)

    def save(self, path):
        """Writes every result to ``path`` (atomically)."""
        keys = sorted(self.results)
        shape = next((f.shape for s, f in self.results.values() if f is not None), (len(FINGERPRINT_PITCHES), 1))
        fingerprints = (
            np.stack([self.results[k][1] if self.results[k][1] is not None else np.full(shape, np.nan) for k in keys])
            if keys
            else np.zeros((0, *shape))
        )
        with atomic_open(path, "wb") as handle:
            np.savez(
                handle,
                keys=json.dumps(keys),
                sounds=np.array([self.results[k][0] for k in keys], dtype=bool),
                fingerprints=fingerprints,
            )

    def __call__(self, candidates):
        keys = [self._key(c) for c in candidates]
        jobs = [
            {"index": i, "candidate": c, "probe": self.probe}
            for i, (c, k) in enumerate(zip(candidates, keys))
            if k not in self.results
        ]
        if jobs:
            print(f"Surveying {len(jobs)} presets (do they sound? near-copies of another?)")
            with tqdm(total=len(jobs), unit="preset", disable=not self.progress) as bar:
                for index, sounds, fingerprint in _run_parallel(_survey_preset, jobs, self.workers):
                    self.results[keys[index]] = (sounds, fingerprint)
                    bar.update(1)
        return [self.results[k] for k in keys]


def _is_done(out_dir, instrument):
    path = _state_path(out_dir, instrument)
    if not os.path.isfile(path):
        return None
    state = _read_json(path)
    if all(os.path.isfile(_wav_path(out_dir, instrument, n)) for n in state["examples"]):
        return state
    return None


def _run_parallel(function, jobs, workers):
    """Yields ``function(job)`` for every job, in parallel processes when workers > 1."""
    if workers == 1 or len(jobs) <= 1:
        try:
            for job in jobs:
                yield function(job)
        finally:
            _close_process_synth()
        return
    context = multiprocessing.get_context("spawn")
    executor = ProcessPoolExecutor(workers, mp_context=context)
    try:
        # Consecutive jobs of one source run in one process: a source opens once per chunk.
        futures = [executor.submit(_run_chunk, function, chunk) for chunk in _chunks(jobs, workers)]
        for future in as_completed(futures):
            yield from future.result()
    finally:
        executor.shutdown(cancel_futures=True)


def _chunks(jobs, workers, size=None):
    size = size or max(1, min(16, len(jobs) // (4 * workers) or 1))
    return [jobs[i : i + size] for i in range(0, len(jobs), size)]


def _run_chunk(function, chunk):
    return [function(job) for job in chunk]


def _check_options(out_dir, options, write=True):
    """Refuses other options than those ``out_dir`` was rendered with; records them (``write``) if new."""
    path = os.path.join(out_dir, STATE_DIR, "options.json")
    if os.path.isfile(path):
        previous = _read_json(path)
        changed = sorted(k for k in options.keys() | previous.keys() if options.get(k) != previous.get(k))
        if changed:
            raise ValueError(
                f"{out_dir} holds a corpus rendered with other options "
                f"(different {', '.join(changed)}); render into a new folder or "
                "delete it"
            )
    elif write:
        write_json(path, options)


def render_corpus(
    sources,
    out_dir,
    programs=None,
    pitch_step=1,
    velocities=NSYNTH_VELOCITIES,
    pitch_range=(LOWEST_PITCH, HIGHEST_PITCH),
    stagger_pitches=False,
    seed=DEFAULT_SEED,
    fractions=DEFAULT_FRACTIONS,
    workers=None,
    leave_out=None,
    synthetic_soundfonts=SYNTHETIC_SOUNDFONTS,
    gain=DEFAULT_GAIN,
    silence_dbfs=SILENCE_DBFS,
    copy_threshold_db=COPY_THRESHOLD_DB,
    on_note=None,
    progress=True,
):
    """Renders the presets of sound sources into ``out_dir`` in NSynth's json/wav layout.

    Arguments
    ---------
    sources : list of str
        Catalogue names (``timbre_lobes.render.catalog.CATALOG``) or paths of
        SoundFonts / TiMidity++ configurations; the order fixes the numbering,
        and a near-copy is dropped from the later source.
    out_dir : str
        Corpus folder; an interrupted render into it is resumed.
    programs : list of int, optional
        Only presets of these GM programs.
    pitch_step : int
        Semitones between rendered pitches (grid through MIDI 60).
    velocities : list of int
        MIDI velocities (1-127) of every pitch.
    pitch_range : tuple of int
        Lowest and highest MIDI pitch.
    stagger_pitches : bool
        Shift each instrument's pitch grid by a fifth from the previous
        instrument's (``plan.instrument_pitches``), so that a coarse step still
        covers every pitch class across the corpus.
    seed, fractions, leave_out, synthetic_soundfonts, copy_threshold_db :
        See ``plan_corpus``.
    workers : int, optional
        Parallel processes (default: the CPU cores available).
    gain : float
        FluidSynth's master gain.
    silence_dbfs : float
        Notes whose loudest 50 ms have a lower RMS (dB re full scale) are
        skipped as silent.
    on_note : callable, optional
        Called with each ``note_str`` after its wav is written, in the rendering
        process (it must be picklable when ``workers > 1``).
    progress : bool
        Whether to show progress bars.

    Returns
    -------
    dict
        ``instruments`` and ``notes`` per split, ``silent_notes``,
        ``silent_instruments``, ``clipped_notes``, ``rendered_notes`` (by this
        call), ``dropped_presets`` (silent or copies, by reason), ``sources``
        (instruments per source), ``seconds`` and ``out_dir``. The presets left
        out, and why, are in ``<out_dir>/dropped_presets.json``; the instruments
        with their source, group, licence and family rule in
        ``<out_dir>/instruments.json``.

    Example
    -------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as out_dir:
    ...     summary = render_corpus(
    ...         ["/usr/share/sounds/sf2/TimGM6mb.sf2"], out_dir,
    ...         programs=[0], pitch_step=24, velocities=[100], progress=False,
    ...     )  # doctest: +ELLIPSIS
    Surveying 1 presets ...
    >>> summary["notes"]
    {'train': 4, 'valid': 0, 'test': 0}
    """
    start = time.time()
    pitches = pitch_grid(*pitch_range, pitch_step)
    if not velocities or any(not 1 <= v < MIDI_VALUES for v in velocities):
        raise ValueError(f"velocities must be integers 1-127, got {velocities!r}")
    workers = workers or len(os.sched_getaffinity(0))
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    sources = [
        os.path.abspath(s) if os.path.sep in os.fspath(s) or os.path.exists(s) else os.fspath(s) for s in sources
    ]
    for index, spec in enumerate(sources):
        if os.path.sep in spec:
            info = source_info(spec)  # a path that names no known kind of source is refused before anything is made
            if not os.path.isfile(spec):
                raise FileNotFoundError(f"sound source not found: {spec}")
            if CATALOG.get(info.name) == info:
                sources[index] = info.name  # a catalogue file given by its path is that source
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise NotADirectoryError(f"--out {out_dir} is a file, not a folder")
    options = {
        "sources": sources,
        "programs": sorted(programs) if programs is not None else None,
        "pitches": pitches,
        "stagger_pitches": bool(stagger_pitches),
        "velocities": sorted(velocities),
        "seed": seed,
        "fractions": list(fractions),
        "leave_out": sorted(leave_out or ()),
        "synthetic_soundfonts": sorted(synthetic_soundfonts),
        "gain": gain,
        "silence_dbfs": silence_dbfs,
        "copy_threshold_db": copy_threshold_db,
        "sample_rate": SAMPLE_RATE,
    }
    _check_options(out_dir, options, write=False)  # before the survey: a refused rerun costs nothing
    survey = Survey(pitches, max(velocities), silence_dbfs, gain, workers=workers, progress=progress)
    survey_cache = os.path.join(out_dir, STATE_DIR, "survey.npz")
    survey.load(survey_cache)
    dropped = []
    instruments = plan_corpus(
        sources,
        programs,
        seed,
        fractions,
        leave_out,
        synthetic_soundfonts,
        survey=survey,
        copy_threshold_db=copy_threshold_db,
        dropped=dropped,
    )
    os.makedirs(os.path.join(out_dir, STATE_DIR), exist_ok=True)
    survey.save(survey_cache)
    for split in SPLITS:
        os.makedirs(os.path.join(_split_dir(out_dir, split), "audio"), exist_ok=True)
    _check_options(out_dir, options)
    write_json(os.path.join(out_dir, "dropped_presets.json"), dropped)
    write_json(
        os.path.join(out_dir, "instruments.json"),
        [{k: v for k, v in i.items() if k != "source_spec"} for i in instruments],
    )

    def notes_of(instrument):
        grid = instrument_pitches(instrument["instrument"], *pitch_range, pitch_step, stagger_pitches)
        return [(pitch, velocity) for pitch in grid for velocity in sorted(velocities)]

    states, jobs = {}, []
    for instrument in instruments:
        state = _is_done(out_dir, instrument)
        if state is not None:
            states[instrument["instrument"]] = state
            continue
        jobs.append(
            {
                "instrument": instrument,
                "out_dir": out_dir,
                "notes": notes_of(instrument),
                "gain": gain,
                "silence_dbfs": silence_dbfs,
                "on_note": on_note,
            }
        )
    note_bytes = round(NOTE_SECONDS * SAMPLE_RATE) * np.dtype(np.int16).itemsize
    to_render = sum(len(job["notes"]) for job in jobs)
    notes_of_job = {job["instrument"]["instrument"]: len(job["notes"]) for job in jobs}
    print(
        f"Rendering {to_render} notes of {len(jobs)} instruments "
        f"({len(states)} of {len(instruments)} instruments already done) into "
        f"{out_dir}, at most {to_render * note_bytes / 1e9:.2f} GB"
    )
    rendered = 0
    with tqdm(total=to_render, unit="note", disable=not progress) as bar:
        for number, state, rendered_now in _run_parallel(_render_instrument, jobs, workers):
            states[number] = state
            rendered += rendered_now
            bar.update(notes_of_job[number])

    summary = {
        "out_dir": out_dir,
        "instruments": {},
        "notes": {},
        "rendered_notes": rendered,
    }
    for split in SPLITS:
        examples = {}
        for instrument in instruments:
            if instrument["split"] == split:
                examples.update(states[instrument["instrument"]]["examples"])
        split_dir = _split_dir(out_dir, split)
        write_json(os.path.join(split_dir, "examples.json"), dict(sorted(examples.items())))
        summary["instruments"][split] = len({e["instrument"] for e in examples.values()})
        summary["notes"][split] = len(examples)
        _remove_leftovers(os.path.join(split_dir, "audio"))
    _remove_leftovers(os.path.join(out_dir, STATE_DIR))
    summary["silent_notes"] = sum(len(s["silent"]) for s in states.values())
    summary["silent_instruments"] = sum(not s["examples"] for s in states.values())
    summary["clipped_notes"] = sum(s["clipped"] for s in states.values())
    summary["dropped_presets"] = {reason: sum(d["reason"] == reason for d in dropped) for reason in ("silent", "copy")}
    summary["sources"] = {}
    for instrument in instruments:
        if states[instrument["instrument"]]["examples"]:
            name = instrument["sound_source"]
            summary["sources"][name] = summary["sources"].get(name, 0) + 1
    summary["seconds"] = round(time.time() - start, 1)
    print(
        f"Rendered {rendered} new notes in {summary['seconds']} s. "
        + ", ".join(
            f"{split}: {summary['instruments'][split]} instruments, {summary['notes'][split]} notes" for split in SPLITS
        )
        + f". Skipped {summary['silent_notes']} silent notes "
        f"({summary['silent_instruments']} instruments entirely silent); "
        f"{summary['clipped_notes']} notes clipped. Left out {summary['dropped_presets']['silent']} silent presets "
        f"and {summary['dropped_presets']['copy']} near-copies (see {os.path.join(out_dir, 'dropped_presets.json')})."
    )
    return summary


def default_sources():
    """Returns :data:`~timbre_lobes.render.catalog.DEFAULT_SOURCES`, naming the package of a missing one.

    Raises
    ------
    FileNotFoundError
        If a default source is not installed (the message says which package installs it).

    Example
    -------
    >>> default_sources()[:3]
    ['fluidr3', 'timgm6mb', 'opl3']
    """
    for name in DEFAULT_SOURCES:
        check_installed(CATALOG[name])
    return list(DEFAULT_SOURCES)


def _corpus_complete(out_dir):
    return all(os.path.isfile(os.path.join(_split_dir(out_dir, split), "examples.json")) for split in SPLITS)


def ensure_default_corpus(out_dir, workers=None):
    """Renders the default corpus into ``out_dir`` unless it is already there.

    The default corpus is ``DEFAULT_SOURCES`` rendered every
    ``DEMO_PITCH_STEP`` semitones at ``DEMO_VELOCITIES``, with the default seed
    and fractions. An interrupted render is resumed.

    Arguments
    ---------
    out_dir : str
        Corpus folder.
    workers : int, optional
        Parallel processes (default: the CPU cores available).

    Returns
    -------
    str
        ``out_dir``.
    """
    if not _corpus_complete(out_dir):
        print(f"The default rendered corpus is not in {out_dir} yet: rendering it.")
        render_corpus(
            default_sources(),
            out_dir,
            pitch_step=DEMO_PITCH_STEP,
            stagger_pitches=DEMO_STAGGER,
            velocities=DEMO_VELOCITIES,
            workers=workers,
        )
    return out_dir
