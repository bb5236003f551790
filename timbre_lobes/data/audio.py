"""Audio files: checks shared by the data-preparation scripts, and robust loading for inference."""

import math
import os
import wave
from fractions import Fraction

import numpy as np
import soundfile as sf
import torch


def _reason(err):
    """libsndfile's own words for a read error (``LibsndfileError.error_string``), without the repr of the
    file object soundfile puts before them; other errors' message, on one line."""
    reason = getattr(err, "error_string", None) or str(err)
    return " ".join(reason.split()) or type(err).__name__


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
        return f"unreadable audio ({_reason(err)})"
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


# ---------------------------------------------------------------------------
# Loading any user's sound for inference
# ---------------------------------------------------------------------------

#: File name endings that folder scans treat as audio (what libsndfile reads).
AUDIO_EXTENSIONS = (
    ".wav",
    ".flac",
    ".ogg",
    ".oga",
    ".opus",
    ".mp3",
    ".aif",
    ".aiff",
    ".aifc",
    ".au",
    ".caf",
    ".w64",
    ".rf64",
)

#: Sample rates outside this range are taken for a damaged header.
SAMPLE_RATE_RANGE = (1000, 1_000_000)


class AudioError(ValueError):
    """An audio file (or signal) that cannot be used, naming the file and the reason.

    Example
    -------
    >>> str(AudioError("a.wav", "empty file"))
    'a.wav: empty file'
    """

    def __init__(self, path, reason):
        self.path = None if path is None else os.fspath(path)
        self.reason = reason
        super().__init__(reason if self.path is None else f"{self.path}: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason))


def is_audio_name(path):
    """True if the file name ends in one of :data:`AUDIO_EXTENSIONS` (any case).

    Example
    -------
    >>> is_audio_name("take 1.FLAC"), is_audio_name("notes.txt")
    (True, False)
    """
    return os.fspath(path).lower().endswith(AUDIO_EXTENSIONS)


def read_audio_file(path, max_seconds=None, block_frames=65536):
    """Reads an audio file with soundfile and downmixes it to mono.

    Reads block by block, so a damaged header that declares billions of frames
    costs no memory, and at most ``max_seconds`` from the start of the file.

    Arguments
    ---------
    path : str
        Any file libsndfile reads (wav, flac, ogg/vorbis/opus, mp3, aiff, ...).
    max_seconds : float, optional
        Stop reading after this many seconds; None reads the whole file.
    block_frames : int
        Frames read at a time.

    Returns
    -------
    mono : np.ndarray
        [samples] float32, the average of the channels.
    sample_rate : int
        The file's sample rate.
    duration : float
        The whole file's duration in seconds (as its header states it, or as
        far as it could be read).

    Raises
    ------
    AudioError
        Missing, empty, unreadable file, implausible sample rate, no samples,
        NaN or infinite samples.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise AudioError(path, "missing file")
    if os.path.isdir(path):
        raise AudioError(path, "a folder, not an audio file")
    if os.path.getsize(path) == 0:
        raise AudioError(path, "empty file")
    try:
        # Through a Python file object: a name that is not valid UTF-8 (kept by Python as surrogates)
        # opens like any other, where libsndfile's own open would refuse it.
        with open(path, "rb") as raw, sf.SoundFile(raw) as handle:
            sample_rate, declared = int(handle.samplerate), int(handle.frames)
            low, high = SAMPLE_RATE_RANGE
            if not low <= sample_rate <= high:
                raise AudioError(path, f"implausible sample rate {sample_rate} Hz (damaged header?)")
            limit = None if max_seconds is None else int(math.ceil(max_seconds * sample_rate))
            blocks, read = [], 0
            while limit is None or read < limit:
                want = block_frames if limit is None else min(block_frames, limit - read)
                data = handle.read(want, dtype="float32", always_2d=True)
                if len(data) == 0:
                    break
                if not np.isfinite(data).all():
                    raise AudioError(path, "non-finite samples (NaN or infinity)")
                blocks.append(data.mean(axis=1, dtype=np.float64).astype(np.float32))  # no overflow
                read += len(data)
    except AudioError:
        raise
    except Exception as err:  # libsndfile's errors have no common base class
        raise AudioError(path, f"unreadable audio ({_reason(err)})") from err
    if read == 0:
        raise AudioError(path, "no audio samples")
    mono = np.concatenate(blocks)
    frames = declared if 0 < declared < 2**62 and limit is not None else read
    return mono, sample_rate, max(frames, read) / sample_rate


def resample(signal, orig_rate, new_rate):
    """Resamples a [samples] tensor with torchaudio's windowed-sinc resampler.

    The rate ratio is first reduced to a fraction with a denominator of at most
    1000 (exact for every usual rate; within a few parts per million for odd
    ones such as 44101 Hz), so that the resampling kernel stays small.

    Example
    -------
    >>> resample(torch.zeros(44100), 44100, 16000).shape
    torch.Size([16000])
    """
    if orig_rate == new_rate:
        return signal
    import torchaudio  # slow to import; only resampling needs it

    ratio = Fraction(int(new_rate), int(orig_rate)).limit_denominator(1000)
    out = torchaudio.functional.resample(signal.unsqueeze(0), orig_freq=ratio.denominator, new_freq=ratio.numerator)[0]
    expected = int(math.ceil(len(signal) * new_rate / orig_rate))
    return out[:expected]


def prepare_audio(
    signal,
    sample_rate,
    target_rate=16000,
    max_seconds=4.0,
    offset_seconds=0.0,
    trim_db=60.0,
    min_seconds=1.0,
    silence_db=-80.0,
    preroll_seconds=0.005,
    path=None,
):
    """Turns a decoded signal into a model input: mono, trimmed, cropped, resampled, padded.

    Steps: downmix ([samples, channels] is averaged over channels); reject empty,
    non-finite and all-silent signals (peak below ``silence_db`` dBFS); scale
    down signals whose peak exceeds full scale (1.0) to a peak of 1.0; drop the
    leading silence (everything before the first sample within ``trim_db`` of
    the peak, minus ``preroll_seconds``); skip ``offset_seconds``; keep at most
    ``max_seconds``; resample to ``target_rate``; pad with silence to
    ``min_seconds``.

    Arguments
    ---------
    signal : array-like or torch.Tensor
        [samples] or [samples, channels].
    sample_rate : int
        Rate of ``signal`` in Hz.
    target_rate : int
        The model's rate in Hz.
    max_seconds : float or None
        Length of the excerpt kept; None keeps everything.
    offset_seconds : float
        Start of the excerpt after the trimmed silence.
    trim_db : float or None
        Leading-silence threshold below the peak, in dB; None keeps the silence.
    min_seconds : float
        Shorter signals are padded with silence to this length.
    silence_db : float
        A signal whose peak is below this level (dBFS) counts as silent.
    preroll_seconds : float
        Kept before the first loud sample, so the attack stays whole.
    path : str, optional
        Named in errors.

    Returns
    -------
    torch.Tensor
        [samples] float32 at ``target_rate``.

    Raises
    ------
    AudioError
        Empty, non-finite or silent signal, or nothing left after the offset.

    Example
    -------
    One second of silence, then one second of tone at 8 kHz: the silence goes
    (but for the 5 ms pre-roll), the tone is resampled to 16 kHz.

    >>> tone = np.cos(np.arange(8000) / 5.0)
    >>> prepare_audio(np.concatenate([np.zeros(8000), tone]), 8000, 16000, min_seconds=0).shape
    torch.Size([16080])
    """
    low, high = SAMPLE_RATE_RANGE
    if not low <= int(sample_rate) <= high:
        raise AudioError(path, f"implausible sample rate {sample_rate} Hz")
    x = torch.as_tensor(np.asarray(signal, dtype=np.float32) if not torch.is_tensor(signal) else signal)
    x = x.detach().float().cpu()
    if x.ndim == 2:
        x = x.double().mean(dim=1).float()
    elif x.ndim != 1:
        raise AudioError(path, f"expected [samples] or [samples, channels], got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise AudioError(path, "no audio samples")
    if not torch.isfinite(x).all():
        raise AudioError(path, "non-finite samples (NaN or infinity)")
    peak = float(x.abs().max())
    if peak <= 10.0 ** (silence_db / 20.0):
        level = "-inf" if peak == 0 else f"{20 * math.log10(peak):.0f}"
        raise AudioError(path, f"silent (peak {level} dBFS)")
    if peak > 1.0:
        x, peak = x / peak, 1.0
    if trim_db is not None:
        loud = torch.nonzero(x.abs() >= peak * 10.0 ** (-trim_db / 20.0))
        start = max(0, int(loud[0]) - int(preroll_seconds * sample_rate))
        x = x[start:]
    if offset_seconds:
        x = x[int(round(offset_seconds * sample_rate)) :]
        if x.numel() == 0:
            raise AudioError(path, f"nothing left after the {offset_seconds} s offset")
    if max_seconds is not None:
        x = x[: int(math.ceil(max_seconds * sample_rate))]
    x = resample(x, int(sample_rate), int(target_rate))
    if max_seconds is not None:
        x = x[: int(round(max_seconds * target_rate))]
    shortfall = int(round(min_seconds * target_rate)) - x.numel()
    if shortfall > 0:
        x = torch.nn.functional.pad(x, (0, shortfall))
    return x.contiguous()


def load_audio(
    path,
    sample_rate=16000,
    max_seconds=4.0,
    offset_seconds=0.0,
    trim_db=60.0,
    min_seconds=1.0,
    lead_seconds=60.0,
):
    """Loads any audio file as a model input: see :func:`prepare_audio` for the steps.

    Arguments
    ---------
    path : str
        Audio file (anything soundfile reads: wav, flac, ogg, mp3, aiff, ...).
    sample_rate : int
        Rate of the returned signal (the model's).
    max_seconds : float or None
        Excerpt length; None keeps the whole file.
    offset_seconds : float
        Where the excerpt starts, after the leading silence.
    trim_db : float or None
        Leading-silence threshold below the peak, in dB; None keeps the silence.
    min_seconds : float
        Shorter sounds are padded with silence to this length.
    lead_seconds : float
        With ``max_seconds``, only the first ``lead_seconds + offset_seconds +
        max_seconds`` of the file are read: a sound starting later counts as silent.

    Returns
    -------
    torch.Tensor
        [samples] float32 mono at ``sample_rate``.

    Raises
    ------
    AudioError
        The file cannot be used; the message names it and says why.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "stereo.wav")
    >>> sf.write(path, np.random.uniform(-0.5, 0.5, (8000, 2)), 8000)
    >>> load_audio(path, 16000, trim_db=None).shape
    torch.Size([16000])
    """
    read_seconds = None
    if max_seconds is not None:
        read_seconds = lead_seconds + offset_seconds + max_seconds
    mono, rate, _ = read_audio_file(path, max_seconds=read_seconds)
    return prepare_audio(
        mono,
        rate,
        sample_rate,
        max_seconds=max_seconds,
        offset_seconds=offset_seconds,
        trim_db=trim_db,
        min_seconds=min_seconds,
        path=path,
    )


def audio_windows(signal, window, hop, max_windows=None):
    """Cuts a [samples] signal into [n, window] overlapping windows covering it.

    A signal no longer than ``window`` gives one window of its own length. The
    last window ends at the signal's end. With ``max_windows``, that many
    evenly spread windows are kept.

    Example
    -------
    >>> audio_windows(torch.arange(10.0), window=4, hop=3).tolist()
    [[0.0, 1.0, 2.0, 3.0], [3.0, 4.0, 5.0, 6.0], [6.0, 7.0, 8.0, 9.0]]
    >>> audio_windows(torch.arange(3.0), window=4, hop=3).shape
    torch.Size([1, 3])
    """
    if window < 1 or hop < 1:
        raise ValueError(f"window and hop must be positive, got {window} and {hop}")
    n = signal.shape[0]
    if n <= window:
        return signal.unsqueeze(0)
    starts = list(range(0, n - window + 1, hop))
    if starts[-1] + window < n:
        starts.append(n - window)
    if max_windows is not None and len(starts) > max_windows:
        picks = np.linspace(0, len(starts) - 1, max_windows).round().astype(int)
        starts = [starts[i] for i in picks]
    return torch.stack([signal[s : s + window] for s in starts])
