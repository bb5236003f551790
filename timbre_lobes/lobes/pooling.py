"""Learnable dictionary encoding (LDE) pooling, Cai, Chen & Li, Odyssey 2018."""

import torch
from speechbrain.dataio.dataio import length_to_mask


class LDEPooling(torch.nn.Module):
    """Pools a variable-length sequence of frames into a fixed vector with a learnt dictionary.

    Each frame ``x_t`` is softly assigned to ``n_components`` learnable centres
    ``mu_d`` with weights ``softmax_d(-s_d * ||x_t - mu_d||^2)`` (one learnable
    smoothing factor ``s_d`` per centre). The output for centre ``d`` is the
    weighted mean over time of the residuals ``x_t - mu_d``; the ``n_components``
    outputs are concatenated. Padded frames (beyond each item's relative length)
    get zero weight, so padding changes nothing; and the result does not depend
    on the order of the frames.

    Arguments
    ---------
    in_channels : int
        Feature size C of each frame.
    n_components : int
        Dictionary size D (the paper: 8).

    Example
    -------
    >>> pool = LDEPooling(in_channels=64, n_components=8)
    >>> pool(torch.rand(4, 50, 64), torch.tensor([1.0, 0.5, 0.8, 1.0])).shape
    torch.Size([4, 512])
    >>> pool.get_out_dim()
    512
    """

    def __init__(self, in_channels, n_components=8):
        super().__init__()
        if in_channels < 1 or n_components < 1:
            raise ValueError("in_channels and n_components must be positive")
        self.in_channels = in_channels
        self.n_components = n_components
        self.components = torch.nn.Parameter(torch.randn(n_components, in_channels))
        # Scaled so that the initial assignments are soft whatever the feature size.
        self.smoothing = torch.nn.Parameter(torch.full((n_components,), 1.0 / in_channels))

    def get_out_dim(self):
        """Size of the pooled vector, D * C."""
        return self.n_components * self.in_channels

    def forward(self, x, lengths=None):
        """Pools frames.

        Arguments
        ---------
        x : torch.Tensor
            [batch, time, in_channels] frames.
        lengths : torch.Tensor, optional
            [batch] relative lengths in (0, 1] (SpeechBrain's convention); frames past
            ``round(lengths * time)`` are ignored. None means all frames are valid.

        Returns
        -------
        torch.Tensor
            [batch, n_components * in_channels] encoding.
        """
        batch, time, _ = x.shape
        residuals = x.unsqueeze(2) - self.components  # [B, T, D, C]
        sq_dist = residuals.pow(2).sum(dim=-1)  # [B, T, D]
        weights = torch.softmax(-self.smoothing * sq_dist, dim=-1)
        if lengths is not None:
            abs_lengths = torch.round(lengths * time).clamp(min=1).long()
            mask = length_to_mask(abs_lengths, max_len=time, device=x.device)
            weights = weights * mask.to(weights.dtype).unsqueeze(-1)
        total = weights.sum(dim=1).clamp(min=1e-6)  # [B, D]
        encoded = torch.einsum("btd,btdc->bdc", weights, residuals) / total.unsqueeze(-1)
        return encoded.reshape(batch, -1)
