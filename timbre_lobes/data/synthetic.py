"""A tiny synthetic corpus in NSynth's json/wav layout, for tests, benchmarks and trying the recipe.

Every instrument is a harmonic tone with its own random spectral envelope, plus
a family-specific formant, so family and instrument are learnable in seconds of
training. The output is what ``nsynth_prepare`` reads for the real release::

    <root>/nsynth-train/examples.json
    <root>/nsynth-train/audio/<note_str>.wav
    <root>/nsynth-valid/...
    <root>/nsynth-test/...

The notes are 16 kHz mono 16-bit wav files. Only four families (bass, brass,
flute, guitar) and all three sources occur; ``qualities`` is ten zeros. The same
arguments always write the same corpus.
"""

import json
import os

import numpy as np
import soundfile as sf

from timbre_lobes.data.nsynth_labels import FAMILIES, SAMPLE_RATE, SOURCES, SPLITS, instrument_str, note_str

#: Partials at or above this frequency (Hz) are left out, below 16 kHz's Nyquist.
HIGHEST_PARTIAL_HZ = 7800
#: Amplitude of the white noise added to every note, before normalisation.
NOISE_AMPLITUDE = 0.001


def synth_note(pitch, velocity, harmonics, seconds, sample_rate=16000, seed=0):
    """A harmonic tone whose spectral envelope (``harmonics``) is the instrument's timbre.

    Partial ``k`` (``k = 0, 1, ...``) at ``(k + 1) * f0`` has amplitude
    ``harmonics[k]``; partials at or above ``HIGHEST_PARTIAL_HZ`` are dropped. The
    tone has a 10 ms linear attack and an exponential decay whose rate depends on
    ``seed % 3``; a little noise drawn from ``seed`` is added, and the note is
    normalised to a peak of ``0.5 * velocity / 127``.

    Arguments
    ---------
    pitch : int
        MIDI pitch (69 is A4, 440 Hz).
    velocity : int
        MIDI velocity (1-127); sets the peak amplitude.
    harmonics : sequence of float
        Amplitudes of the partials, fundamental first.
    seconds : float
        Duration in seconds.
    sample_rate : int
        Sample rate in Hz.
    seed : int
        Seed of the decay rate and the noise.

    Returns
    -------
    numpy.ndarray
        ``float64`` samples, shape ``[round_down(seconds * sample_rate)]``, in
        [-1, 1].

    Example
    -------
    >>> note = synth_note(60, 127, [1.0, 0.5, 0.25], seconds=0.5)
    >>> note.shape, round(float(abs(note).max()), 3)
    ((8000,), 0.5)
    """
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    tone = sum(
        a * np.sin(2 * np.pi * f0 * (k + 1) * t) for k, a in enumerate(harmonics) if f0 * (k + 1) < HIGHEST_PARTIAL_HZ
    )
    envelope = np.minimum(1.0, t / 0.01) * np.exp(-t * (1 + seed % 3))
    rng = np.random.default_rng(seed)
    signal = tone * envelope + NOISE_AMPLITUDE * rng.standard_normal(len(t))
    return (0.5 * velocity / 127) * signal / (np.abs(signal).max() + 1e-9)


def make_nsynth_corpus(
    root, instruments_per_split=(6, 4, 4), pitches=(48, 55, 60, 67, 72, 79), velocities=(75, 127), seconds=1.0, seed=0
):
    """Writes ``nsynth-{train,valid,test}`` with synthetic instruments; returns the root.

    Instruments are numbered across splits (train first); instrument ``i`` of a
    split has family ``i % 4`` (bass, brass, flute, guitar) and source ``i % 3``.
    Every instrument plays every pitch at every velocity, so each split holds
    ``n_instruments * len(pitches) * len(velocities)`` notes, keyed by
    ``note_str`` in ``examples.json`` with every NSynth field (``note`` counts
    within the split). Existing files of the same names are overwritten.

    Arguments
    ---------
    root : str
        Folder to write into (created if missing).
    instruments_per_split : tuple of int
        Instruments in train, valid and test.
    pitches : sequence of int
        MIDI pitches of every instrument.
    velocities : sequence of int
        MIDI velocities of every pitch.
    seconds : float
        Duration of each note in seconds.
    seed : int
        Seed of the instruments' spectral envelopes.

    Returns
    -------
    str
        ``root``.

    Example
    -------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as root:
    ...     _ = make_nsynth_corpus(root, (2, 1, 1), pitches=(60,), velocities=(100,), seconds=0.1)
    ...     with open(os.path.join(root, "nsynth-train", "examples.json")) as handle:
    ...         examples = json.load(handle)
    ...     sorted(examples), len(os.listdir(os.path.join(root, "nsynth-test", "audio")))
    (['bass_acoustic_000-060-100', 'brass_electronic_001-060-100'], 1)
    """
    rng = np.random.default_rng(seed)
    number = 0
    for split, n_instruments in zip(SPLITS, instruments_per_split):
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
                    sf.write(os.path.join(folder, "audio", nid + ".wav"), audio, SAMPLE_RATE, subtype="PCM_16")
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
                        "sample_rate": SAMPLE_RATE,
                        "qualities": [0] * 10,
                        "qualities_str": [],
                    }
            number += 1
        with open(os.path.join(folder, "examples.json"), "w") as handle:
            json.dump(examples, handle)
    return root
