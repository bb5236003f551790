"""Shared fixtures: a tiny NSynth-format corpus made on the fly, and paths to shared samples."""

import json
import os
import sys

import numpy as np
import pytest
import soundfile as sf

from timbre_lobes.data.nsynth_labels import FAMILIES, SOURCES, instrument_str, note_str

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")
sys.path.insert(0, os.path.join(REPO, "recipes", "NSynth"))


def synth_note(pitch, velocity, harmonics, seconds, sample_rate=16000, seed=0):
    """A harmonic tone whose spectral envelope (``harmonics``) is the instrument's timbre."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    tone = sum(a * np.sin(2 * np.pi * f0 * (k + 1) * t) for k, a in enumerate(harmonics) if f0 * (k + 1) < 7800)
    envelope = np.minimum(1.0, t / 0.01) * np.exp(-t * (1 + seed % 3))
    rng = np.random.default_rng(seed)
    signal = tone * envelope + 0.001 * rng.standard_normal(len(t))
    return (0.5 * velocity / 127) * signal / (np.abs(signal).max() + 1e-9)


def make_nsynth_corpus(
    root, instruments_per_split=(6, 4, 4), pitches=(48, 55, 60, 67, 72, 79), velocities=(75, 127), seconds=1.0, seed=0
):
    """Writes ``nsynth-{train,valid,test}`` with synthetic instruments; returns the root."""
    rng = np.random.default_rng(seed)
    number = 0
    for split, n_instruments in zip(("train", "valid", "test"), instruments_per_split):
        folder = os.path.join(root, f"nsynth-{split}")
        os.makedirs(os.path.join(folder, "audio"), exist_ok=True)
        examples = {}
        for i in range(n_instruments):
            family = i % 4  # bass, brass, flute, guitar
            source = i % 3
            harmonics = rng.uniform(0, 1, 12) ** 2
            harmonics[family * 2] += 2.0  # a family-specific formant
            name = instrument_str(FAMILIES[family], SOURCES[source], number)
            for pitch in pitches:
                for velocity in velocities:
                    nid = note_str(FAMILIES[family], SOURCES[source], number, pitch, velocity)
                    audio = synth_note(pitch, velocity, harmonics, seconds, seed=number)
                    sf.write(os.path.join(folder, "audio", nid + ".wav"), audio, 16000, subtype="PCM_16")
                    examples[nid] = {
                        "note": len(examples),
                        "note_str": nid,
                        "instrument": number,
                        "instrument_str": name,
                        "instrument_family": family,
                        "instrument_family_str": FAMILIES[family],
                        "instrument_source": source,
                        "instrument_source_str": SOURCES[source],
                        "pitch": pitch,
                        "velocity": velocity,
                        "sample_rate": 16000,
                        "qualities": [0] * 10,
                        "qualities_str": [],
                    }
            number += 1
        with open(os.path.join(folder, "examples.json"), "w") as handle:
            json.dump(examples, handle)
    return root


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A 14-instrument, 168-note NSynth-format corpus of 1 s synthetic notes."""
    return make_nsynth_corpus(str(tmp_path_factory.mktemp("nsynth")))


@pytest.fixture(scope="session")
def shared_nsynth():
    """The 400 real NSynth test notes beside the repository."""
    folder = os.path.join(SHARED_DATA, "nsynth-test-dev")
    if not os.path.isdir(folder):
        pytest.fail(f"shared NSynth sample missing: {folder}")
    return folder
