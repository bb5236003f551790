"""ResNet trunk with LDE pooling: the paper's embedding extractor."""

import torch
from speechbrain.lobes.models.ResNet import BasicBlock

from timbre_lobes.lobes.pooling import LDEPooling

FREQ_COLLAPSE = ("flatten", "mean")


class ResNetTrunk(torch.nn.Module):
    """2-D ResNet over a [frequency, time] plane, made of SpeechBrain's ``BasicBlock``.

    Arguments
    ---------
    channels : sequence of int
        Output channels of each stage (the paper's thin ResNet-34: 16, 32, 64, 128).
    blocks : sequence of int
        Residual blocks per stage (ResNet-34: 3, 4, 6, 3).
    strides : sequence of int
        Stride of the first block of each stage, on both axes.

    Example
    -------
    >>> trunk = ResNetTrunk(channels=(4, 8), blocks=(1, 1), strides=(1, 2))
    >>> trunk(torch.rand(2, 1, 40, 30)).shape
    torch.Size([2, 8, 20, 15])
    >>> trunk.downsampling
    2
    """

    def __init__(self, channels=(16, 32, 64, 128), blocks=(3, 4, 6, 3), strides=(1, 2, 2, 2)):
        super().__init__()
        if not len(channels) == len(blocks) == len(strides):
            raise ValueError("channels, blocks and strides need one entry per stage")
        self.stem = torch.nn.Conv2d(1, channels[0], kernel_size=3, padding=1, bias=False)
        stages = []
        in_ch = channels[0]
        for out_ch, n_blocks, stride in zip(channels, blocks, strides):
            layers = []
            for i in range(n_blocks):
                block_stride = stride if i == 0 else 1
                downsample = None
                if block_stride != 1 or in_ch != out_ch:
                    downsample = torch.nn.Sequential(
                        torch.nn.Conv2d(in_ch, out_ch, 1, stride=block_stride, bias=False),
                        torch.nn.BatchNorm2d(out_ch),
                    )
                layers.append(BasicBlock(in_ch, out_ch, block_stride, downsample))
                in_ch = out_ch
            stages.append(torch.nn.Sequential(*layers))
        self.stages = torch.nn.Sequential(*stages)
        # BasicBlock is pre-activation: its output has not been through BN/ReLU yet.
        self.out_norm = torch.nn.Sequential(torch.nn.BatchNorm2d(in_ch), torch.nn.ReLU())
        self.out_channels = in_ch
        self.downsampling = 1
        for stride in strides:
            self.downsampling *= stride

    def out_bins(self, in_bins):
        """Number of frequency rows left from ``in_bins`` after the strided stages."""
        bins = in_bins
        for stage in self.stages:
            stride = stage[0].stride
            bins = (bins - 1) // stride + 1
        return bins

    def forward(self, x):
        """[batch, 1, freq, time] -> [batch, channels[-1], freq', time']."""
        return self.out_norm(self.stages(self.stem(x)))


class ResNetLDE(torch.nn.Module):
    """Embedding extractor: ResNet trunk, frequency collapse, LDE pooling, linear embedding.

    Takes any [batch, frames, bins] features (log-mel, transform-layer output,
    LEAF) and returns one embedding per item, shaped like SpeechBrain's
    ECAPA-TDNN and x-vector outputs so every lobe is interchangeable.
    The embedding is the linear layer's output, before any batch norm.

    Arguments
    ---------
    in_bins : int
        Number of feature bins per frame.
    channels, blocks, strides : sequence of int
        Trunk configuration, see :class:`ResNetTrunk`.
    lde_components : int
        LDE dictionary size (the paper: 8).
    lin_neurons : int
        Embedding size (the paper: 512).
    freq_collapse : str
        How the trunk's [channels, freq', time'] map becomes one vector per frame:
        ``"flatten"`` keeps every frequency row (channels * freq' features, like
        wespeaker's ResNet), ``"mean"`` averages over frequency (channels features).

    Example
    -------
    >>> enc = ResNetLDE(in_bins=40, channels=(4, 8), blocks=(1, 1), strides=(1, 2), lin_neurons=32)
    >>> enc(torch.rand(3, 100, 40), torch.tensor([1.0, 0.6, 0.9])).shape
    torch.Size([3, 1, 32])
    """

    def __init__(
        self,
        in_bins,
        channels=(16, 32, 64, 128),
        blocks=(3, 4, 6, 3),
        strides=(1, 2, 2, 2),
        lde_components=8,
        lin_neurons=512,
        freq_collapse="flatten",
    ):
        super().__init__()
        if freq_collapse not in FREQ_COLLAPSE:
            raise ValueError(f"freq_collapse must be one of {FREQ_COLLAPSE}, got {freq_collapse!r}")
        self.freq_collapse = freq_collapse
        self.trunk = ResNetTrunk(channels, blocks, strides)
        frame_dim = self.trunk.out_channels
        if freq_collapse == "flatten":
            frame_dim *= self.trunk.out_bins(in_bins)
        self.pooling = LDEPooling(frame_dim, lde_components)
        self.embedding = torch.nn.Linear(self.pooling.get_out_dim(), lin_neurons)

    def forward(self, feats, lengths=None):
        """Embeds a batch.

        Arguments
        ---------
        feats : torch.Tensor
            [batch, frames, bins] features.
        lengths : torch.Tensor, optional
            [batch] relative lengths.

        Returns
        -------
        torch.Tensor
            [batch, 1, lin_neurons] embeddings.
        """
        return self.embedding(self.pool(feats, lengths)).unsqueeze(1)

    def pool(self, feats, lengths=None):
        """The pooled vector the embedding is computed from: [batch, frames, bins] -> [batch, pooled_dim].

        ``pooled_dim`` is ``self.pooling.get_out_dim()``; :class:`SlotHead` reads it.
        """
        maps = self.trunk(feats.transpose(1, 2).unsqueeze(1))  # [B, C, F', T']
        if self.freq_collapse == "mean":
            frames = maps.mean(dim=2)
        else:
            frames = maps.flatten(start_dim=1, end_dim=2)  # [B, C * F', T']
        return self.pooling(frames.transpose(1, 2), lengths)


class SlotHead(torch.nn.Module):
    """A set of embeddings for a sound that may hold several sources: ``n_slots`` offsets from its embedding.

    For mixtures (the polyphonic recipe): a single embedding of a mixture is a blend
    that sits near none of its instruments, so this head gives ``n_slots`` embeddings,
    each meant to sit where the single-note model puts one of the sources heard alone.
    Slot ``k`` is ``embedding + delta_k(pooled)``: an MLP on the encoder's pooled vector
    (:meth:`ResNetLDE.pool`, layer-normalised) whose last layer starts small and random,
    so every slot starts at the single embedding (right for one note) and the slots
    differ enough to be told apart by a set loss
    (:class:`timbre_lobes.polyphonic.training.SlotSetLoss`). A mixture is scored
    against an enrolment by its best slot (set-based speaker detection in overlapped
    speech works the same way: one embedding per speaker of the recording).

    Arguments
    ---------
    input_size : int
        Size of the pooled vector (``ResNetLDE.pooling.get_out_dim()``).
    lin_neurons : int
        Embedding size.
    n_slots : int
        Embeddings per sound (at least the most sources a mixture holds).
    hidden_size : int
        Width of the MLP.
    init_std : float
        Standard deviation of the last layer's initial weights.

    Example
    -------
    >>> head = SlotHead(input_size=64, lin_neurons=16, n_slots=4)
    >>> head(torch.rand(3, 64), torch.rand(3, 1, 16)).shape
    torch.Size([3, 4, 16])
    """

    def __init__(self, input_size, lin_neurons, n_slots=4, hidden_size=512, init_std=0.01):
        super().__init__()
        if n_slots < 1:
            raise ValueError(f"n_slots must be at least 1, got {n_slots}")
        self.input_size, self.n_slots, self.lin_neurons = int(input_size), int(n_slots), int(lin_neurons)
        out = torch.nn.Linear(hidden_size, self.n_slots * self.lin_neurons)
        torch.nn.init.normal_(out.weight, std=init_std)
        torch.nn.init.zeros_(out.bias)
        self.delta = torch.nn.Sequential(
            torch.nn.LayerNorm(input_size), torch.nn.Linear(input_size, hidden_size), torch.nn.ReLU(), out
        )

    def forward(self, pooled, embedding):
        """``pooled`` [batch, input_size] and ``embedding`` [batch, 1, lin_neurons] -> [batch, n_slots, lin_neurons]."""
        offsets = self.delta(pooled).reshape(pooled.shape[0], self.n_slots, self.lin_neurons)
        return embedding + offsets
