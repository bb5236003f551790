"""Rendering NSynth-format corpora from installed sound sources.

Every melodic preset of the given sound sources (SoundFonts via FluidSynth,
Gravis patches via TiMidity++, STK physical models, DX7 voices via Dexed) is
one instrument, unless it is a near-copy of another; its notes are rendered
offline like NSynth's (16 kHz mono 16-bit, 4 s, the key held 3 s) into NSynth's
json/wav layout, in instrument-disjoint splits stratified by family. The
modules, by concern:

* ``sources``: ``SoundSource``, what renders one note of one preset, and its
  FluidSynth implementation ``SoundFontSynth``;
* ``synths``: the other synthesizers (``TimiditySynth``, ``StkSynth``, ``Dx7Synth``);
* ``catalog``: the installable sources by name, with package, licence and
  group (``CATALOG``, ``DEFAULT_SOURCES``, ``open_source``);
* ``independence``: spectral fingerprints and the copy check;
* ``gm_programs``: the NSynth family and source of each General MIDI program;
* ``plan``: the pitch grid, the instruments with their names and splits
  (``pitch_grid``, ``assign_splits``, ``plan_corpus``);
* ``runner``: the resumable, parallel corpus writer (``render_corpus``,
  ``ensure_default_corpus``, ``default_sources``);
* ``cli``: the ``python -m timbre_lobes render`` command.

The public names are re-exported here::

    from timbre_lobes.render import ensure_default_corpus
"""

from timbre_lobes.render.catalog import CATALOG, DEFAULT_SOURCES, open_source
from timbre_lobes.render.plan import (
    DEFAULT_FRACTIONS,
    DEFAULT_SEED,
    HIGHEST_PITCH,
    LOWEST_PITCH,
    SYNTHETIC_SOUNDFONTS,
    assign_splits,
    pitch_grid,
    plan_corpus,
)
from timbre_lobes.render.runner import (
    DEMO_PITCH_STEP,
    DEMO_VELOCITIES,
    NSYNTH_VELOCITIES,
    SILENCE_DBFS,
    default_sources,
    ensure_default_corpus,
    loudest_frame_dbfs,
    render_corpus,
)
from timbre_lobes.render.sources import DEFAULT_GAIN, HOLD_SECONDS, SoundFontSynth, SoundSource

__all__ = [
    "DEFAULT_FRACTIONS",
    "DEFAULT_GAIN",
    "DEFAULT_SEED",
    "CATALOG",
    "DEFAULT_SOURCES",
    "DEMO_PITCH_STEP",
    "DEMO_VELOCITIES",
    "HIGHEST_PITCH",
    "HOLD_SECONDS",
    "LOWEST_PITCH",
    "NSYNTH_VELOCITIES",
    "SILENCE_DBFS",
    "SYNTHETIC_SOUNDFONTS",
    "SoundFontSynth",
    "SoundSource",
    "assign_splits",
    "default_sources",
    "ensure_default_corpus",
    "loudest_frame_dbfs",
    "open_source",
    "pitch_grid",
    "plan_corpus",
    "render_corpus",
]
