"""NSynth's label vocabularies, with NSynth's own integer indices.

Everything that writes or reads NSynth-format metadata (the SoundFont renderer,
``recipes/NSynth/nsynth_prepare.py``, the inference interface) takes the
families, sources and qualities from here, so that an index means the same thing
on the real release and on a rendered corpus.
"""

#: ``instrument_family`` index -> name, as in NSynth's ``examples.json``.
FAMILIES = (
    "bass",
    "brass",
    "flute",
    "guitar",
    "keyboard",
    "mallet",
    "organ",
    "reed",
    "string",
    "synth_lead",
    "vocal",
)

#: ``instrument_source`` index -> name.
SOURCES = ("acoustic", "electronic", "synthetic")

#: Order of the 10 binary ``qualities`` flags.
QUALITIES = (
    "bright",
    "dark",
    "distortion",
    "fast_decay",
    "long_release",
    "multiphonic",
    "nonlinear_env",
    "percussive",
    "reverb",
    "tempo-synced",
)

#: NSynth's sample rate and note length.
SAMPLE_RATE = 16000
NOTE_SECONDS = 4.0

#: The three split folders of the json/wav release.
SPLITS = ("train", "valid", "test")


def family_index(name):
    """Returns NSynth's index of a family name, with a clear error otherwise.

    Example
    -------
    >>> family_index("reed")
    7
    """
    try:
        return FAMILIES.index(name)
    except ValueError:
        raise ValueError(f"unknown instrument family {name!r}; NSynth's families are {FAMILIES}") from None


def source_index(name):
    """Returns NSynth's index of a source name.

    Example
    -------
    >>> source_index("synthetic")
    2
    """
    try:
        return SOURCES.index(name)
    except ValueError:
        raise ValueError(f"unknown instrument source {name!r}; NSynth's sources are {SOURCES}") from None


def note_str(family, source, number, pitch, velocity):
    """NSynth's ``<family>_<source>_<NNN>-<pitch>-<velocity>`` note name.

    Example
    -------
    >>> note_str("bass", "electronic", 25, 22, 50)
    'bass_electronic_025-022-050'
    """
    return f"{instrument_str(family, source, number)}-{pitch:03d}-{velocity:03d}"


def instrument_str(family, source, number):
    """NSynth's ``<family>_<source>_<NNN>`` instrument name.

    Example
    -------
    >>> instrument_str("reed", "acoustic", 7)
    'reed_acoustic_007'
    """
    return f"{family}_{source}_{number:03d}"
