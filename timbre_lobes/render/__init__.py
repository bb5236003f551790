"""Rendering NSynth-format corpora from installed sound sources (SoundFonts via FluidSynth)."""
