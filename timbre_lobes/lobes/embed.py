"""The one chain from waveforms to embeddings, shared by training, export, inference and profiling."""

#: The modules every system has, in the order the waveform passes through them.
EMBEDDING_MODULES = ("compute_features", "mean_var_norm", "embedding_model")


def embed_waveforms(modules, wavs, lens, epoch=None):
    """Front end -> global mean/variance normalisation -> encoder.

    Arguments
    ---------
    modules : Mapping[str, torch.nn.Module]
        Holds :data:`EMBEDDING_MODULES` (a Brain's ``modules``, an inference
        interface's ``mods`` or a plain dict).
    wavs : torch.Tensor
        [batch, samples] waveforms at the model's sample rate.
    lens : torch.Tensor
        [batch] lengths relative to the longest waveform (1.0 = no padding).
    epoch : int, optional
        The training epoch, for the normalisation's statistics (they are updated
        in training mode up to its ``update_until_epoch``); None off training.

    Returns
    -------
    torch.Tensor
        [batch, 1, emb_dim] embeddings.

    Example: see :func:`embed_unpadded`.
    """
    return modules["embedding_model"](_features(modules, wavs, lens, epoch), lens)


def _features(modules, wavs, lens, epoch):
    feats = modules["compute_features"](wavs)
    if epoch is None:
        return modules["mean_var_norm"](feats, lens)
    return modules["mean_var_norm"](feats, lens, epoch=epoch)


def embed_waveform_sets(modules, wavs, lens, epoch=None):
    """The embedding and the slot embeddings of each sound (models with a ``slot_head``).

    Front end -> normalisation -> the encoder's pooled vector -> its embedding, and
    :class:`timbre_lobes.lobes.encoder.SlotHead`'s ``n_slots`` embeddings from both.

    Arguments
    ---------
    modules, wavs, lens, epoch
        As for :func:`embed_waveforms`; ``modules`` also holds ``slot_head``.

    Returns
    -------
    torch.Tensor
        [batch, 1 + n_slots, emb_dim]: row 0 is :func:`embed_waveforms`' embedding.

    Raises
    ------
    ValueError
        No ``slot_head``, or an encoder without ``pool`` (only ResNetLDE has one).
    """
    import torch

    if "slot_head" not in modules:
        raise ValueError("this model has no slot_head: it gives one embedding per sound")
    encoder = getattr(modules["embedding_model"], "module", modules["embedding_model"])  # DDP
    if not hasattr(encoder, "pool"):
        raise ValueError(f"a slot_head needs the ResNetLDE encoder (its pooled vector), not {type(encoder).__name__}")
    pooled = encoder.pool(_features(modules, wavs, lens, epoch), lens)
    embedding = encoder.embedding(pooled).unsqueeze(1)
    return torch.cat([embedding, modules["slot_head"](pooled, embedding)], dim=1)


def embed_unpadded(modules, wavs, lens, sets=False):
    """:func:`embed_waveforms` of each row at its own length: no row sees another's zero padding.

    Rows of equal length share one forward pass, so a batch of equal-length notes
    costs what :func:`embed_waveforms` costs; a row's embedding is the same
    (to float tolerance) whatever the batch, its order and its neighbours.
    Use it off training (``torch.no_grad``); training crops have one length.

    Arguments
    ---------
    modules : Mapping[str, torch.nn.Module]
        As for :func:`embed_waveforms`.
    wavs : torch.Tensor
        [batch, samples] waveforms, zero-padded to the longest.
    lens : torch.Tensor
        [batch] lengths relative to ``samples``.
    sets : bool
        :func:`embed_waveform_sets` instead (models with a ``slot_head``).

    Returns
    -------
    torch.Tensor
        [batch, 1, emb_dim] embeddings ([batch, 1 + n_slots, emb_dim] with ``sets``).

    Example
    -------
    >>> import torch
    >>> from timbre_lobes.lobes.encoder import ResNetLDE
    >>> from timbre_lobes.lobes.frontend import GlobalNormalization, TransformLayer
    >>> modules = {"compute_features": TransformLayer(out_channels=8, kernel_size=101, stride=160),
    ...            "mean_var_norm": GlobalNormalization(),
    ...            "embedding_model": ResNetLDE(in_bins=8, channels=[4, 8], blocks=[1, 1], strides=[1, 2],
    ...                                         lde_components=2, lin_neurons=16)}
    >>> _ = embed_waveforms(modules, torch.rand(4, 8000), torch.ones(4), epoch=0)  # global statistics
    >>> for m in modules.values():
    ...     _ = m.eval()
    >>> short = torch.rand(4000)
    >>> padded = torch.zeros(2, 8000)
    >>> padded[0, :4000], padded[1] = short, torch.rand(8000)
    >>> with torch.no_grad():
    ...     together = embed_unpadded(modules, padded, torch.tensor([0.5, 1.0]))
    ...     alone = embed_waveforms(modules, short[None], torch.ones(1))
    >>> bool((together[0] - alone[0]).abs().max() < 1e-5)
    True
    """
    import torch

    samples = wavs.shape[1]
    lengths = [max(1, min(samples, int(round(float(r) * samples)))) for r in lens]
    groups = {}
    for i, length in enumerate(lengths):
        groups.setdefault(length, []).append(i)
    out = [None] * len(lengths)
    for length, rows in groups.items():
        embed = embed_waveform_sets if sets else embed_waveforms
        emb = embed(modules, wavs[rows, :length], torch.ones(len(rows), device=wavs.device))
        for k, i in enumerate(rows):
            out[i] = emb[k]
    return torch.stack(out)
