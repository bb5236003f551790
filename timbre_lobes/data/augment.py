"""Note-level data augmentation that works on single examples (in the data pipeline).

Waveform-level augmentation of whole batches is SpeechBrain's ``Augmenter``,
configured in the YAML; here is only what it lacks.
"""

import collections
import random

import torch
from speechbrain.dataio.dataio import read_audio


def crop_start(total, crop, max_start=None):
    """A random start (in samples) for a ``crop``-sample excerpt of a ``total``-sample signal.

    Drawn uniformly in ``[0, min(total - crop, max_start)]``; ``max_start=None``
    lets the crop start anywhere, so that crops reach the end of the signal
    (a note's release and tail). 0 when the signal is no longer than ``crop``.

    Example
    -------
    >>> crop_start(10, 4, 0)
    0
    >>> all(0 <= crop_start(10, 4) <= 6 for _ in range(50))
    True
    """
    if total <= crop:
        return 0
    last = total - crop
    return random.randint(0, last if max_start is None else min(last, max_start))


def crop_span(crop_max_start, crop_seconds):
    """The span of a note (s from its start) that training crops come from; None: the whole note.

    The system YAMLs' ``eval_seconds``: evaluation embeds this span of each note.

    Example
    -------
    >>> crop_span(1.0, 1.5)
    2.5
    >>> crop_span(None, 1.5) is None
    True
    """
    return None if crop_max_start is None else float(crop_max_start) + float(crop_seconds)


def span_words(eval_seconds):
    """``eval_seconds`` in words, for logs: ``each note's first 2.5 s (eval_seconds)`` or ``whole notes (...)``.

    Example
    -------
    >>> span_words(2.5), span_words(None)
    ("each note's first 2.5 s (eval_seconds)", 'whole notes (eval_seconds)')
    """
    return ("whole notes" if eval_seconds is None else f"each note's first {eval_seconds:g} s") + " (eval_seconds)"


def random_crop(signal, crop, max_start=None):
    """A ``crop``-sample excerpt starting at a random offset (:func:`crop_start`).

    Signals shorter than ``crop`` are returned whole (the batch pads them and
    passes relative lengths).

    Example
    -------
    >>> random_crop(torch.arange(10.0), 4, 0).tolist()
    [0.0, 1.0, 2.0, 3.0]
    >>> len(random_crop(torch.arange(3.0), 4, 2))
    3
    """
    if len(signal) <= crop:
        return signal
    start = crop_start(len(signal), crop, max_start)
    return signal[start : start + crop]


def trim_silence(signal, top_db=40.0, frame=400):
    """Drops leading and trailing frames more than ``top_db`` below the loudest frame.

    Arguments
    ---------
    signal : torch.Tensor
        [samples] waveform.
    top_db : float
        Threshold below the peak frame energy, in dB.
    frame : int
        Frame length in samples.

    Example
    -------
    >>> x = torch.cat([torch.zeros(800), torch.ones(800), torch.zeros(800)])
    >>> len(trim_silence(x))
    800
    """
    n_frames = len(signal) // frame
    if n_frames == 0:
        return signal
    energy = signal[: n_frames * frame].reshape(n_frames, frame).pow(2).mean(dim=1)
    level = 10.0 * torch.log10(energy + 1e-12)
    active = torch.nonzero(level > level.max() - top_db).flatten()
    return signal[int(active[0]) * frame : (int(active[-1]) + 1) * frame]


class NoteStitcher:
    """The paper's stitching augmentation: a note followed by other notes of its instrument.

    Each call trims the silence of the given note and of ``n_notes - 1`` notes of
    the same instrument drawn at random, and concatenates them, giving clips
    longer than one note with several pitches and dynamics of one timbre.

    Arguments
    ---------
    dataset : DynamicItemDataset
        Training set with ``wav`` and ``instrument`` fields.
    n_notes : int
        Notes per stitched clip.
    top_db : float
        Silence threshold for trimming.
    sample_rate : int
        Unused except for documentation of the clip length; kept for symmetry with the YAML.
    """

    def __init__(self, dataset, n_notes, top_db=40.0, sample_rate=16000):
        if n_notes < 2:
            raise ValueError("stitching needs at least 2 notes per clip")
        self.n_notes = n_notes
        self.top_db = top_db
        self.sample_rate = sample_rate
        self.wavs_of = collections.defaultdict(list)
        with dataset.output_keys_as(["wav", "instrument"]):
            for item in dataset:
                self.wavs_of[item["instrument"]].append(item["wav"])

    def __call__(self, wav, instrument):
        """[samples] clip of ``n_notes`` trimmed notes, starting with ``wav``."""
        others = random.choices(self.wavs_of[instrument], k=self.n_notes - 1)
        return torch.cat([trim_silence(read_audio(w), self.top_db) for w in [wav, *others]])
