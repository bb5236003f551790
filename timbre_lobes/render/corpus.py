"""Renders SoundFont presets into a corpus in NSynth's json/wav layout.

Every melodic preset (SoundFont, bank, program) of the given SoundFonts is one
instrument. Its notes are rendered offline with FluidSynth, like NSynth's: 16 kHz
mono 16-bit wav files of exactly 4 s, the key held for 3 s and released for the
last second, reverb and chorus off, at a fixed gain (so velocity still changes
the loudness). Pitches lie on a grid of ``pitch_step`` semitones through middle C
within MIDI 21-108; a note whose loudest 50 ms stay below ``silence_dbfs`` is
outside the preset's playable range and is skipped (and counted).

The output is what ``nsynth_prepare`` reads for the real NSynth release::

    <out_dir>/nsynth-train/examples.json
    <out_dir>/nsynth-train/audio/<note_str>.wav
    <out_dir>/nsynth-valid/...
    <out_dir>/nsynth-test/...

``examples.json`` maps each ``note_str`` to every NSynth field (``note``,
``note_str``, ``instrument``, ``instrument_str``, ``instrument_family``,
``instrument_family_str``, ``instrument_source``, ``instrument_source_str``,
``pitch``, ``velocity``, ``sample_rate``, ``qualities``, ``qualities_str``), plus
``soundfont`` (file name), ``bank``, ``program`` and ``preset_name``. Nobody has
annotated the qualities of rendered notes: ``qualities`` is ten zeros and
``qualities_str`` is empty, so quality labels must not be learnt from this
corpus. Family and source come from ``gm_programs``; a SoundFont named in
``synthetic_soundfonts`` (by default the OPL-3 FM SoundFont) makes all its
presets synthetic. Instruments are numbered in the order SoundFont (as given),
bank, program: ``instrument`` counts all of them, and the ``NNN`` of
``<family>_<source>_<NNN>`` counts within each family and source. ``note`` is
``(instrument * 128 + pitch) * 128 + velocity``, unique and stable.

Splits are instrument-disjoint and drawn per family with a fixed seed, so that
every family with at least 3 instruments has some in each split.
``leave_out_soundfonts`` puts all instruments of those SoundFonts in ``test``
and splits the others into ``train`` and ``valid`` only, so ``test`` measures
generalisation to an unseen SoundFont. MuseScore_General is derived from
FluidR3_GM and reuses many of its samples: the two are not independent sources,
and leaving one out while training on the other is not a fair held-out test.

Rendering runs in parallel over instruments and can be interrupted and
resumed: each wav is written under a temporary name and renamed, each finished
instrument's metadata is saved in ``<out_dir>/.render_state/``, and the
``examples.json`` files are written last. Re-running with the same options
renders only the missing notes; other options into the same folder are refused.

The default corpus (``ensure_default_corpus``) renders FluidR3_GM, TimGM6mb and
the OPL-3 FM SoundFont (334 instruments) every ``DEMO_PITCH_STEP`` semitones at
``DEMO_VELOCITIES``: 9,766 notes (7,771 train, 991 valid, 1,004 test; 1.3 GB),
rendered in 45 s on 2 idle CPU cores (65 CPU-seconds).

MuseScore_General's "Expr." presets are played through the breath controller
(MIDI CC 2), which notes here leave at 0: they are skipped as silent.

Workers are started with ``spawn``: a script calling ``render_corpus`` needs
the usual ``if __name__ == "__main__":`` guard.
"""

import json
import multiprocessing
import os
import random
import time
import wave
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np
from tqdm import tqdm

from timbre_lobes.atomic import atomic_open, write_json
from timbre_lobes.data.nsynth_labels import (
    NOTE_SECONDS,
    QUALITIES,
    SAMPLE_RATE,
    SPLITS,
    family_index,
    instrument_str,
    note_str,
    source_index,
)
from timbre_lobes.render.gm_programs import NUM_PROGRAMS, gm_family_source, gm_program_name

#: NSynth holds each key for 3 of the note's 4 seconds.
HOLD_SECONDS = 3.0
#: NSynth's pitch range, the 88 keys of a piano (MIDI 21-108).
LOWEST_PITCH = 21
HIGHEST_PITCH = 108
#: Pitch grids pass through middle C.
PITCH_ANCHOR = 60
#: NSynth's velocities.
NSYNTH_VELOCITIES = (25, 50, 75, 100, 127)
#: Notes whose loudest frame has a lower RMS (dB re full scale) are skipped as
#: silent. Unplayable notes render as dither noise, near -100 dBFS, while the
#: quietest playable ones (a piano's top key at velocity 25) reach about -60.
SILENCE_DBFS = -70.0
#: Frame length of that loudness measure.
SILENCE_FRAME_SECONDS = 0.05
#: FluidSynth gain (its default is 0.2). The loudest velocity-127 notes of the
#: Debian FluidR3_GM, TimGM6mb, OPL-3 and MuseScore_General SoundFonts peak at
#: 0.87 of full scale with it; louder samples are clipped.
DEFAULT_GAIN = 0.8
#: Fractions of each family's instruments in train, valid and test.
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
DEFAULT_SEED = 1234
#: The SoundFont bank that holds drum kits.
DRUM_BANK = 128
#: MIDI data bytes (pitch, velocity) take 128 values.
MIDI_VALUES = 128
#: The MIDI channel notes are played on (channel 10, index 9, is for drums).
CHANNEL = 0
#: FluidSynth renders in blocks of 64 samples, and applies events between them.
BLOCK_SAMPLES = 64
INT16_FULL_SCALE = 32768

#: ``(path, Debian package)`` of the SoundFonts of the default corpus.
DEFAULT_SOUNDFONTS = (
    ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "fluid-soundfont-gm"),
    ("/usr/share/sounds/sf2/TimGM6mb.sf2", "timgm6mb-soundfont"),
    ("/usr/share/sounds/sf2/OPL-3_FM_128M.sf2", "opl3-soundfont"),
)
#: SoundFonts (file name or stem) whose presets are all synthesized.
SYNTHETIC_SOUNDFONTS = ("OPL-3_FM_128M",)
#: Pitch step and velocities of the default corpus, sized for a CPU demo.
DEMO_PITCH_STEP = 6
DEMO_VELOCITIES = (50, 100)

STATE_DIR = ".render_state"


def _import_fluidsynth():
    try:
        import fluidsynth
    except ImportError as error:
        raise ImportError(
            "rendering needs FluidSynth: `pip install pyfluidsynth` and the "
            "FluidSynth library (Debian: `apt-get install libfluidsynth3`)"
        ) from error
    return fluidsynth


def _check_soundfont(path):
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"SoundFont not found: {path}")
    return path


class SoundFontSynth:
    """A FluidSynth synthesizer with one SoundFont loaded, rendering offline.

    Arguments
    ---------
    soundfont : str
        Path of a ``.sf2`` or ``.sf3`` file.
    sample_rate : int
        Output sample rate in Hz.
    gain : float
        FluidSynth's master gain.

    Example
    -------
    >>> synth = SoundFontSynth("/usr/share/sounds/sf2/TimGM6mb.sf2")
    >>> synth.presets()[0]
    (0, 0, 'Piano 1')
    >>> synth.render_note(0, 0, pitch=60, velocity=100).shape
    (64000,)
    >>> synth.close()
    """

    def __init__(self, soundfont, sample_rate=SAMPLE_RATE, gain=DEFAULT_GAIN):
        self.soundfont = _check_soundfont(soundfont)
        self.sample_rate = sample_rate
        fluidsynth = _import_fluidsynth()
        self._synth = fluidsynth.Synth(
            gain=float(gain),
            samplerate=sample_rate,
            channels=16,
            **{
                "synth.reverb.active": 0,
                "synth.chorus.active": 0,
                # Load a preset's samples when it is selected, not all at once.
                "synth.dynamic-sample-loading": 1,
            },
        )
        self._sfid = self._synth.sfload(self.soundfont)
        if self._sfid < 0:
            self.close()
            raise ValueError(f"FluidSynth could not load SoundFont {self.soundfont}")

    def presets(self):
        """Returns ``(bank, program, name)`` of every preset outside the drum bank."""
        presets = []
        for bank in range(DRUM_BANK):
            for program in range(NUM_PROGRAMS):
                name = self._synth.sfpreset_name(self._sfid, bank, program)
                if name is not None:
                    presets.append((bank, program, name.strip()))
        return presets

    def render_note(self, bank, program, pitch, velocity):
        """Renders one NSynth-like note and resets the synthesizer.

        The result does not depend on what was rendered before, up to the
        +-1 LSB dither FluidSynth adds to 16-bit output.

        Returns
        -------
        numpy.ndarray
            ``int16`` mono samples, ``NOTE_SECONDS`` long, key held
            ``HOLD_SECONDS``.
        """
        # FluidSynth ramps a voice's output gain over its first block, starting
        # from the gain its voice slot had in the previous note; striking the
        # note for one block first makes that start the same whatever came before.
        self._note_on(bank, program, pitch, velocity)
        self._synth.get_samples(BLOCK_SAMPLES)
        self._reset()
        total = round(NOTE_SECONDS * self.sample_rate)
        held = round(HOLD_SECONDS * self.sample_rate)
        self._note_on(bank, program, pitch, velocity)
        audio = [self._synth.get_samples(held)]
        self._synth.noteoff(CHANNEL, pitch)
        audio.append(self._synth.get_samples(total - held))
        self._reset()
        stereo = np.concatenate(audio).reshape(-1, 2).astype(np.float64)
        return np.round(stereo.mean(axis=1)).astype(np.int16)

    def _note_on(self, bank, program, pitch, velocity):
        if self._synth.program_select(CHANNEL, self._sfid, bank, program) != 0:
            raise ValueError(f"{self.soundfont} has no preset bank {bank} program {program}")
        self._synth.noteon(CHANNEL, pitch, velocity)

    def _reset(self):
        # Notes change no controller, so silencing is all the reset needed; a
        # system reset would also unselect the preset and unload its samples.
        self._synth.all_sounds_off(CHANNEL)
        self._synth.get_samples(BLOCK_SAMPLES)
        if self._synth.get_active_voice_count():
            raise RuntimeError("FluidSynth kept voices playing after all-sounds-off")

    def close(self):
        """Frees the synthesizer and its samples."""
        self._synth.delete()


def pitch_grid(lowest=LOWEST_PITCH, highest=HIGHEST_PITCH, step=1):
    """Pitches from ``lowest`` to ``highest`` every ``step`` semitones through C4.

    Example
    -------
    >>> pitch_grid(21, 108, 12)
    [24, 36, 48, 60, 72, 84, 96, 108]
    """
    if not isinstance(step, int) or step < 1:
        raise ValueError(f"pitch_step must be a positive integer, got {step!r}")
    if not 0 <= lowest <= highest < MIDI_VALUES:
        raise ValueError(f"pitch range must satisfy 0 <= lowest <= highest <= 127, got {lowest}-{highest}")
    pitches = [p for p in range(lowest, highest + 1) if (p - PITCH_ANCHOR) % step == 0]
    if not pitches:
        raise ValueError(f"no pitch of MIDI {lowest}-{highest} lies on the {step}-semitone grid through {PITCH_ANCHOR}")
    return pitches


def _check_fractions(fractions):
    if len(fractions) != len(SPLITS) or min(fractions) < 0 or fractions[0] <= 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(
            f"fractions must be {len(SPLITS)} non-negative numbers for {SPLITS} "
            f"summing to 1, with some train, got {fractions!r}"
        )


def _split_sizes(count, fractions):
    """Train, valid and test sizes of one family, keeping one train instrument
    and, where there are enough, one in each split with a non-zero fraction."""
    sizes = [0, round(count * fractions[1]), round(count * fractions[2])]
    for split in (2, 1):
        if fractions[split] > 0 and sizes[split] == 0 and count - sum(sizes) > 1:
            sizes[split] = 1
    while count - sizes[1] - sizes[2] < 1 and sizes[1] + sizes[2] > 0:
        sizes[1 if sizes[1] >= sizes[2] else 2] -= 1
    sizes[0] = count - sizes[1] - sizes[2]
    return sizes


def assign_splits(families, seed=DEFAULT_SEED, fractions=DEFAULT_FRACTIONS, held_out=None):
    """Assigns instruments to splits, instrument-disjoint and stratified by family.

    Arguments
    ---------
    families : list of str
        The family of each instrument.
    seed : int
        Seed of the per-family shuffles; the same seed gives the same splits.
    fractions : tuple of float
        Fractions of each family in train, valid and test. A family of n >= 3
        instruments gets at least one in valid and test (two instruments: one
        train, one test; one: train).
    held_out : list of bool, optional
        Instruments forced into test; the others are then split into train and
        valid only, in the ratio of the first two fractions.

    Returns
    -------
    list of str
        The split of each instrument.

    Example
    -------
    >>> splits = assign_splits(["reed"] * 10 + ["brass"] * 3, seed=0)
    >>> splits.count("train"), splits.count("valid"), splits.count("test")
    (9, 2, 2)
    """
    _check_fractions(fractions)
    held_out = held_out or [False] * len(families)
    if len(held_out) != len(families):
        raise ValueError("held_out needs one flag per instrument")
    splits = ["test" if out else None for out in held_out]
    if any(held_out):
        train_valid = fractions[0] + fractions[1]
        fractions = (fractions[0] / train_valid, fractions[1] / train_valid, 0.0)
    for family in sorted(set(families)):
        members = [i for i, f in enumerate(families) if f == family and not held_out[i]]
        random.Random(f"{seed}-{family}").shuffle(members)
        start = 0
        for split, size in zip(SPLITS, _split_sizes(len(members), fractions)):
            for i in members[start : start + size]:
                splits[i] = split
            start += size
    return splits


def _soundfont_names(path):
    name = os.path.basename(path)
    return name, os.path.splitext(name)[0]


def _matching(path, names):
    return any(name in names for name in _soundfont_names(path))


def plan_corpus(
    soundfonts,
    programs=None,
    seed=DEFAULT_SEED,
    fractions=DEFAULT_FRACTIONS,
    leave_out_soundfonts=None,
    synthetic_soundfonts=SYNTHETIC_SOUNDFONTS,
):
    """Lists the instruments of a corpus with their NSynth names and splits.

    Renders nothing; ``render_corpus`` takes the same arguments.

    Arguments
    ---------
    soundfonts : list of str
        SoundFont paths; the order fixes the instrument numbers.
    programs : list of int, optional
        Only presets of these GM programs (default: all with a family).
    seed, fractions : see ``assign_splits``.
    leave_out_soundfonts : list of str, optional
        File names or stems of SoundFonts whose instruments all go to test.
    synthetic_soundfonts : list of str
        File names or stems of SoundFonts whose presets are all synthetic.

    Returns
    -------
    list of dict
        Per instrument: ``instrument``, ``instrument_str``, family and source
        (names and indices), ``soundfont``, ``soundfont_path``, ``bank``,
        ``program``, ``preset_name`` and ``split``.

    Example
    -------
    >>> plan = plan_corpus(["/usr/share/sounds/sf2/TimGM6mb.sf2"], programs=[0, 1])
    >>> [(i["instrument_str"], i["preset_name"]) for i in plan]
    [('keyboard_acoustic_000', 'Piano 1'), ('keyboard_acoustic_001', 'Piano 2')]
    """
    paths = [_check_soundfont(path) for path in soundfonts]
    if not paths:
        raise ValueError("no SoundFont given")
    names = [os.path.basename(path) for path in paths]
    if len(set(names)) != len(names):
        raise ValueError(f"SoundFont file names must be distinct, got {names}")
    leave_out = set(leave_out_soundfonts or ())
    unknown = leave_out - {n for path in paths for n in _soundfont_names(path)}
    if unknown:
        raise ValueError(f"cannot leave out {sorted(unknown)}: not among {names}")
    if programs is not None:
        for program in programs:
            if gm_family_source(program) is None:
                raise ValueError(
                    f"GM program {program} ({gm_program_name(program)}) has no NSynth family and is never rendered"
                )
        programs = set(programs)

    instruments, numbers = [], {}
    for path in paths:
        synthetic = _matching(path, synthetic_soundfonts)
        synth = SoundFontSynth(path)
        presets = synth.presets()
        synth.close()
        for bank, program, preset_name in presets:
            family_source = gm_family_source(program, synthetic=synthetic)
            if family_source is None or (programs is not None and program not in programs):
                continue
            family, source = family_source
            number = numbers.get(family_source, 0)
            numbers[family_source] = number + 1
            instruments.append(
                {
                    "instrument": len(instruments),
                    "instrument_str": instrument_str(family, source, number),
                    "instrument_family": family_index(family),
                    "instrument_family_str": family,
                    "instrument_source": source_index(source),
                    "instrument_source_str": source,
                    "soundfont": os.path.basename(path),
                    "soundfont_path": path,
                    "bank": bank,
                    "program": program,
                    "preset_name": preset_name,
                }
            )
    splits = assign_splits(
        [i["instrument_family_str"] for i in instruments],
        seed=seed,
        fractions=fractions,
        held_out=[_matching(i["soundfont_path"], leave_out) for i in instruments],
    )
    for instrument, split in zip(instruments, splits):
        instrument["split"] = split
    return instruments


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
    metadata = {k: v for k, v in instrument.items() if k not in ("soundfont_path", "split")}
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


# One synthesizer per process, kept while consecutive instruments share its SoundFont.
_PROCESS_SYNTH = {}


def _process_synth(soundfont, gain):
    synth = _PROCESS_SYNTH.get("synth")
    if synth is None or synth.soundfont != soundfont:
        _close_process_synth()
        synth = _PROCESS_SYNTH["synth"] = SoundFontSynth(soundfont, gain=gain)
    return synth


def _close_process_synth():
    synth = _PROCESS_SYNTH.pop("synth", None)
    if synth is not None:
        synth.close()


def _render_instrument(job):
    """Renders the missing notes of one instrument, then saves its metadata."""
    instrument, out_dir = job["instrument"], job["out_dir"]
    synth = _process_synth(instrument["soundfont_path"], job["gain"])
    examples, silent, rendered, clipped = {}, [], 0, 0
    for pitch, velocity in job["notes"]:
        metadata = _note_metadata(instrument, pitch, velocity)
        path = _wav_path(out_dir, instrument, metadata["note_str"])
        if not os.path.exists(path):
            audio = synth.render_note(instrument["bank"], instrument["program"], pitch, velocity)
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


def _is_done(out_dir, instrument):
    path = _state_path(out_dir, instrument)
    if not os.path.isfile(path):
        return None
    state = _read_json(path)
    if all(os.path.isfile(_wav_path(out_dir, instrument, n)) for n in state["examples"]):
        return state
    return None


def _run_jobs(jobs, workers):
    """Yields ``_render_instrument``'s results, in parallel when workers > 1."""
    if workers == 1 or len(jobs) <= 1:
        try:
            for job in jobs:
                yield _render_instrument(job)
        finally:
            _close_process_synth()
        return
    context = multiprocessing.get_context("spawn")
    executor = ProcessPoolExecutor(workers, mp_context=context)
    try:
        futures = [executor.submit(_render_instrument, job) for job in jobs]
        for future in as_completed(futures):
            yield future.result()
    finally:
        executor.shutdown(cancel_futures=True)


def _check_options(out_dir, options):
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
    else:
        write_json(path, options)


def render_corpus(
    soundfonts,
    out_dir,
    programs=None,
    pitch_step=1,
    velocities=NSYNTH_VELOCITIES,
    pitch_range=(LOWEST_PITCH, HIGHEST_PITCH),
    seed=DEFAULT_SEED,
    fractions=DEFAULT_FRACTIONS,
    workers=None,
    leave_out_soundfonts=None,
    synthetic_soundfonts=SYNTHETIC_SOUNDFONTS,
    gain=DEFAULT_GAIN,
    silence_dbfs=SILENCE_DBFS,
    on_note=None,
    progress=True,
):
    """Renders SoundFont presets into ``out_dir`` in NSynth's json/wav layout.

    Arguments
    ---------
    soundfonts : list of str
        SoundFont (``.sf2``/``.sf3``) paths; the order fixes the numbering.
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
    seed, fractions, leave_out_soundfonts, synthetic_soundfonts :
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
        Whether to show a progress bar.

    Returns
    -------
    dict
        ``instruments`` and ``notes`` per split, ``silent_notes``,
        ``silent_instruments``, ``clipped_notes``, ``rendered_notes`` (by
        this call), ``seconds`` and ``out_dir``.

    Example
    -------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as out_dir:
    ...     summary = render_corpus(
    ...         ["/usr/share/sounds/sf2/TimGM6mb.sf2"], out_dir,
    ...         programs=[0], pitch_step=24, velocities=[100], progress=False,
    ...     )  # doctest: +ELLIPSIS
    Rendering 4 notes of 1 instruments ...
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
    soundfonts = [_check_soundfont(path) for path in soundfonts]
    instruments = plan_corpus(
        soundfonts,
        programs,
        seed,
        fractions,
        leave_out_soundfonts,
        synthetic_soundfonts,
    )
    out_dir = os.fspath(out_dir)
    os.makedirs(os.path.join(out_dir, STATE_DIR), exist_ok=True)
    for split in SPLITS:
        os.makedirs(os.path.join(_split_dir(out_dir, split), "audio"), exist_ok=True)
    _check_options(
        out_dir,
        {
            "soundfonts": soundfonts,
            "programs": sorted(programs) if programs is not None else None,
            "pitches": pitches,
            "velocities": sorted(velocities),
            "seed": seed,
            "fractions": list(fractions),
            "leave_out_soundfonts": sorted(leave_out_soundfonts or ()),
            "synthetic_soundfonts": sorted(synthetic_soundfonts),
            "gain": gain,
            "silence_dbfs": silence_dbfs,
            "sample_rate": SAMPLE_RATE,
        },
    )

    notes = [(pitch, velocity) for pitch in pitches for velocity in sorted(velocities)]
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
                "notes": notes,
                "gain": gain,
                "silence_dbfs": silence_dbfs,
                "on_note": on_note,
            }
        )
    note_bytes = round(NOTE_SECONDS * SAMPLE_RATE) * np.dtype(np.int16).itemsize
    print(
        f"Rendering {len(jobs) * len(notes)} notes of {len(jobs)} instruments "
        f"({len(states)} of {len(instruments)} instruments already done) into "
        f"{out_dir}, at most {len(jobs) * len(notes) * note_bytes / 1e9:.2f} GB"
    )
    rendered = 0
    with tqdm(total=len(jobs) * len(notes), unit="note", disable=not progress) as bar:
        for number, state, rendered_now in _run_jobs(jobs, workers):
            states[number] = state
            rendered += rendered_now
            bar.update(len(notes))

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
    summary["seconds"] = round(time.time() - start, 1)
    print(
        f"Rendered {rendered} new notes in {summary['seconds']} s. "
        + ", ".join(
            f"{split}: {summary['instruments'][split]} instruments, {summary['notes'][split]} notes" for split in SPLITS
        )
        + f". Skipped {summary['silent_notes']} silent notes "
        f"({summary['silent_instruments']} instruments entirely silent); "
        f"{summary['clipped_notes']} notes clipped."
    )
    return summary


def default_soundfonts():
    """Returns the paths of ``DEFAULT_SOUNDFONTS``, naming the package of a missing one.

    Example
    -------
    >>> [os.path.basename(path) for path in default_soundfonts()]
    ['FluidR3_GM.sf2', 'TimGM6mb.sf2', 'OPL-3_FM_128M.sf2']
    """
    for path, package in DEFAULT_SOUNDFONTS:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"SoundFont {path} not found; install it with `apt-get install {package}`")
    return [path for path, _ in DEFAULT_SOUNDFONTS]


def _corpus_complete(out_dir):
    return all(os.path.isfile(os.path.join(_split_dir(out_dir, split), "examples.json")) for split in SPLITS)


def ensure_default_corpus(out_dir, workers=None):
    """Renders the default corpus into ``out_dir`` unless it is already there.

    The default corpus is ``DEFAULT_SOUNDFONTS`` rendered every
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
        print(f"The default SoundFont corpus is not in {out_dir} yet: rendering it.")
        render_corpus(
            default_soundfonts(),
            out_dir,
            pitch_step=DEMO_PITCH_STEP,
            velocities=DEMO_VELOCITIES,
            workers=workers,
        )
    return out_dir


def add_render_parser(subparsers):
    """Adds the ``render`` command to an ``argparse`` subparsers object.

    Example
    -------
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_render_parser(parser.add_subparsers())
    >>> parser.parse_args(["render", "--out", "corpus"]).pitch_step
    1
    """
    parser = subparsers.add_parser(
        "render",
        help="render SoundFont presets into an NSynth-format corpus",
        description=__doc__.split("\n\n")[0] + " Each melodic preset is one instrument; notes are 4 s, 16 kHz mono "
        "16-bit, the key held 3 s; splits are instrument-disjoint. An "
        "interrupted render is resumed by running the same command again.",
    )
    parser.add_argument(
        "--soundfont",
        action="append",
        metavar="PATH",
        help="a .sf2/.sf3 SoundFont to render; repeat for several (their order "
        "fixes the instrument numbers). Default: " + ", ".join(path for path, _ in DEFAULT_SOUNDFONTS),
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="corpus folder")
    parser.add_argument(
        "--programs",
        nargs="+",
        type=int,
        metavar="P",
        help="only presets of these General MIDI programs (0-127); default: every program with an NSynth family",
    )
    parser.add_argument(
        "--pitch-step",
        type=int,
        default=1,
        metavar="N",
        help="semitones between rendered pitches, on a grid through MIDI 60 (default: %(default)s, every pitch)",
    )
    parser.add_argument(
        "--pitch-range",
        nargs=2,
        type=int,
        default=(LOWEST_PITCH, HIGHEST_PITCH),
        metavar=("LOWEST", "HIGHEST"),
        help=f"MIDI pitch range; notes silent for a preset are skipped (default: {LOWEST_PITCH} {HIGHEST_PITCH})",
    )
    parser.add_argument(
        "--velocities",
        nargs="+",
        type=int,
        default=NSYNTH_VELOCITIES,
        metavar="V",
        help="MIDI velocities (1-127) of every pitch (default: " + " ".join(map(str, NSYNTH_VELOCITIES)) + ")",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help="seed of the split draw (default: %(default)s)",
    )
    parser.add_argument(
        "--fractions",
        nargs=3,
        type=float,
        default=DEFAULT_FRACTIONS,
        metavar=("TRAIN", "VALID", "TEST"),
        help="fractions of each family's instruments per split (default: "
        + " ".join(map(str, DEFAULT_FRACTIONS))
        + ")",
    )
    parser.add_argument(
        "--leave-out",
        action="append",
        metavar="SOUNDFONT_NAME",
        help="file name or stem of a SoundFont whose instruments all go to the "
        "test split (the others to train and valid); repeatable",
    )
    parser.add_argument(
        "--synthetic",
        action="append",
        default=None,
        metavar="SOUNDFONT_NAME",
        help="file name or stem of a SoundFont whose presets are all synthesized "
        f"(source 'synthetic'); repeatable. Default: {' '.join(SYNTHETIC_SOUNDFONTS)}",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="parallel processes (default: the CPU cores available)",
    )
    parser.add_argument(
        "--gain",
        type=float,
        default=DEFAULT_GAIN,
        help="FluidSynth master gain (default: %(default)s)",
    )
    parser.set_defaults(func=_render_command)


def _render_command(args):
    render_corpus(
        args.soundfont or default_soundfonts(),
        args.out,
        programs=args.programs,
        pitch_step=args.pitch_step,
        velocities=args.velocities,
        pitch_range=tuple(args.pitch_range),
        seed=args.seed,
        fractions=tuple(args.fractions),
        workers=args.workers,
        leave_out_soundfonts=args.leave_out,
        synthetic_soundfonts=args.synthetic or SYNTHETIC_SOUNDFONTS,
        gain=args.gain,
    )
