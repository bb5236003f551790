"""Training on mixtures: a dataset of mixtures drawn anew every epoch, and the Brain that learns presence.

The model is the single-note system (front end -> normalisation -> ResNet-LDE
encoder) with its two heads turned into *presence* heads. The instrument head
is trained with :class:`SetCrossEntropy` (a softmax over the training
instruments whose target shares its mass among those present), so a mixture's
embedding is pulled towards each present instrument's head row at once, which is
what enrolment detection of unseen instruments needs: the cosine between a
mixture and an enrolment (the same encoder on isolated notes) is high when the
instrument plays. The family head answers "does a note of this family play?"
once per family (binary cross-entropy, ``torch.nn.BCEWithLogitsLoss``), so its
sigmoids are presence probabilities.

A second model keeps the single-note model exactly as it is and adds a
:class:`timbre_lobes.lobes.encoder.SlotHead`: a *set* of embeddings per mixture, one
for each source it may hold, trained with :class:`SlotSetLoss` to sit where the
single-note model puts each note heard alone (``hparams/poly_slots.yaml``). A
mixture is then scored by its best row (its embedding or a slot).

Validation scores the fixed validation mixtures with the validation instruments'
enrolments (detection EER, which selects the checkpoint) and the family head
(presence micro-F1 at probability 0.5, mAP; a kept single-note head: its softmax
probabilities, best row).
"""

import numpy as np
import speechbrain as sb
import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.dataio.dataio import read_audio

from timbre_lobes.lobes.embed import embed_unpadded, embed_waveform_sets, embed_waveforms
from timbre_lobes.lobes.heads import score_rows
from timbre_lobes.polyphonic import detection
from timbre_lobes.polyphonic.mixtures import mix_audio, read_note, resolve_wav, sample_mixtures
from timbre_lobes.training import TimbreBrain


class MixtureDataset(torch.utils.data.Dataset):
    """Mixtures as training or validation items: ``id``, ``sig`` and multi-hot presence targets.

    Either a fixed list of mixtures (validation), or ``n_per_epoch`` mixtures of
    ``notes`` drawn by :meth:`draw` for each epoch from ``(seed, epoch)``
    (training: every epoch hears new combinations, and a resumed run the same ones).

    Arguments
    ---------
    labels : dict
        ``{"instrument": CategoricalEncoder, "family": CategoricalEncoder}``: the
        columns of the targets (an instrument outside the encoder, e.g. an unseen
        validation one, sets no column).
    data_root : str
        What ``$data_root`` stands for in the notes' wav paths.
    mixtures : list of dict, optional
        Fixed mixtures (:func:`timbre_lobes.polyphonic.mixtures.sample_mixtures`).
    notes : list of dict, optional
        Manifest rows to draw from, with ``n_per_epoch`` and ``settings``.
    n_per_epoch : int, optional
        Mixtures per epoch.
    settings : dict, optional
        The sampler's keyword arguments (``max_sources``, ``seconds`` ...).
    seed : int
        Seed of the draws.
    sample_rate : int
        Rate of ``sig`` in Hz.
    parts : bool
        Also give each source note alone (for :class:`PolyphonicBrain`'s teacher).

    Items
    -----
    ``{"id": str, "sig": [samples] tensor, "instrument_presence": [n_instruments]
    float tensor, "family_presence": [n_families] float tensor}``; with ``parts``,
    also ``"parts"``: [n_sources, samples] (each source note from its start, unscaled,
    zero-padded to the mixture's length) and ``"part_instruments"``: [n_sources]
    their instruments' indices in ``labels["instrument"]`` (-1 outside it).
    """

    def __init__(
        self,
        labels,
        data_root,
        mixtures=None,
        notes=None,
        n_per_epoch=None,
        settings=None,
        seed=0,
        sample_rate=16000,
        parts=False,
    ):
        if (mixtures is None) == (notes is None):
            raise ValueError("give either fixed mixtures or notes to draw them from")
        self.labels = labels
        self.data_root = data_root
        self.notes, self.n_per_epoch, self.settings, self.seed = notes, n_per_epoch, settings or {}, seed
        self.sample_rate = sample_rate
        self.parts = parts
        self.mixtures = mixtures if mixtures is not None else []
        if notes is not None:
            self.draw(0)

    def draw(self, epoch):
        """Draws the mixtures of ``epoch`` (no-op for fixed mixtures)."""
        if self.notes is not None:
            self.mixtures = sample_mixtures(
                self.notes, self.n_per_epoch, seed=[self.seed, int(epoch)], prefix=f"e{int(epoch)}_", **self.settings
            )

    def __len__(self):
        return len(self.mixtures)

    def _multi_hot(self, encoder, names):
        target = torch.zeros(len(encoder))
        for name in names:
            if name in encoder.lab2ind:
                target[encoder.lab2ind[name]] = 1.0
        return target

    def __getitem__(self, index):
        mixture = self.mixtures[index]
        if not self.parts:
            return {
                **self._targets(mixture),
                "sig": torch.from_numpy(mix_audio(mixture, self.data_root, self.sample_rate)),
            }
        length = int(round(mixture["seconds"] * self.sample_rate))
        notes = {}
        for source in mixture["sources"]:  # each note read once, for the mixture and for its part
            path = resolve_wav(source["wav"], self.data_root)
            notes[path] = read_note(path, mixture["seconds"], self.sample_rate)[:length]
        signal = mix_audio(mixture, self.data_root, self.sample_rate, read=notes.__getitem__)
        parts = torch.zeros(len(mixture["sources"]), length)
        for row, source in enumerate(mixture["sources"]):
            note = notes[resolve_wav(source["wav"], self.data_root)]
            parts[row, : len(note)] = torch.from_numpy(note)
        index_of = self.labels["instrument"].lab2ind
        return {
            **self._targets(mixture),
            "sig": torch.from_numpy(signal),
            "parts": parts,
            "part_instruments": torch.tensor([index_of.get(s["instrument"], -1) for s in mixture["sources"]]),
        }

    def _targets(self, mixture):
        return {
            "id": mixture["id"],
            "instrument_presence": self._multi_hot(
                self.labels["instrument"], [s["instrument"] for s in mixture["sources"]]
            ),
            "family_presence": self._multi_hot(self.labels["family"], [s["family"] for s in mixture["sources"]]),
        }


class SetCrossEntropy(torch.nn.Module):
    """Softmax cross-entropy whose target shares its mass among the classes present (multi-label softmax).

    For a mixture of k training instruments the target gives each 1/k: the
    embedding is pulled towards every present instrument's head row, with the
    softmax's competition against all the absent ones, as the single-note training
    pulls a note towards its own (Mahajan et al. 2018, "Exploring the limits of
    weakly supervised pretraining", use this loss for multi-label targets). A
    per-output binary cross-entropy over hundreds of instruments is dominated by the
    absent ones and hardly moves the embedding.

    Arguments (of ``forward``)
    ---------
    logits : torch.Tensor
        [batch, n_classes].
    targets : torch.Tensor
        [batch, n_classes] multi-hot (rows without a class count nothing).

    Example
    -------
    >>> loss = SetCrossEntropy()
    >>> float(loss(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 1.0]])))  # log 2: both present, equal scores
    0.693...
    """

    def forward(self, logits, targets):
        mass = targets.sum(dim=-1, keepdim=True)
        keep = mass[:, 0] > 0
        if not keep.any():
            return logits.sum() * 0.0
        share = targets[keep] / mass[keep]
        return -(share * torch.log_softmax(logits[keep], dim=-1)).sum(dim=-1).mean()


class SlotSetLoss(torch.nn.Module):
    """A set loss for slot embeddings: each source of a mixture found by one slot, each slot on one source.

    The targets are the single-note model's embeddings of the mixture's notes heard
    alone (the space enrolments live in). With ``scale`` x cosines between every slot
    and every note of the batch as logits:

    * **coverage**: for each note, the slot of its mixture nearest to it must pick it
      (or another note of its instrument) out of all the batch's notes, the other notes
      of its own mixture included: a slot that sits on a blend of the sources loses;
    * **precision**: each slot must pick one of its mixture's notes (any: the target is
      the probability mass of all of them, so a slot may commit to one source), so no
      slot wanders off to where an absent instrument would match it.

    The loss is the mean of the two cross-entropies (Chamfer-style matching, no
    Hungarian assignment: with as many slots as sources or more, a source may be covered
    by several slots).

    Arguments
    ---------
    scale : float
        Logit scale (inverse temperature) of the cosines.

    Arguments (of ``forward``)
    ---------
    slots : torch.Tensor
        [batch, n_slots, emb] slot embeddings of the mixtures.
    notes : torch.Tensor
        [n_notes, emb] unit-length embeddings of the batch's notes, alone.
    rows : torch.Tensor
        [n_notes] the mixture (batch row) each note plays in.
    instruments : torch.Tensor
        [n_notes] each note's instrument index.

    Example
    -------
    >>> loss = SlotSetLoss(scale=10.0)
    >>> notes = torch.eye(3)
    >>> rows, instruments = torch.tensor([0, 0, 1]), torch.tensor([0, 1, 2])
    >>> separated = torch.stack([torch.eye(3)[[0, 1]], torch.eye(3)[[2, 2]]])  # a slot on each source
    >>> blended = torch.stack([torch.tensor([[1.0, 1.0, 0.0]] * 2), torch.eye(3)[[2, 2]]])
    >>> bool(loss(separated, notes, rows, instruments) < loss(blended, notes, rows, instruments))
    True
    """

    def __init__(self, scale=10.0):
        super().__init__()
        self.scale = float(scale)

    def forward(self, slots, notes, rows, instruments):
        rows, instruments = rows.to(slots.device), instruments.to(slots.device)
        logits = self.scale * torch.einsum("bke,ne->bkn", torch.nn.functional.normalize(slots, dim=-1), notes)
        same = instruments[:, None] == instruments[None, :]  # [N, N]: the same instrument
        index = torch.arange(len(rows), device=slots.device)
        own = logits[rows]  # [N, K, N]: each note's mixture's slots against every note
        nearest = own[index, :, index].argmax(dim=1)  # [N]: the slot nearest each note
        picked = own[index, nearest]  # [N, N]
        coverage = torch.logsumexp(picked, dim=-1) - torch.logsumexp(picked.masked_fill(~same, -torch.inf), dim=-1)
        positive = torch.zeros(slots.shape[0], len(rows), device=slots.device)
        positive.index_add_(0, rows, same.float())  # [B, N]: does note n's instrument play in mixture b?
        positive = (positive > 0)[:, None, :].expand_as(logits)
        keep = positive.any(dim=-1)  # slots of mixtures with notes
        precision = torch.logsumexp(logits, dim=-1) - torch.logsumexp(logits.masked_fill(~positive, -torch.inf), dim=-1)
        return 0.5 * (coverage.mean() + precision[keep].mean())


#: Loader options every mixture loader needs (the items are dicts of tensors, not a DynamicItemDataset).
COLLATE = {"collate_fn": PaddedBatch}


#: The single-note model's modules, which ``freeze_encoder`` keeps as they are.
FROZEN_MODULES = ("compute_features", "mean_var_norm", "embedding_model", "instrument_head", "family_head")


def freeze_single_note_model(modules):
    """Stops the parameters of :data:`FROZEN_MODULES` in ``modules`` from learning (a slot head trains alone)."""
    for name in FROZEN_MODULES:
        for param in modules[name].parameters():
            param.requires_grad_(False)


def add_slot_head(hparams):
    """Puts the YAML's ``slot_head`` (if any) into ``modules`` and the checkpointer (after
    :func:`check_slot_settings`)."""
    check_slot_settings(hparams)
    head = hparams.get("slot_head")
    if head is None:
        return
    hparams["modules"]["slot_head"] = head
    if "slot_head" not in hparams["checkpointer"].recoverables:
        hparams["checkpointer"].add_recoverable("slot_head", head)


def check_slot_settings(hparams):
    """Checks the slot head's settings (call it before anything is prepared or drawn).

    ``slot_weight`` needs a ``slot_head`` and ``freeze_encoder`` (the slots' targets are
    the frozen single-note model's embeddings); the head's input is the encoder's pooled size.

    Raises
    ------
    ValueError
        ``slot_weight`` without a ``slot_head`` or without ``freeze_encoder``; a
        ``slot_head`` whose input size is not the encoder's pooled size.
    """
    head = hparams.get("slot_head")
    if hparams.get("slot_weight") and head is None:
        raise ValueError("slot_weight needs a slot_head (hparams/poly_slots.yaml defines one)")
    if head is None:
        return
    if hparams.get("slot_weight") and not hparams.get("freeze_encoder"):
        raise ValueError(
            "slot_weight needs freeze_encoder: True (the slots learn the frozen single-note model's embeddings "
            "of the notes; a trained encoder would move the targets and the enrolments)"
        )
    encoder = hparams["embedding_model"]
    pooled = encoder.pooling.get_out_dim() if hasattr(encoder, "pool") else None
    if pooled is None:
        raise ValueError(f"a slot_head needs the ResNetLDE encoder, not {type(encoder).__name__}")
    given = head.input_size
    if given != pooled:
        rows = " x its frequency rows" if encoder.freq_collapse == "flatten" else ""
        raise ValueError(
            f"slot_head's input_size is {given} but the encoder pools {pooled} values "
            f"(lde_components x its last channels{rows}): set --slot_input_size={pooled}"
        )


class PolyphonicBrain(TimbreBrain):
    """Learns instrument and family presence in mixtures; validates enrolment detection on unseen instruments.

    Set before ``fit``: ``train_mixtures`` (the :class:`MixtureDataset` drawn
    anew each epoch), ``valid_mixtures`` (the list of fixed validation mixtures,
    in the validation loader's order) and ``valid_enrolment`` (``{instrument:
    [wav paths]}`` of the validation instruments' enrolment notes). After each
    validation, ``valid_stats`` holds ``EER``, ``EER_threshold``,
    ``family_micro_f1`` and ``family_mAP``.
    """

    train_mixtures = None
    valid_mixtures = ()
    valid_enrolment = None
    valid_stats = None
    #: The single-note model's embedding modules (frozen), for the distillation loss; None: off.
    teacher = None
    teacher_out = None
    #: The single-note model's modules (:data:`FROZEN_MODULES`) stay as they are: only a ``slot_head`` learns.
    freeze_encoder = False
    slots_out = None

    @property
    def has_slots(self):
        return "slot_head" in self.modules

    def compute_forward(self, batch, stage):
        """Mixtures -> (embeddings [B, R, E], instrument logits or None, family logits [B, R, F], lens).

        R is 1, or with a ``slot_head`` 1 + n_slots (row 0 the embedding, then the slots;
        in training the slots go to :attr:`slots_out` and R is 1).
        """
        batch = batch.to(self.device)
        wavs, lens = batch.sig
        if stage == sb.Stage.TRAIN:
            wavs, lens = self.label_preserving_augment(wavs, lens)
            epoch = self.hparams.epoch_counter.current
            if self.freeze_encoder:  # frozen: no statistics update either (batch norm, normalisation)
                for name in FROZEN_MODULES:
                    self.modules[name].eval()
                epoch = None
            if self.has_slots:
                rows = embed_waveform_sets(self.modules, wavs, lens, epoch=epoch)
                embeddings, self.slots_out = rows[:, :1], rows[:, 1:]
            else:
                embeddings = embed_waveforms(self.modules, wavs, lens, epoch=epoch)
            self.teacher_out = self._teacher_embeddings(batch) if self.teacher is not None else None
            return embeddings, self.modules.instrument_head(embeddings), self.modules.family_head(embeddings), lens
        embeddings = embed_unpadded(self.modules, wavs, lens, sets=self.has_slots)
        return embeddings, None, score_rows(self.modules.family_head, embeddings), lens

    def _teacher_embeddings(self, batch):
        """The teacher's unit embeddings of the batch's source notes, with each note's mixture and instrument.

        Returns ``([n_notes, E] tensor, [n_notes] mixture rows, [n_notes] instrument indices)``. A
        mixture's number of sources is its number of present training instruments (training
        mixtures hold training instruments only); the rows past it are padding.
        """
        counts = batch.instrument_presence.data.sum(dim=1).round().long().tolist()
        notes = torch.cat([parts[:k] for parts, k in zip(batch.parts.data, counts)])
        rows = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
        instruments = torch.cat([idx[:k] for idx, k in zip(batch.part_instruments.data.cpu(), counts)])
        with torch.no_grad():
            lens = torch.ones(notes.shape[0], device=self.device)
            emb = embed_waveforms(self.teacher, notes.to(self.device), lens)[:, 0]
        return torch.nn.functional.normalize(emb, dim=-1), rows, instruments

    def compute_objectives(self, predictions, batch, stage):
        """instrument_weight x instrument loss + family_weight x family loss; off training the family loss."""
        embeddings, instrument_out, family_out, _ = predictions
        families = batch.family_presence.data
        family_loss = self.hparams.family_presence_loss(family_out[:, 0], families)  # row 0: the embedding
        if stage == sb.Stage.TRAIN:
            targets = batch.instrument_presence.data
            loss = self.hparams.family_weight * family_loss
            if self.hparams.instrument_weight:
                instrument_loss = self.hparams.instrument_presence_loss(instrument_out[:, 0], targets)
                loss = loss + self.hparams.instrument_weight * instrument_loss
            if self.teacher_out is not None and self.hparams.distill_weight:
                loss = loss + self.hparams.distill_weight * self.distillation_loss(embeddings[:, 0], targets)
            if self.has_slots and self.hparams.slot_weight:
                notes, rows, instruments = self.teacher_out
                loss = loss + self.hparams.slot_weight * self.hparams.slot_loss(
                    self.slots_out, notes, rows, instruments
                )
            return loss
        if self.hparams.family_output == "softmax":  # a single-note family head: its probabilities, best row
            presence = torch.softmax(self.hparams.family_logit_scale * family_out, dim=-1).amax(dim=1)
        else:
            presence = torch.sigmoid(family_out).amax(dim=1)
        self.collected_rows.append((embeddings.detach().cpu().numpy(), presence.detach().cpu().numpy()))
        return family_loss

    def distillation_loss(self, embeddings, targets):
        """Points each mixture's embedding at the teacher's embeddings of the instruments that play in it.

        Logits are ``distill_scale`` x the cosines between the mixtures [B, E] and every source
        note of the batch (the teacher's single-note embeddings); a note counts as a positive of
        every mixture its instrument plays in (``targets``, [B, n_instruments] multi-hot), and
        :class:`SetCrossEntropy` shares the target among them. Enrolment at test time embeds
        isolated notes, which the teacher's space is made for: the student learns to find them in
        mixtures, and on one-note mixtures to stay the teacher.
        """
        notes, _, instruments = self.teacher_out
        logits = self.hparams.distill_scale * torch.nn.functional.normalize(embeddings, dim=-1) @ notes.t()
        positives = targets[:, instruments.to(targets.device)]
        return self.hparams.distill_loss(logits, positives)

    def on_stage_start(self, stage, epoch=None):
        """Draws the epoch's training mixtures; starts collecting off training."""
        if stage == sb.Stage.TRAIN and self.train_mixtures is not None and epoch is not None:
            self.train_mixtures.draw(epoch)
        self.collected_rows = []

    def enrolment_embeddings(self):
        """``(instruments, [n, emb] unit embeddings)`` of :attr:`valid_enrolment`, with the current weights."""
        rows = {}
        with torch.no_grad():
            for name, paths in self.valid_enrolment.items():
                signals = [read_audio(p) for p in paths]
                length = max(s.shape[0] for s in signals)
                wavs = torch.stack([torch.nn.functional.pad(s, (0, length - s.shape[0])) for s in signals])
                lens = torch.tensor([s.shape[0] / length for s in signals])
                rows[name] = (
                    embed_unpadded(self.modules, wavs.to(self.device), lens.to(self.device))[:, 0].cpu().numpy()
                )
        return detection.enrolment_embeddings(rows)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Scores the validation mixtures, anneals the learning rate, logs and checkpoints."""
        if stage == sb.Stage.TRAIN:
            self.train_stats = {"loss": stage_loss}
            return
        if stage != sb.Stage.VALID:
            return
        embeddings = np.concatenate([e for e, _ in self.collected_rows])
        presence = np.concatenate([p for _, p in self.collected_rows])
        names, enrolled = self.enrolment_embeddings()
        mixtures = list(self.valid_mixtures)
        scores = np.stack([detection.window_scores(rows, enrolled) for rows in embeddings])
        found = detection.detection_scores(scores, detection.presence_matrix(mixtures, names, "instrument"), mixtures)
        family = detection.family_presence_scores(
            presence,
            detection.presence_matrix(mixtures, self.family_labels, "family"),
            mixtures,
            0.5,
            self.family_labels,
        )
        stats = {
            "loss": stage_loss,
            "EER": found["all"]["EER"],
            "EER_threshold": found["all"]["threshold"],
            "family_micro_f1": family["all"]["micro_f1"],
            "family_mAP": family["all"]["micro_mAP"],
        }
        self.valid_stats = stats
        old_lr, new_lr = self.hparams.lr_annealing(epoch)
        sb.nnet.schedulers.update_learning_rate(self.optimizer, new_lr)
        self.hparams.train_logger.log_stats(
            stats_meta={"epoch": epoch, "lr": old_lr}, train_stats=self.train_stats, valid_stats=stats
        )
        self.checkpointer.save_and_keep_only(
            meta={k: stats[k] for k in ("EER", "EER_threshold", "family_micro_f1")}, min_keys=["EER"], keep_recent=True
        )
