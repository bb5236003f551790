"""Audio file checks shared by the data-preparation scripts."""

import os
import wave

import soundfile as sf


def audio_problem(path, sample_rate=None, channels=1):
    """Says what is wrong with an audio file, or returns None if it is usable.

    Reads only the header (fast enough for a 300k-note corpus), but catches the
    usual damage: a missing or empty file, an unreadable header, a WAV whose
    data chunk is shorter than its header declares (an interrupted copy), a
    wrong sample rate or channel count, and zero-length audio.

    Arguments
    ---------
    path : str
        Audio file.
    sample_rate : int, optional
        Required sample rate; None accepts any.
    channels : int, optional
        Required channel count; None accepts any.

    Returns
    -------
    str or None
        A short description of the problem.

    Example
    -------
    >>> audio_problem("/nonexistent.wav")
    'missing file'
    """
    if not os.path.isfile(path):
        return "missing file"
    if os.path.getsize(path) == 0:
        return "empty file"
    try:
        info = sf.info(path)
    except Exception as err:  # libsndfile's errors have no common base class
        return f"unreadable audio ({str(err).strip()})"
    if info.frames <= 0:
        return "no audio samples"
    if sample_rate is not None and info.samplerate != sample_rate:
        return f"sample rate {info.samplerate} Hz, expected {sample_rate} Hz"
    if channels is not None and info.channels != channels:
        return f"{info.channels} channels, expected {channels}"
    if info.format == "WAV":
        declared = _declared_wav_frames(path)
        if declared is not None and declared > info.frames:
            return f"truncated: header declares {declared} samples, file holds {info.frames}"
    return None


def _declared_wav_frames(path):
    """Frame count that a PCM WAV header declares, or None if ``wave`` cannot parse it."""
    try:
        with wave.open(path, "rb") as handle:
            return handle.getnframes()
    except (wave.Error, EOFError, OSError):
        return None
