"""General MIDI programs mapped onto NSynth's instrument families and sources.

A SoundFont preset is named by its General MIDI (GM) program number (0-127);
variant banks (bank 8 "Detuned EP 1", bank 16 "Mandolin", ...) keep the family of
their program. The table below gives each program the NSynth family and source a
listener would give the sound. Sources follow NSynth's definitions: *acoustic*
instruments are recorded acoustic instruments, *electronic* ones are recorded
electric or electronic instruments (electric pianos and guitars, clavinet,
tonewheel organs), *synthetic* ones are synthesized (synth bass, synth strings,
leads and pads).

Choices where GM and NSynth disagree:

* Harpsichord (6) is an acoustic keyboard; electric grand (2), electric pianos
  (4, 5) and clavinet (7) are electronic keyboards.
* Dulcimer (15), a hammered zither, is a *mallet*: it is struck with hammers and
  its decaying envelope is closer to NSynth's mallet notes than to bowed strings.
* Church and reed organs (19, 20) are acoustic organs; drawbar, percussive and
  rock organs (16-18) are electronic. Accordion, harmonica and bandoneon
  (21-23) are free-reed instruments, hence *reed*.
* Orchestral harp (46) and koto (107), plucked zithers, are *string*; timpani
  (47) and kalimba (108) are *mallet*.
* Sitar, banjo and shamisen (104-106), plucked lutes, are *guitar*; fiddle (110)
  is *string*; bagpipe and shanai (109, 111) are *reed*.
* Choir aahs and voice oohs (52, 53) are acoustic *vocal*, synth voice (54) is
  synthetic *vocal*.
* Synth leads and pads (80-95) are all *synth_lead*, NSynth's only synthesizer
  family.

Excluded programs (:func:`gm_family_source` returns ``None``): orchestra hit
(55), synth effects (96-103), percussive (112-119) and sound effects (120-127).
They are one-shot hits, noises and mostly unpitched sounds with no NSynth family.
Drum kits (bank 128) are not GM programs at all and are skipped by the renderer.

A SoundFont that synthesizes every preset (the OPL-3 FM SoundFont) makes every
program *synthetic*: pass ``synthetic=True``.
"""

#: The 128 General MIDI program names, indexed by program number (0-127).
GM_PROGRAM_NAMES = (
    # Piano
    "Acoustic Grand Piano",
    "Bright Acoustic Piano",
    "Electric Grand Piano",
    "Honky-tonk Piano",
    "Electric Piano 1",
    "Electric Piano 2",
    "Harpsichord",
    "Clavinet",
    # Chromatic percussion
    "Celesta",
    "Glockenspiel",
    "Music Box",
    "Vibraphone",
    "Marimba",
    "Xylophone",
    "Tubular Bells",
    "Dulcimer",
    # Organ
    "Drawbar Organ",
    "Percussive Organ",
    "Rock Organ",
    "Church Organ",
    "Reed Organ",
    "Accordion",
    "Harmonica",
    "Tango Accordion",
    # Guitar
    "Acoustic Guitar (nylon)",
    "Acoustic Guitar (steel)",
    "Electric Guitar (jazz)",
    "Electric Guitar (clean)",
    "Electric Guitar (muted)",
    "Overdriven Guitar",
    "Distortion Guitar",
    "Guitar Harmonics",
    # Bass
    "Acoustic Bass",
    "Electric Bass (finger)",
    "Electric Bass (pick)",
    "Fretless Bass",
    "Slap Bass 1",
    "Slap Bass 2",
    "Synth Bass 1",
    "Synth Bass 2",
    # Strings
    "Violin",
    "Viola",
    "Cello",
    "Contrabass",
    "Tremolo Strings",
    "Pizzicato Strings",
    "Orchestral Harp",
    "Timpani",
    # Ensemble
    "String Ensemble 1",
    "String Ensemble 2",
    "Synth Strings 1",
    "Synth Strings 2",
    "Choir Aahs",
    "Voice Oohs",
    "Synth Voice",
    "Orchestra Hit",
    # Brass
    "Trumpet",
    "Trombone",
    "Tuba",
    "Muted Trumpet",
    "French Horn",
    "Brass Section",
    "Synth Brass 1",
    "Synth Brass 2",
    # Reed
    "Soprano Sax",
    "Alto Sax",
    "Tenor Sax",
    "Baritone Sax",
    "Oboe",
    "English Horn",
    "Bassoon",
    "Clarinet",
    # Pipe
    "Piccolo",
    "Flute",
    "Recorder",
    "Pan Flute",
    "Blown Bottle",
    "Shakuhachi",
    "Whistle",
    "Ocarina",
    # Synth lead
    "Lead 1 (square)",
    "Lead 2 (sawtooth)",
    "Lead 3 (calliope)",
    "Lead 4 (chiff)",
    "Lead 5 (charang)",
    "Lead 6 (voice)",
    "Lead 7 (fifths)",
    "Lead 8 (bass + lead)",
    # Synth pad
    "Pad 1 (new age)",
    "Pad 2 (warm)",
    "Pad 3 (polysynth)",
    "Pad 4 (choir)",
    "Pad 5 (bowed)",
    "Pad 6 (metallic)",
    "Pad 7 (halo)",
    "Pad 8 (sweep)",
    # Synth effects
    "FX 1 (rain)",
    "FX 2 (soundtrack)",
    "FX 3 (crystal)",
    "FX 4 (atmosphere)",
    "FX 5 (brightness)",
    "FX 6 (goblins)",
    "FX 7 (echoes)",
    "FX 8 (sci-fi)",
    # Ethnic
    "Sitar",
    "Banjo",
    "Shamisen",
    "Koto",
    "Kalimba",
    "Bagpipe",
    "Fiddle",
    "Shanai",
    # Percussive
    "Tinkle Bell",
    "Agogo",
    "Steel Drums",
    "Woodblock",
    "Taiko Drum",
    "Melodic Tom",
    "Synth Drum",
    "Reverse Cymbal",
    # Sound effects
    "Guitar Fret Noise",
    "Breath Noise",
    "Seashore",
    "Bird Tweet",
    "Telephone Ring",
    "Helicopter",
    "Applause",
    "Gunshot",
)

#: Number of General MIDI programs.
NUM_PROGRAMS = 128

_A, _E, _S = "acoustic", "electronic", "synthetic"

#: Program -> ``(family, source)``, for every program that has a family.
GM_FAMILY_SOURCE = {
    **{p: ("keyboard", _A) for p in (0, 1, 3, 6)},
    **{p: ("keyboard", _E) for p in (2, 4, 5, 7)},
    **{p: ("mallet", _A) for p in range(8, 16)},
    **{p: ("organ", _E) for p in (16, 17, 18)},
    **{p: ("organ", _A) for p in (19, 20)},
    **{p: ("reed", _A) for p in (21, 22, 23)},
    **{p: ("guitar", _A) for p in (24, 25)},
    **{p: ("guitar", _E) for p in range(26, 32)},
    32: ("bass", _A),
    **{p: ("bass", _E) for p in range(33, 38)},
    **{p: ("bass", _S) for p in (38, 39)},
    **{p: ("string", _A) for p in range(40, 47)},
    47: ("mallet", _A),
    **{p: ("string", _A) for p in (48, 49)},
    **{p: ("string", _S) for p in (50, 51)},
    **{p: ("vocal", _A) for p in (52, 53)},
    54: ("vocal", _S),
    **{p: ("brass", _A) for p in range(56, 62)},
    **{p: ("brass", _S) for p in (62, 63)},
    **{p: ("reed", _A) for p in range(64, 72)},
    **{p: ("flute", _A) for p in range(72, 80)},
    **{p: ("synth_lead", _S) for p in range(80, 96)},
    **{p: ("guitar", _A) for p in (104, 105, 106)},
    107: ("string", _A),
    108: ("mallet", _A),
    109: ("reed", _A),
    110: ("string", _A),
    111: ("reed", _A),
}

#: Programs with no NSynth family: effects, percussion and noises.
EXCLUDED_PROGRAMS = frozenset(range(NUM_PROGRAMS)) - frozenset(GM_FAMILY_SOURCE)


def _check_program(program):
    if not isinstance(program, int) or not 0 <= program < NUM_PROGRAMS:
        raise ValueError(f"General MIDI programs are integers 0-{NUM_PROGRAMS - 1}, got {program!r}")


def gm_family_source(program, synthetic=False):
    """Returns the NSynth ``(family, source)`` of a GM program, or ``None``.

    Arguments
    ---------
    program : int
        General MIDI program number, 0-127.
    synthetic : bool
        Whether the preset comes from a SoundFont that synthesizes every sound
        (e.g. the OPL-3 FM SoundFont): the source is then ``"synthetic"``.

    Returns
    -------
    tuple of str, or None
        ``(family, source)`` with names from ``nsynth_labels``, or ``None`` for
        the excluded programs (effects, percussion, noises).

    Example
    -------
    >>> gm_family_source(4)
    ('keyboard', 'electronic')
    >>> gm_family_source(4, synthetic=True)
    ('keyboard', 'synthetic')
    >>> gm_family_source(55) is None
    True
    """
    _check_program(program)
    family_source = GM_FAMILY_SOURCE.get(program)
    if family_source is None or not synthetic:
        return family_source
    return family_source[0], _S


def gm_program_name(program):
    """Returns the General MIDI name of a program.

    Example
    -------
    >>> gm_program_name(73)
    'Flute'
    """
    _check_program(program)
    return GM_PROGRAM_NAMES[program]
