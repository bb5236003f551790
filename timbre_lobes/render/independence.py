"""Are two presets the same instrument? A spectral fingerprint and the corpus's independence check.

Sound banks copy each other: MuseScore_General is built from FluidR3_GM's
samples, Airfont 320 reuses many of TimGM6mb's, and a TiMidity++ program
missing from a patch set falls back to the system's SoundFont. A copy in
another source group would put the same instrument on both sides of a split
(or of a leave-one-source-out test). The check measures it:

* the **fingerprint** of a preset is, for its notes at ``FINGERPRINT_PITCHES``
  (velocity ``FINGERPRINT_VELOCITY``), the level-normalised mean log-mel
  spectrum: dB re its loudest band, floored at ``SPECTRUM_FLOOR_DB``, computed
  with librosa;
* the **distance** of two presets is the RMS difference (dB) of their spectra,
  averaged over the pitches where both sound. Renders of one preset measure
  0 dB; MuseScore_General's copies of FluidR3_GM 0.6-4.2 dB; the same GM
  program in independent banks (FluidR3_GM, GeneralUser GS, TimGM6mb, Airfont
  320, Freepats) 4.3 dB and more, 9 dB typically; different programs of one
  bank 15 dB typically (``docs/corpus.md``). The loudness envelope, tried
  beside the spectrum, blurred the line: a derivative bank that keeps a sample
  but changes its release moves the envelope by up to 12 dB;
* :func:`find_copies` walks the instruments in corpus order and marks as a copy
  every one that lies within ``COPY_THRESHOLD_DB`` of an earlier kept
  instrument, of another bank or of its own (a variant preset); the corpus
  drops those, so no instrument has a near-copy on the other side of a split.
  A SoundFont preset that plays a sample (byte-identical data) of a kept
  instrument of another group is a copy too, whatever the distance: Airfont
  320 plays TimGM6mb's and GeneralUser's samples in 51 and 36 of its presets.
"""

import numpy as np

from timbre_lobes.data.nsynth_labels import SAMPLE_RATE

#: Pitches and velocity of the notes a fingerprint is made of (MIDI).
FINGERPRINT_PITCHES = (48, 60, 72)
FINGERPRINT_VELOCITY = 100
#: Presets closer than this (dB) to a kept preset are copies.
COPY_THRESHOLD_DB = 4.0
#: Mel bands, FFT size and hop of the fingerprint's spectrum (16 kHz audio).
N_MELS, N_FFT, HOP = 64, 1024, 512
SPECTRUM_FLOOR_DB = -80.0
#: A note whose loudest frame is below this (dBFS) does not sound: no fingerprint part.
SOUNDING_DBFS = -70.0


def note_fingerprint(audio, sample_rate=SAMPLE_RATE):
    """The level-normalised mean log-mel spectrum of one note, or None when it is silent.

    Arguments
    ---------
    audio : numpy.ndarray
        ``int16`` or float samples, shape ``[time]``.
    sample_rate : int
        Rate in Hz.

    Returns
    -------
    numpy.ndarray or None
        ``float32``, shape ``[N_MELS]``: the mean mel power spectrum in dB re
        its loudest band, floored at ``SPECTRUM_FLOOR_DB``; None when no frame
        of the note reaches ``SOUNDING_DBFS``.
    """
    import librosa

    audio = np.asarray(audio)
    scale = 1 / 32768 if np.issubdtype(audio.dtype, np.integer) else 1.0
    audio = audio.astype(np.float32) * scale
    rms = librosa.feature.rms(y=audio, frame_length=N_FFT, hop_length=HOP)[0]
    if 20 * np.log10(max(rms.max(), 1e-10)) < SOUNDING_DBFS:
        return None
    mel = librosa.feature.melspectrogram(
        y=audio, sr=sample_rate, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS, power=2.0
    ).mean(axis=1)
    return np.maximum(librosa.power_to_db(mel, ref=np.max, top_db=None), SPECTRUM_FLOOR_DB).astype(np.float32)


def preset_fingerprint(source, preset, pitches=FINGERPRINT_PITCHES, velocity=FINGERPRINT_VELOCITY):
    """The fingerprint of one preset: ``[len(pitches), N_MELS]``, NaN rows where silent.

    Arguments
    ---------
    source : SoundSource
        An open source.
    preset : tuple
        The preset's leading fields, as ``source.presets()`` lists them.
    """
    rows = [note_fingerprint(source.render_note(*preset, pitch, velocity), source.sample_rate) for pitch in pitches]
    return np.stack([r if r is not None else np.full(N_MELS, np.nan, dtype=np.float32) for r in rows])


def distances(fingerprint, others):
    """Distance (dB) from one fingerprint to each of several.

    Arguments
    ---------
    fingerprint : numpy.ndarray
        ``[pitches, N_MELS]``.
    others : numpy.ndarray
        ``[n, pitches, N_MELS]``.

    Returns
    -------
    numpy.ndarray
        ``[n]``: the RMS spectral difference averaged over the pitches where
        both sound; ``inf`` where no pitch sounds in both.

    Example
    -------
    >>> a = np.zeros((3, N_MELS)); b = a + 2.0
    >>> distances(a, np.stack([a, b])).tolist()
    [0.0, 2.0]
    """
    diff = np.asarray(others, dtype=np.float64) - np.asarray(fingerprint, dtype=np.float64)[None]
    per_pitch = np.sqrt(np.mean(diff**2, axis=-1))
    both = ~np.isnan(per_pitch)
    total = np.where(both, per_pitch, 0.0).sum(axis=-1)
    count = both.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.inf)


def find_copies(fingerprints, threshold_db=COPY_THRESHOLD_DB, samples=None, groups=None):
    """Which instruments copy an earlier kept instrument?

    Walks the instruments in corpus order. One is a copy, and is not kept, when
    its fingerprint lies within ``threshold_db`` of an instrument kept before
    it, from any source (another bank's copy, or a variant preset of its own
    bank), or when it plays a sample that a kept instrument of *another* group
    plays (byte-identical sample data; presets of one bank share samples by
    design, and the spectral test judges those).

    Arguments
    ---------
    fingerprints : list of numpy.ndarray
        One ``[pitches, N_MELS]`` fingerprint per instrument, in corpus order.
    threshold_db : float
        Distances below this are copies.
    samples : list of set, optional
        Digests of the sample data each instrument plays (empty when unknown).
    groups : list of str, optional
        Source group of each instrument (needed with ``samples``).

    Returns
    -------
    list of tuple or None
        Per instrument: None when it is kept, else ``(index, distance_db)`` of
        the kept instrument it copies: the nearest one, or for a shared sample
        the first that shares it (its distance, which may exceed the threshold).

    Example
    -------
    >>> a = np.zeros((3, N_MELS)); far = a + 20.0
    >>> find_copies([a, a + 1.0, far])
    [None, (0, 1.0), None]
    >>> find_copies([a, far], samples=[{"s1"}, {"s1"}], groups=["bank1", "bank2"])
    [None, (0, 20.0)]
    """
    if samples is not None and (groups is None or not len(samples) == len(groups) == len(fingerprints)):
        raise ValueError("samples need one entry and one group per fingerprint")
    copies, kept = [], []
    for index, fingerprint in enumerate(fingerprints):
        found = None
        if kept:
            d = distances(fingerprint, np.stack([fingerprints[k] for k in kept]))
            nearest = int(np.argmin(d))
            if d[nearest] < threshold_db:
                found = (kept[nearest], round(float(d[nearest]), 2))
            elif samples is not None and samples[index]:
                sharing = [j for j, k in enumerate(kept) if groups[k] != groups[index] and samples[k] & samples[index]]
                if sharing:
                    found = (kept[sharing[0]], round(float(d[sharing[0]]), 2))
        copies.append(found)
        if found is None:
            kept.append(index)
    return copies
