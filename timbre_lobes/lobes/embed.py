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

    Example
    -------
    >>> import torch
    >>> from timbre_lobes.lobes.encoder import ResNetLDE
    >>> from timbre_lobes.lobes.frontend import GlobalNormalization, TransformLayer
    >>> modules = {"compute_features": TransformLayer(out_channels=8, kernel_size=101, stride=160),
    ...            "mean_var_norm": GlobalNormalization(),
    ...            "embedding_model": ResNetLDE(in_bins=8, channels=[4, 8], blocks=[1, 1], strides=[1, 2],
    ...                                         lde_components=2, lin_neurons=16)}
    >>> embed_waveforms(modules, torch.rand(3, 8000), torch.ones(3)).shape
    torch.Size([3, 1, 16])
    """
    feats = modules["compute_features"](wavs)
    if epoch is None:
        feats = modules["mean_var_norm"](feats, lens)
    else:
        feats = modules["mean_var_norm"](feats, lens, epoch=epoch)
    return modules["embedding_model"](feats, lens)
