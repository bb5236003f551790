"""Rendering NSynth-format corpora from installed sound sources (SoundFonts via FluidSynth).

Every melodic preset (SoundFont, bank, program) of the given SoundFonts is one
instrument; its notes are rendered offline like NSynth's (16 kHz mono 16-bit,
4 s, the key held 3 s) into NSynth's json/wav layout, in instrument-disjoint
splits stratified by family. The modules, by concern:

* ``sources``: ``SoundSource``, what renders one note of one preset, and its
  FluidSynth implementation ``SoundFontSynth``;
* ``gm_programs``: the NSynth family and source of each General MIDI program;
* ``plan``: the pitch grid, the instruments with their names and splits
  (``pitch_grid``, ``assign_splits``, ``plan_corpus``);
* ``runner``: the resumable, parallel corpus writer (``render_corpus``,
  ``ensure_default_corpus``, ``default_soundfonts``);
* ``cli``: the ``python -m timbre_lobes render`` command.

The public names are re-exported here::

    from timbre_lobes.render import ensure_default_corpus
"""

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
    DEFAULT_SOUNDFONTS,
    DEMO_PITCH_STEP,
    DEMO_VELOCITIES,
    NSYNTH_VELOCITIES,
    SILENCE_DBFS,
    default_soundfonts,
    ensure_default_corpus,
    loudest_frame_dbfs,
    render_corpus,
)
from timbre_lobes.render.sources import DEFAULT_GAIN, HOLD_SECONDS, SoundFontSynth, SoundSource

__all__ = [
    "DEFAULT_FRACTIONS",
    "DEFAULT_GAIN",
    "DEFAULT_SEED",
    "DEFAULT_SOUNDFONTS",
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
    "default_soundfonts",
    "ensure_default_corpus",
    "loudest_frame_dbfs",
    "pitch_grid",
    "plan_corpus",
    "render_corpus",
]
