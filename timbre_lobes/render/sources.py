"""Sound sources: synthesizers that render one note of one preset, NSynth-like.

A :class:`SoundSource` renders a note the way NSynth's were: 16 kHz mono 16-bit
samples of exactly ``NOTE_SECONDS`` (4 s), the key held ``HOLD_SECONDS`` (3 s)
and released for the last second, with no effect (reverb, chorus) and at a
fixed gain, so that velocity still changes the loudness. A rendered note must
not depend on the notes rendered before it.

:class:`SoundFontSynth` plays a SoundFont (``.sf2``/``.sf3``) offline with
FluidSynth; ``timbre_lobes.render.synths`` holds the other synthesizers
(TiMidity++ with Gravis patches, STK physical models, a DX7 FM emulator), and
``timbre_lobes.render.catalog`` names the installed sounds of each. Every source
also says which NSynth family and source each of its presets belongs to, and
how that was decided (:meth:`SoundSource.classify`).
"""

import os

import numpy as np

from timbre_lobes.data.nsynth_labels import NOTE_SECONDS, SAMPLE_RATE
from timbre_lobes.render.gm_programs import NUM_PROGRAMS, gm_family_source, gm_program_name

#: NSynth holds each key for 3 of the note's 4 seconds.
HOLD_SECONDS = 3.0
#: FluidSynth gain (its default is 0.2). The loudest velocity-127 notes of the
#: Debian FluidR3_GM, TimGM6mb, OPL-3 and MuseScore_General SoundFonts peak at
#: 0.87 of full scale with it; louder samples are clipped.
DEFAULT_GAIN = 0.8
#: The SoundFont bank that holds drum kits.
DRUM_BANK = 128
#: The MIDI channel notes are played on (channel 10, index 9, is for drums).
CHANNEL = 0
#: The breath controller (MIDI CC 2) and the value every note is played with. Presets that
#: read it (MuseScore_General's bank-17 "Expr." presets) are silent at its power-on 0; the
#: General MIDI SoundFonts ignore it (their renders differ by FluidSynth's +-1 LSB dither only).
BREATH_CC, BREATH_VALUE = 2, 127
#: FluidSynth renders in blocks of 64 samples, and applies events between them.
BLOCK_SAMPLES = 64


class SoundSource:
    """Renders one note of one preset at a pitch and velocity to 16 kHz mono.

    A subclass wraps one synthesizer with its sounds loaded, and provides:

    * ``presets()``: a list of tuples ``(*preset, preset_name)``, one per
      playable preset, where the leading fields ``preset`` identify it (for a
      SoundFont: bank and program);
    * ``render_note(*preset, pitch, velocity)``: the note as ``int16`` mono
      samples at ``sample_rate``, shape ``[round(NOTE_SECONDS * sample_rate)]``,
      the key held ``HOLD_SECONDS``, independent of earlier notes (up to
      dither); a ``ValueError`` for an unknown preset;
    * ``classify(*preset, preset_name)``: ``(family, source, rule)``, the
      preset's NSynth family and source and a sentence saying how they were
      decided, or None for a preset with no NSynth family (a sound effect);
    * ``close()``: frees the synthesizer.

    A source is also a context manager that closes it on exit.

    Attributes
    ----------
    name : str
        Short name of the sounds, e.g. a SoundFont's file name.
    spec : str
        What :func:`timbre_lobes.render.catalog.open_source` opens it from (a
        catalogue name or a file path); the corpus records it.
    group : str
        Independence group: sources sharing sounds (a SoundFont and its
        derivatives) share a group, and a leave-one-source-out corpus holds
        out a whole group.
    recorded : bool
        Whether the sounds are recordings (a sample bank) rather than synthesized.
    licence : str or None
        Licence of the sounds (SPDX identifier or a sentence), None when the
        code does not know it: then see the sounds' own documentation before
        distributing what is rendered from them.
    sample_rate : int
        Output sample rate in Hz.
    """

    name = None
    spec = None
    group = None
    recorded = True
    licence = None
    sample_rate = SAMPLE_RATE

    def presets(self):
        """Returns ``(*preset, preset_name)`` of every playable preset."""
        raise NotImplementedError

    def render_note(self, *args):
        """Renders ``render_note(*preset, pitch, velocity)``; see the class docstring."""
        raise NotImplementedError

    def classify(self, *preset_and_name):
        """Returns ``(family, source, rule)`` of ``classify(*preset, preset_name)``, or None."""
        raise NotImplementedError

    def close(self):
        """Frees the synthesizer and its sounds."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def to_note(audio, sample_rate, gain=1.0):
    """Fits float samples to one NSynth-like note: ``int16``, ``NOTE_SECONDS`` long.

    Arguments
    ---------
    audio : numpy.ndarray
        Mono samples, shape ``[time]``, full scale 1.0; a longer render is cut
        (its tail past the note is dropped), a shorter one is padded with zeros.
    sample_rate : int
        Rate of ``audio`` in Hz.
    gain : float
        Linear gain applied first; samples beyond full scale are clipped.

    Returns
    -------
    numpy.ndarray
        ``int16`` samples, shape ``[round(NOTE_SECONDS * sample_rate)]``.

    Example
    -------
    >>> note = to_note(np.full(10, 0.5), 16000)
    >>> note.shape, int(note[0]), int(note[-1])
    ((64000,), 16384, 0)
    """
    total = round(NOTE_SECONDS * sample_rate)
    out = np.zeros(total, dtype=np.float64)
    audio = np.asarray(audio, dtype=np.float64)[:total]
    out[: len(audio)] = audio * gain
    return np.round(np.clip(out, -1.0, 32767 / 32768) * 32768).astype(np.int16)


def gm_classify(program, synthetic=False):
    """``(family, source, rule)`` of a General MIDI program (``gm_programs``'s table), or None.

    Example
    -------
    >>> gm_classify(40)
    ('string', 'acoustic', 'GM program 40 (Violin)')
    """
    family_source = gm_family_source(program, synthetic=synthetic)
    if family_source is None:
        return None
    rule = f"GM program {program} ({gm_program_name(program)})"
    if synthetic:
        rule += ", source synthetic: the whole bank is synthesized"
    return (*family_source, rule)


def _import_fluidsynth():
    try:
        import fluidsynth
    except ImportError as error:
        raise ImportError(
            "rendering needs FluidSynth: `pip install pyfluidsynth` and the "
            "FluidSynth library (Debian: `apt-get install libfluidsynth3`)"
        ) from error
    return fluidsynth


def check_soundfont(path):
    """Returns the absolute path of an existing SoundFont file.

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"SoundFont not found: {path}")
    return path


class SoundFontSynth(SoundSource):
    """A FluidSynth synthesizer with one SoundFont loaded, rendering offline.

    Reverb and chorus are off; a preset's samples are loaded when it is first
    played. ``name`` is the SoundFont's file name; ``licence`` is what the
    caller says (the catalogue knows the Debian packages'), else None, since a
    SoundFont file does not state its licence in a form read here.

    Arguments
    ---------
    soundfont : str
        Path of a ``.sf2`` or ``.sf3`` file.
    sample_rate : int
        Output sample rate in Hz.
    gain : float
        FluidSynth's master gain.
    synthetic : bool
        Whether every preset is synthesized (an FM SoundFont): NSynth source
        ``synthetic`` for all, whatever their GM program.
    group, licence : str, optional
        Independence group (default: the file's stem) and licence.

    Raises
    ------
    FileNotFoundError
        If ``soundfont`` does not exist.
    ValueError
        If FluidSynth cannot load it.
    ImportError
        If pyfluidsynth or the FluidSynth library is missing.

    Example
    -------
    >>> synth = SoundFontSynth("/usr/share/sounds/sf2/TimGM6mb.sf2")
    >>> synth.presets()[0]
    (0, 0, 'Piano 1')
    >>> synth.render_note(0, 0, pitch=60, velocity=100).shape
    (64000,)
    >>> synth.close()
    """

    def __init__(
        self, soundfont, sample_rate=SAMPLE_RATE, gain=DEFAULT_GAIN, synthetic=False, group=None, licence=None
    ):
        self.soundfont = check_soundfont(soundfont)
        self.name = os.path.basename(self.soundfont)
        self.spec = self.soundfont
        self.group = group or os.path.splitext(self.name)[0]
        self.licence = licence
        self.synthetic = synthetic
        self.recorded = not synthetic
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

    def classify(self, bank, program, preset_name):
        """The NSynth family and source of the preset's GM program (see :func:`gm_classify`)."""
        return gm_classify(program, synthetic=self.synthetic)

    def preset_samples(self):
        """The sample data each preset plays: ``{(bank, program): set of SHA-1 digests}``.

        Read with ``sf2utils`` (digests of each sample's stored data). Two
        SoundFonts that play a byte-identical sample share it. Returns ``{}``
        when the file cannot be parsed so (``.sf3`` files store Ogg-compressed
        samples, which ``sf2utils`` does not read): then only the spectral
        check of :mod:`timbre_lobes.render.independence` applies.
        """
        import hashlib
        import logging

        try:
            from sf2utils.sf2parse import Sf2File
        except ImportError as error:
            raise ImportError("the sample-sharing check needs `pip install sf2utils`") from error
        sf2_logger = logging.getLogger()
        level = sf2_logger.level
        sf2_logger.setLevel(logging.ERROR)  # sf2utils warns about every odd loop point
        try:
            with open(self.soundfont, "rb") as f:
                parsed = Sf2File(f)
                digests = {}
                for sample in parsed.samples:
                    if getattr(sample, "sf2parser", None) is not None:  # the closing EOS record has no data
                        digests[id(sample)] = hashlib.sha1(sample.raw_sample_data).hexdigest()
                samples = {}
                for preset in parsed.presets:
                    if preset.name == "EOP" or preset.bank >= DRUM_BANK:
                        continue
                    found = samples.setdefault((preset.bank, preset.preset), set())
                    for bag in preset.bags:
                        for instrument_bag in bag.instrument.bags if bag.instrument is not None else ():
                            if instrument_bag.sample is not None and id(instrument_bag.sample) in digests:
                                found.add(digests[id(instrument_bag.sample)])
                return samples
        except (IndexError, KeyError, ValueError, AttributeError, TypeError, OSError):
            return {}
        finally:
            sf2_logger.setLevel(level)

    def render_note(self, bank, program, pitch, velocity):
        """Renders one NSynth-like note and resets the synthesizer.

        The result does not depend on what was rendered before, up to the
        +-1 LSB dither FluidSynth adds to 16-bit output.

        Arguments
        ---------
        bank, program : int
            The preset, as listed by ``presets``.
        pitch, velocity : int
            MIDI pitch and velocity (0-127).

        Returns
        -------
        numpy.ndarray
            ``int16`` mono samples, ``NOTE_SECONDS`` long, key held
            ``HOLD_SECONDS``.

        Raises
        ------
        ValueError
            If the SoundFont has no such preset.
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
        self._synth.cc(CHANNEL, BREATH_CC, BREATH_VALUE)
        self._synth.noteon(CHANNEL, pitch, velocity)

    def _reset(self):
        # Notes change no controller, so silencing is all the reset needed; a
        # system reset would also unselect the preset and unload its samples.
        self._synth.all_sounds_off(CHANNEL)
        self._synth.get_samples(BLOCK_SAMPLES)
        if self._synth.get_active_voice_count():
            raise RuntimeError("FluidSynth kept voices playing after all-sounds-off")

    def close(self):
        """Frees the synthesizer and its samples; closing again does nothing."""
        if self._synth is not None:
            self._synth.delete()
            self._synth = None
