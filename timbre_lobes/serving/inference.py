"""Using an exported model on any sound: SpeechBrain's inference interface for timbre embeddings.

    from timbre_lobes.serving.inference import TimbreEncoder
    model = TimbreEncoder.from_hparams(source="results/demo/model")
    embeddings = model.embed_files(["a.wav", "b.mp3"])          # np.ndarray [2, emb]
    score, same = model.verify_files("a.wav", "b.mp3")           # cosine, score >= threshold
    families, probs = model.classify_family_files(["a.wav"])     # ["guitar"], [1, n_families]
    model.closest_instrument(["a.wav"], top_k=3)                 # nearest training instruments
    score, present = model.detect_files("mix.wav", ["n1.wav", "n2.wav"])  # enrolled instrument in a mixture?

The folder is what :func:`timbre_lobes.serving.export.export_model` writes at the end of
training. Files are read with :func:`timbre_lobes.data.audio.read_audio_file` (any
rate, any channel count, whatever soundfile reads) and prepared as the model's
``hyperparams.yaml`` says (excerpt or averaged windows, leading silence
trimmed, short sounds padded); unusable files raise
:class:`timbre_lobes.data.audio.AudioError` naming the file.
"""

import collections
import os

import numpy as np
import torch
from speechbrain.inference.classifiers import EncoderClassifier

from timbre_lobes.data.audio import AudioError, audio_windows, prepare_audio, read_audio_file
from timbre_lobes.lobes.embed import embed_unpadded
from timbre_lobes.lobes.heads import score_rows

#: One file's outcome in :meth:`TimbreEncoder.iter_embed_files`.
FileEmbedding = collections.namedtuple("FileEmbedding", ["path", "embedding", "duration", "error"])

LONG_AUDIO = ("excerpt", "average")

#: Files an export must hold besides its checkpoints.
REQUIRED_FILES = ("hyperparams.yaml", "instrument_encoder.txt", "family_encoder.txt")


class TimbreEncoder(EncoderClassifier):
    """Timbre embeddings, verification, family and closest-instrument prediction from an export.

    Built on SpeechBrain's ``EncoderClassifier``: ``from_hparams`` loads the
    exported ``hyperparams.yaml`` and its ``pretrainer`` loads the checkpoints;
    ``encode_batch`` runs front end -> global normalisation -> encoder.

    The audio settings (``max_seconds``, ``min_seconds``, ``trim_db``,
    ``long_audio``, ``window_hop_seconds``, ``max_windows``) come from the YAML
    and are plain attributes, so they can be changed after loading (or with
    ``overrides`` in ``from_hparams``).

    Arguments
    ---------
    See ``speechbrain.inference.interfaces.Pretrained``.

    Example
    -------
    >>> model = TimbreEncoder.from_hparams(source="results/demo/model")  # doctest: +SKIP
    >>> model.encode_batch(torch.rand(2, 16000)).shape  # doctest: +SKIP
    torch.Size([2, 1, 512])
    >>> model.verify_files("a.wav", "b.flac")  # doctest: +SKIP
    (0.83, True)
    """

    MODULES_NEEDED = ["compute_features", "mean_var_norm", "embedding_model"]
    HPARAMS_NEEDED = ["sample_rate", "verification_threshold", "instrument_encoder", "family_encoder"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        missing = [m for m in self.MODULES_NEEDED if m not in self.mods]
        if missing:
            raise ValueError(f"the model's hyperparams.yaml defines no {', '.join(missing)} module")
        hp = self.hparams
        self.sample_rate = int(hp.sample_rate)
        self.threshold = float(hp.verification_threshold)
        self.family_scale = float(getattr(hp, "family_scale", 30.0))
        self.max_seconds = getattr(hp, "max_seconds", 4.0)
        self.min_seconds = getattr(hp, "min_seconds", 1.0)
        self.trim_db = getattr(hp, "trim_db", 60.0)
        self.long_audio = getattr(hp, "long_audio", "excerpt")
        self.window_hop_seconds = getattr(hp, "window_hop_seconds", 2.0)
        self.max_windows = getattr(hp, "max_windows", 30)
        #: ``long_audio: average`` reads at most this much of a file (memory: 4 bytes a sample).
        self.max_read_seconds = getattr(hp, "max_read_seconds", 600.0)
        #: The span of a note (s from its start) the recipes' evaluation embeds; None: whole notes (older exports).
        self.eval_seconds = getattr(hp, "eval_seconds", None)
        #: Mixture-calibrated threshold of :meth:`detect_files`, where the export has one (else None).
        detection = getattr(hp, "detection_threshold", None)
        self.detection_threshold = None if detection is None else float(detection)
        #: ``softmax`` (one family per sound: the single-note heads) or ``sigmoid`` (presence, trained on mixtures).
        self.family_output = str(getattr(hp, "family_output", "softmax"))
        #: Windows of :meth:`detect_files` in s (0: the whole clip alone), the export's where it has one.
        self.detection_window_seconds = float(getattr(hp, "detection_window_seconds", 1.5) or 0.0)
        self.model_id = str(getattr(hp, "model_id", ""))
        #: Slot embeddings per sound (a model trained with a ``slot_head`` on mixtures; 0: none).
        self.n_slots = int(self.mods["slot_head"].n_slots) if "slot_head" in self.mods else 0
        #: Rows :meth:`mixture_embeddings` gives per view of a sound: its embedding, then its slots.
        self.rows_per_view = 1 + self.n_slots
        self.family_labels = [hp.family_encoder.ind2lab[i] for i in range(len(hp.family_encoder))]
        self.instrument_labels = [hp.instrument_encoder.ind2lab[i] for i in range(len(hp.instrument_encoder))]

    @classmethod
    def from_hparams(cls, source, hparams_file="hyperparams.yaml", savedir=None, overrides=None, **kwargs):
        """Loads an exported model folder (offline; nothing is downloaded).

        Arguments
        ---------
        source : str
            The export folder.
        hparams_file : str
            Its YAML file.
        savedir : str, optional
            Where SpeechBrain may put links to the files; None (or the folder
            itself) reads them in place and writes nothing.
        overrides : dict, optional
            YAML overrides, e.g. ``{"long_audio": "average"}``.
        **kwargs
            Passed on, e.g. ``run_opts={"device": "cpu"}``.

        Raises
        ------
        FileNotFoundError
            The folder or one of its files is missing (the message names it).
        """
        folder = check_model_folder(source, hparams_file)
        if savedir is not None and os.path.abspath(os.fspath(savedir)) == folder:
            savedir = None
        overrides = {"pretrained_path": folder, **(overrides or {})}
        return super().from_hparams(
            source=folder, hparams_file=hparams_file, savedir=savedir, overrides=overrides, **kwargs
        )

    # ------------------------------------------------------------------ audio

    def load_audio(self, path, savedir=None):
        """One file as the model's input: a [samples] tensor (the excerpt, see the class doc).

        Replaces SpeechBrain's ``load_audio``, so its ``classify_file`` use it too.
        """
        mono, rate, _ = read_audio_file(path, max_seconds=self._read_seconds())
        return prepare_audio(
            mono,
            rate,
            self.sample_rate,
            max_seconds=self.max_seconds,
            trim_db=self.trim_db,
            min_seconds=self.min_seconds,
            path=path,
        ).to(self.device)

    def _read_seconds(self):
        """How much of a file to read: the excerpt after up to 60 s of silence, or (average) all of it."""
        if self.long_audio == "average" or self.max_seconds is None:
            return self.max_read_seconds
        return 60.0 + self.max_seconds

    def load_windows(self, path):
        """One file as [n, samples] model inputs, with its duration in seconds.

        ``long_audio: excerpt`` gives one window (the first ``max_seconds``);
        ``average`` gives ``max_seconds`` windows every ``window_hop_seconds``
        (at most ``max_windows``, spread evenly over the first
        ``max_read_seconds`` of the file).
        """
        if self.long_audio not in LONG_AUDIO:
            raise ValueError(f"long_audio must be one of {LONG_AUDIO}, got {self.long_audio!r}")
        mono, rate, duration = read_audio_file(path, max_seconds=self._read_seconds())
        if self.long_audio == "excerpt" or self.max_seconds is None:
            signal = prepare_audio(
                mono,
                rate,
                self.sample_rate,
                max_seconds=self.max_seconds,
                trim_db=self.trim_db,
                min_seconds=self.min_seconds,
                path=path,
            )
            return [signal], duration
        signal = self._prepare_whole(mono, rate, path)
        window = int(round(self.max_seconds * self.sample_rate))
        hop = max(1, int(round(self.window_hop_seconds * self.sample_rate)))
        return list(audio_windows(signal, window, hop, self.max_windows)), duration

    # ------------------------------------------------------------- embeddings

    def encode_batch(self, wavs, wav_lens=None, sets=False):
        """Embeds a batch of waveforms at the model's sample rate.

        A sound's embedding never depends on the other sounds of the batch: rows
        are embedded at their own length (``wav_lens``), never with the zero
        padding of a longer neighbour; rows of equal length share one forward pass.

        Arguments
        ---------
        wavs : torch.Tensor
            [batch, samples] (or [samples], or [batch, samples, channels], downmixed).
        wav_lens : torch.Tensor, optional
            [batch] lengths relative to the longest; default all 1.
        sets : bool
            Also the slot embeddings (a model with a ``slot_head``; ValueError otherwise).

        Returns
        -------
        torch.Tensor
            [batch, 1, emb] embeddings; with ``sets`` [batch, 1 + n_slots, emb] (row 0 the same).
        """
        if wavs.ndim == 1:
            wavs = wavs.unsqueeze(0)
        if wavs.ndim == 3:
            wavs = wavs.mean(dim=-1)
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0])
        with torch.no_grad():
            return embed_unpadded(self.mods, wavs.to(self.device).float(), wav_lens, sets=sets)

    def embed_signals(self, signals, batch_size=16, sets=False):
        """Embeds [samples] tensors of any lengths: [n, emb] tensor (each as if embedded alone).

        Signals are batched by equal length (at most ``batch_size`` a pass); none is padded.
        With ``sets``: [n, 1 + n_slots, emb] (see :meth:`encode_batch`).
        """
        groups = collections.defaultdict(list)
        for i, signal in enumerate(signals):
            groups[signal.shape[0]].append(i)
        out = [None] * len(signals)
        for indices in groups.values():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                emb = self.encode_batch(torch.stack([signals[i].cpu() for i in chunk]), sets=sets).cpu()
                for row, i in enumerate(chunk):
                    out[i] = emb[row] if sets else emb[row, 0]
        if out:
            return torch.stack(out)
        return torch.zeros((0, self.rows_per_view, self._emb_dim()) if sets else (0, self._emb_dim()))

    def _emb_dim(self):
        """Embedding size, found once by embedding a second of noise (works for any encoder)."""
        if getattr(self, "_emb_dim_cache", None) is None:
            probe = 0.1 * torch.randn(1, self.sample_rate, generator=torch.Generator().manual_seed(0))
            self._emb_dim_cache = int(self.encode_batch(probe).shape[-1])
        return self._emb_dim_cache

    def iter_embed_files(self, paths, batch_size=16):
        """Embeds files one batch at a time, yielding each file's outcome in input order.

        Yields
        ------
        FileEmbedding
            ``(path, embedding [emb] np.ndarray or None, duration in s or None,
            error: AudioError or None)``; a file cut into windows gets the mean
            of its windows' embeddings.
        """
        pending = []
        windows_pending = 0
        for path in paths:
            try:
                windows, duration = self.load_windows(path)
            except AudioError as err:
                pending.append((path, None, None, err))
                continue
            pending.append((path, windows, duration, None))
            windows_pending += len(windows)
            if windows_pending >= batch_size:
                yield from self._flush(pending, batch_size)
                pending, windows_pending = [], 0
        yield from self._flush(pending, batch_size)

    def _flush(self, pending, batch_size):
        signals = [w for _, windows, _, _ in pending if windows for w in windows]
        embeddings = self.embed_signals(signals, batch_size) if signals else None
        row = 0
        for path, windows, duration, error in pending:
            if error is not None:
                yield FileEmbedding(path, None, None, error)
                continue
            emb = embeddings[row : row + len(windows)].mean(dim=0)
            row += len(windows)
            if not torch.isfinite(emb).all():
                yield FileEmbedding(path, None, None, AudioError(path, "the model gave a non-finite embedding"))
                continue
            yield FileEmbedding(path, emb.numpy(), duration, None)

    def embed_files(self, paths, batch_size=16):
        """Embeddings of audio files: np.ndarray [n, emb].

        Raises
        ------
        AudioError
            At the first unusable file (use :meth:`iter_embed_files` to skip them).
        """
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        rows = []
        for result in self.iter_embed_files(paths, batch_size):
            if result.error is not None:
                raise result.error
            rows.append(result.embedding)
        return np.stack(rows) if rows else np.zeros((0, self._emb_dim()), dtype=np.float32)

    # ----------------------------------------------------------- verification

    @staticmethod
    def similarity(a, b):
        """Cosine similarity of embeddings, row by row: [n, emb] x [n, emb] -> [n] (or scalars)."""
        a = torch.nn.functional.normalize(torch.as_tensor(np.asarray(a)).float(), dim=-1)
        b = torch.nn.functional.normalize(torch.as_tensor(np.asarray(b)).float(), dim=-1)
        return (a * b).sum(dim=-1).numpy()

    def verify_batch(self, wavs1, wavs2, wav1_lens=None, wav2_lens=None, threshold=None):
        """SpeechBrain-style pairwise verification: (scores [batch], decisions [batch]) tensors."""
        threshold = self.threshold if threshold is None else threshold
        e1 = self.encode_batch(wavs1, wav1_lens)[:, 0]
        e2 = self.encode_batch(wavs2, wav2_lens)[:, 0]
        scores = torch.nn.functional.cosine_similarity(e1, e2, dim=-1)
        return scores, scores >= threshold

    def verify_files(self, path_a, path_b, threshold=None):
        """Are two sounds the same instrument? Returns ``(cosine score, score >= threshold)``.

        The default threshold is the export's ``verification_threshold`` (see its README).
        """
        threshold = self.threshold if threshold is None else threshold
        emb = self.embed_files([path_a, path_b])
        score = float(self.similarity(emb[0], emb[1]))
        return score, score >= threshold

    # ---------------------------------------------------------------- classes

    def _head_scores(self, head, embeddings):
        if head not in self.mods:
            raise ValueError(f"this model has no {head}")
        emb = torch.as_tensor(np.asarray(embeddings)).float().to(self.device)
        with torch.no_grad():
            return score_rows(self.mods[head], emb.reshape(-1, emb.shape[-1])).cpu()

    def _head_probabilities(self, head, embeddings):
        scores = self._head_scores(head, embeddings)
        return torch.softmax(self.family_scale * scores, dim=-1).numpy()

    def family_probabilities(self, embeddings):
        """[n, emb] embeddings -> [n, n_families] probabilities, softmax(family_scale * head scores).

        The scores are cosines for cosine heads (``family_scale`` = the training scale) and
        logits for linear heads (``family_scale`` = 1).
        """
        return self._head_probabilities("family_head", embeddings)

    def family_presence(self, embeddings):
        """[n, emb] embeddings -> [n, n_families] presence scores in [0, 1], for mixtures.

        A model trained on mixtures (the export says ``family_output: sigmoid``) scores each
        family on its own: the sigmoid of its logit. A single-note model's family head is a
        softmax over families, so its probabilities stand in (the polyphonic baseline).
        """
        if self.family_output == "sigmoid":
            return torch.sigmoid(self._head_scores("family_head", embeddings)).numpy()
        return self.family_probabilities(embeddings)

    def instrument_probabilities(self, embeddings):
        """[n, emb] embeddings -> [n, n_training_instruments] probabilities.

        The instrument head trained with the same loss scale as the family head, so the same
        ``family_scale`` turns its scores into probabilities; the columns follow
        :attr:`instrument_labels`. Unlike raw head scores, these mean the same for both head types.
        """
        return self._head_probabilities("instrument_head", embeddings)

    def classify_batch(self, wavs, wav_lens=None):
        """SpeechBrain-style family classification of a batch.

        Returns
        -------
        probabilities : torch.Tensor
            [batch, n_families].
        score : torch.Tensor
            [batch] probability of the predicted family.
        index : torch.Tensor
            [batch] its index.
        labels : list of str
            Its name.
        """
        emb = self.encode_batch(wavs, wav_lens)[:, 0]
        probs = torch.from_numpy(self.family_probabilities(emb.cpu()))
        score, index = probs.max(dim=-1)
        return probs, score, index, [self.family_labels[i] for i in index.tolist()]

    def classify_file(self, path, **kwargs):
        """Family classification of one file, as :meth:`classify_batch` for a batch of one."""
        return self.classify_batch(self.load_audio(path).unsqueeze(0))

    def classify_family_files(self, paths, batch_size=16):
        """Most likely family of each file: ``(names [n], probabilities np.ndarray [n, n_families])``.

        The columns follow :attr:`family_labels` (the export's ``family_encoder.txt``, the
        family head's rows: NSynth's 11 families in NSynth's order for an NSynth-trained model).
        """
        probs = self.family_probabilities(self.embed_files(paths, batch_size))
        return [self.family_labels[i] for i in probs.argmax(axis=1)], probs

    def closest_instruments_of(self, embeddings, top_k=1):
        """The training instruments nearest each embedding, by the instrument head's scores.

        Returns a list (one per embedding) of ``top_k`` ``(instrument, score)`` pairs, best first:
        the score is a cosine for a cosine head, a logit for a linear head.
        """
        scores = self._head_scores("instrument_head", embeddings)
        k = min(top_k, scores.shape[1])
        values, indices = scores.topk(k, dim=1)
        return [
            [(self.instrument_labels[i], float(v)) for v, i in zip(vs.tolist(), ix.tolist())]
            for vs, ix in zip(values, indices)
        ]

    def closest_instrument(self, paths, top_k=1, batch_size=16):
        """For each file, the ``top_k`` nearest training instruments as ``(name, score)``, best first."""
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        return self.closest_instruments_of(self.embed_files(paths, batch_size), top_k)

    # -------------------------------------------------------------- polyphony

    def load_full(self, path):
        """A whole file (its first ``max_read_seconds``) as one [samples] tensor at the model's rate, trimmed."""
        mono, rate, _ = read_audio_file(path, max_seconds=self.max_read_seconds)
        return self._prepare_whole(mono, rate, path)

    def _prepare_whole(self, mono, rate, path):
        """A decoded file as one model input, all of it: resampled, leading silence trimmed, padded."""
        return prepare_audio(
            mono,
            rate,
            self.sample_rate,
            max_seconds=None,
            trim_db=self.trim_db,
            min_seconds=self.min_seconds,
            path=path,
        )

    def mixture_embeddings(self, signal, window_seconds=1.5, hop_seconds=0.5, batch_size=16):
        """Embeddings of a (polyphonic) sound and of its windows: np.ndarray [(1 + n_windows) * rows_per_view, emb].

        The first view is the sound as :meth:`embed_files` embeds it (its first
        ``max_seconds``); the others are ``window_seconds`` windows every ``hop_seconds``
        (at most ``max_windows``, spread evenly), so a note that plays in one part of the
        clip dominates one of them; ``window_seconds`` 0 or None gives the first view
        alone. Each is embedded as if alone. A view gives :attr:`rows_per_view` rows: its
        embedding, then (a model with a ``slot_head``) its slot embeddings; row 0 is
        always :meth:`embed_files`' embedding.

        Arguments
        ---------
        signal : torch.Tensor
            [samples] at the model's rate (e.g. :meth:`load_full`).
        window_seconds, hop_seconds : float
            Window length and hop in s.
        """
        excerpt = signal if self.max_seconds is None else signal[: int(round(self.max_seconds * self.sample_rate))]
        views = [excerpt]
        if window_seconds:
            window = max(1, int(round(window_seconds * self.sample_rate)))
            hop = max(1, int(round(hop_seconds * self.sample_rate)))
            views += list(audio_windows(signal, window, hop, self.max_windows))
        rows = self.embed_signals(views, batch_size, sets=bool(self.n_slots)).numpy()
        return rows.reshape(-1, rows.shape[-1])

    def enrol_files(self, paths):
        """The enrolment of one instrument from isolated notes: np.ndarray [emb], unit length.

        The mean of the notes' length-normalised embeddings
        (:func:`timbre_lobes.polyphonic.detection.enrolment_embeddings`).

        Raises
        ------
        AudioError
            A file is unusable (the message names it).
        ValueError
            No file.
        """
        from timbre_lobes.polyphonic.detection import enrolment_embeddings

        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        if not paths:
            raise ValueError("an enrolment needs at least one file")
        return enrolment_embeddings({"enrolled": self.embed_files(list(paths))})[1][0]

    def detect_files(self, mixture, enrol, threshold=None, window_seconds=None, hop_seconds=0.5):
        """Is the enrolled instrument playing in ``mixture``? Returns ``(score, score >= threshold)``.

        ``enrol`` is a list of files (isolated notes of one instrument) or the array
        :meth:`enrol_files` made of them. The score is the best cosine between the
        enrolment and the rows of the mixture's views (:meth:`mixture_embeddings`: with a
        ``slot_head``, every slot of every view,
        :func:`timbre_lobes.polyphonic.detection.window_scores`). The defaults are
        the export's: ``detection_threshold`` and ``detection_window_seconds`` for a
        model trained on mixtures (whose threshold was chosen on whole-clip scores,
        window 0), else the note-to-note ``verification_threshold`` and 1.5 s windows;
        recipes/Polyphonic/README.md measures how well either fits mixtures.

        Raises
        ------
        AudioError
            A file is unusable (the message names it).
        ValueError
            No enrolment file.
        """
        from timbre_lobes.polyphonic.detection import window_scores

        if window_seconds is None:
            window_seconds = self.detection_window_seconds
        if threshold is None:
            threshold = self.detection_threshold if self.detection_threshold is not None else self.threshold
        enrolled = enrol if isinstance(enrol, np.ndarray) else self.enrol_files(enrol)
        windows = self.mixture_embeddings(self.load_full(mixture), window_seconds, hop_seconds)
        score = float(window_scores(windows, enrolled)[0])
        return score, score >= threshold

    def forward(self, wavs, wav_lens=None):
        """Embeddings of a batch, [batch, 1, emb]."""
        return self.encode_batch(wavs, wav_lens)


#: What to do when a model folder is missing or incomplete, said by every error about one.
EXPORT_HINT = "give the folder train.py exports, <output_folder>/model (`make demo` writes results/demo/model)"


def check_model_folder(source, hparams_file="hyperparams.yaml"):
    """Checks that ``source`` is a whole exported model folder, without loading anything; returns its absolute path.

    Every entry point that takes a model folder calls it before it creates any
    output, so a wrong path is a one-line error and leaves nothing behind.

    Raises
    ------
    FileNotFoundError
        The folder is missing, or one of its files (``hyperparams.yaml``, the label
        files, a checkpoint its YAML points at) is; the message names it and what to do.

    Example
    -------
    >>> check_model_folder("/nonexistent/model")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: no exported model at /nonexistent/model (not a folder): give the folder train.py exports, ...
    """
    folder = os.path.abspath(os.fspath(source))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"no exported model at {source} (not a folder): {EXPORT_HINT}")
    names = [hparams_file, *REQUIRED_FILES[1:]]
    if os.path.isfile(os.path.join(folder, hparams_file)):
        with open(os.path.join(folder, hparams_file)) as handle:  # the checkpoints the YAML points at
            names += [line.split("<pretrained_path>/", 1)[1].strip() for line in handle if "<pretrained_path>/" in line]
    for name in names:
        if not os.path.isfile(os.path.join(folder, name)):
            raise FileNotFoundError(f"incomplete model folder {source}: {name} is missing; {EXPORT_HINT}")
    return folder
