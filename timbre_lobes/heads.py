"""Angular-margin classification heads.

The cosine heads themselves are SpeechBrain's (``speechbrain.lobes.models.
ECAPA_TDNN.Classifier`` with ``lin_blocks: 0``: cosine between the normalised
embedding and normalised class weights), and the default margin is SpeechBrain's
``AdditiveAngularMargin`` inside ``LogSoftmaxWrapper``. This module adds the
paper's SphereFace-style multiplicative margin, usable in the same wrapper.
"""

import math

import torch


class AngularSoftmaxMargin(torch.nn.Module):
    """SphereFace's A-softmax margin (Liu et al. 2017) on cosine logits, with lambda annealing.

    For the target class, ``cos(theta)`` becomes
    ``(lambda * cos(theta) + psi(theta)) / (1 + lambda)`` with
    ``psi(theta) = (-1)^k cos(m theta) - 2k`` for ``theta`` in ``[k pi/m, (k+1) pi/m]``;
    other classes keep ``cos(theta)``. ``lambda`` starts large (almost plain
    softmax) and decays each training call as
    ``max(lambda_min, lambda_base * (1 + gamma * step) ** -power)``, as in
    SphereFace. Because the heads give cosines of normalised embeddings, the
    logits are multiplied by a fixed ``scale`` instead of the feature norm.
    Call it like ``AdditiveAngularMargin``: ``(cosines, one_hot_targets) -> logits``.

    Arguments
    ---------
    margin : int
        Multiplicative angular margin m (SphereFace: 4).
    scale : float
        Logit scale.
    lambda_base, lambda_min, gamma, power : float
        Annealing schedule of lambda.

    Example
    -------
    >>> loss_fn = AngularSoftmaxMargin(margin=4, scale=30.0)
    >>> cosines = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    >>> targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> loss_fn(cosines, targets).shape
    torch.Size([2, 2])
    """

    def __init__(self, margin=4, scale=30.0, lambda_base=1000.0, lambda_min=5.0, gamma=0.12, power=1.0):
        super().__init__()
        if int(margin) != margin or margin < 1:
            raise ValueError(f"margin must be a positive integer, got {margin}")
        self.margin = int(margin)
        self.scale = scale
        self.lambda_base = lambda_base
        self.lambda_min = lambda_min
        self.gamma = gamma
        self.power = power
        # A buffer, so that the annealing position is saved in checkpoints.
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def current_lambda(self):
        """The annealed lambda at the current step."""
        value = self.lambda_base * (1.0 + self.gamma * float(self.step)) ** (-self.power)
        return max(self.lambda_min, value)

    def psi(self, cosines):
        """Monotonic extension of ``cos(m theta)`` over ``theta`` in ``[0, pi]``."""
        theta = torch.acos(cosines.clamp(-1.0 + 1e-7, 1.0 - 1e-7))
        k = torch.floor(theta * self.margin / math.pi)
        sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
        return sign * torch.cos(self.margin * theta) - 2.0 * k

    def forward(self, cosines, targets):
        """[batch, classes] cosines and one-hot targets -> [batch, classes] scaled logits."""
        lam = self.current_lambda()
        target_logit = (lam * cosines + self.psi(cosines)) / (1.0 + lam)
        if self.training:
            self.step += 1
        return self.scale * torch.where(targets.bool(), target_logit, cosines)
