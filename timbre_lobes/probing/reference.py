"""Reference features with no training: statistics of plain spectral features of a note.

The probes run on these beside the learnt embeddings, to answer what an
embedding keeps or removes compared with plain spectral statistics:

* :func:`log_mel_statistics`: mean and standard deviation over time of each
  log-mel band (``2 * n_mels`` numbers);
* :func:`mfcc_statistics`: mean and standard deviation over time of each MFCC
  (``2 * n_mfcc`` numbers).

Both use torchaudio's transforms on the whole note (no trim, no crop, as the
extraction step embeds it). :func:`reference_features` computes one set for
many files, cached in a folder: a second call with the same files and settings
reads the matrix back.
"""

import functools
import hashlib
import json
import os

import numpy as np

from timbre_lobes.atomic import atomic_open, write_json

#: Bumped whenever the features' definition changes, so older caches are redone.
REFERENCE_VERSION = 1
#: Floor added to the mel energies before the logarithm.
LOG_FLOOR = 1e-6


def _mel_kwargs(sample_rate, n_mels, win_ms, hop_ms):
    n_fft = int(round(sample_rate * win_ms / 1000))
    return {
        "n_fft": n_fft,
        "win_length": n_fft,
        "hop_length": int(round(sample_rate * hop_ms / 1000)),
        "n_mels": n_mels,
        "f_min": 0.0,
        "f_max": sample_rate / 2,
    }


@functools.lru_cache(maxsize=8)
def _mel_transform(sample_rate, n_mels, win_ms, hop_ms):
    import torchaudio

    return torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate, **_mel_kwargs(sample_rate, n_mels, win_ms, hop_ms)
    )


@functools.lru_cache(maxsize=8)
def _mfcc_transform(sample_rate, n_mfcc, n_mels, win_ms, hop_ms):
    import torchaudio

    return torchaudio.transforms.MFCC(
        sample_rate=sample_rate,
        n_mfcc=n_mfcc,
        log_mels=True,
        melkwargs=_mel_kwargs(sample_rate, n_mels, win_ms, hop_ms),
    )


def _mean_std(frames):
    """``[dims, time]`` -> ``[2 * dims]``: the means, then the standard deviations (``ddof=0``)."""
    return np.concatenate([frames.mean(axis=1), frames.std(axis=1)]).astype(np.float32)


def _as_tensor(signal):
    import torch

    signal = torch.as_tensor(np.asarray(signal, dtype=np.float32))
    if signal.ndim != 1 or signal.numel() == 0:
        raise ValueError(f"expected a non-empty mono signal [time], got shape {tuple(signal.shape)}")
    return signal


def log_mel_statistics(signal, sample_rate=16000, n_mels=64, win_ms=25, hop_ms=10):
    """Mean and standard deviation over time of each log-mel band of one note.

    Arguments
    ---------
    signal : array-like
        Mono samples ``[time]``, in [-1, 1].
    sample_rate : int
        Sample rate in Hz.
    n_mels : int
        Mel bands between 0 Hz and the Nyquist frequency.
    win_ms, hop_ms : float
        Window and hop of the short-time Fourier transform, in milliseconds.

    Returns
    -------
    numpy.ndarray
        ``[2 * n_mels]`` float32: the bands' means of ``log(energy + 1e-6)``, then their standard deviations.

    Raises
    ------
    ValueError
        The signal is not a non-empty 1-D array.

    Example
    -------
    >>> t = np.arange(16000) / 16000
    >>> features = log_mel_statistics(0.5 * np.sin(2 * np.pi * 440 * t), n_mels=32)
    >>> features.shape, int(features[:32].argmax())  # 440 Hz is in the 6th of 32 mel bands up to 8 kHz
    ((64,), 5)
    """
    mel = _mel_transform(sample_rate, n_mels, win_ms, hop_ms)(_as_tensor(signal))
    return _mean_std(np.log(mel.numpy() + LOG_FLOOR))


def mfcc_statistics(signal, sample_rate=16000, n_mfcc=20, n_mels=64, win_ms=25, hop_ms=10):
    """Mean and standard deviation over time of each MFCC of one note.

    Arguments
    ---------
    signal : array-like
        Mono samples ``[time]``, in [-1, 1].
    sample_rate : int
        Sample rate in Hz.
    n_mfcc : int
        Cepstral coefficients kept (the first is the log energy's).
    n_mels : int
        Mel bands the cepstrum is taken of.
    win_ms, hop_ms : float
        Window and hop, in milliseconds.

    Returns
    -------
    numpy.ndarray
        ``[2 * n_mfcc]`` float32: the coefficients' means, then their standard deviations.

    Raises
    ------
    ValueError
        The signal is not a non-empty 1-D array.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> mfcc_statistics(0.1 * rng.standard_normal(8000), n_mfcc=13).shape
    (26,)
    """
    mfcc = _mfcc_transform(sample_rate, n_mfcc, n_mels, win_ms, hop_ms)(_as_tensor(signal))
    return _mean_std(mfcc.numpy())


def describe(function):
    """A JSON-able description of a feature function (a function or a ``functools.partial``).

    Example
    -------
    >>> describe(functools.partial(mfcc_statistics, n_mfcc=13))
    {'function': 'timbre_lobes.probing.reference.mfcc_statistics', 'arguments': {'n_mfcc': 13}}
    """
    base = function.func if isinstance(function, functools.partial) else function
    arguments = dict(function.keywords) if isinstance(function, functools.partial) else {}
    return {"function": f"{base.__module__}.{base.__qualname__}", "arguments": arguments}


def reference_features(paths, function, cache_folder=None, sample_rate=16000):
    """One reference feature set for many audio files, cached in ``cache_folder``.

    Arguments
    ---------
    paths : list of str
        Audio files (any format soundfile reads), all at ``sample_rate``.
    function : callable
        ``function(signal [time], sample_rate=...) -> [dim]``, e.g. :func:`log_mel_statistics`
        or a ``functools.partial`` of it (``!name:`` in a YAML).
    cache_folder : str, optional
        Where ``features.npy`` and ``features.json`` are kept; reused when the files
        (paths, sizes, modification times) and the function's settings are the same.
    sample_rate : int
        Required sample rate in Hz.

    Returns
    -------
    numpy.ndarray
        ``[len(paths), dim]`` float32, row i = ``paths[i]``.

    Raises
    ------
    ValueError
        A file is not at ``sample_rate``.
    """
    import soundfile as sf

    settings = {"version": REFERENCE_VERSION, "sample_rate": sample_rate, **describe(function)}
    digest = hashlib.sha256()
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{os.path.abspath(path)}\t{stat.st_size}\t{int(stat.st_mtime)}\n".encode())
    settings["files"] = digest.hexdigest()
    settings["n_files"] = len(paths)
    if cache_folder is not None:
        cached = _read_cache(cache_folder, settings)
        if cached is not None:
            return cached
    rows = []
    for path in paths:
        signal, rate = sf.read(path, dtype="float32", always_2d=True)
        if rate != sample_rate:
            raise ValueError(f"{path}: sample rate {rate} Hz, expected {sample_rate} Hz")
        rows.append(function(signal.mean(axis=1), sample_rate=sample_rate))
    matrix = np.stack(rows).astype(np.float32)
    if cache_folder is not None:
        os.makedirs(cache_folder, exist_ok=True)
        info = os.path.join(cache_folder, "features.json")
        if os.path.exists(info):
            os.remove(info)
        with atomic_open(os.path.join(cache_folder, "features.npy"), "wb") as handle:
            np.save(handle, matrix)
        write_json(info, settings)
    return matrix


def _read_cache(folder, settings):
    try:
        with open(os.path.join(folder, "features.json")) as handle:
            if json.load(handle) != json.loads(json.dumps(settings)):
                return None
        matrix = np.load(os.path.join(folder, "features.npy"))
    except (OSError, ValueError):
        return None
    return matrix if len(matrix) == settings["n_files"] else None
