"""Classification heads: cosine heads with angular margins (the paper's), or plain linear softmax.

The cosine heads themselves are SpeechBrain's (``speechbrain.lobes.models.
ECAPA_TDNN.Classifier`` with ``lin_blocks: 0``: cosine between the normalised
embedding and normalised class weights), and the default margin is SpeechBrain's
``AdditiveAngularMargin`` inside ``LogSoftmaxWrapper``. This module adds the
paper's SphereFace-style multiplicative margin, usable in the same wrapper, and
a plain linear head: on the small budgets of a CPU it learns much faster than a
margin on cosines (see ``docs/experiments``).

The YAMLs choose with one key, ``head_type``, through :func:`classification_head`
and :func:`head_logits`.
"""

import math

import torch
from speechbrain.lobes.models.ECAPA_TDNN import Classifier
from speechbrain.nnet.losses import AdditiveAngularMargin

HEAD_TYPES = ("cosine", "linear")


class LinearClassifier(torch.nn.Linear):
    """Plain linear head: [batch, 1, input_size] embeddings -> [batch, 1, out_neurons] logits.

    Same arguments and shapes as SpeechBrain's ECAPA ``Classifier``, so either
    can sit behind any lobe; ``weight`` holds one row per class.

    Example
    -------
    >>> head = LinearClassifier(input_size=8, out_neurons=3)
    >>> head(torch.rand(4, 1, 8)).shape
    torch.Size([4, 1, 3])
    """

    def __init__(self, input_size, out_neurons):
        super().__init__(input_size, out_neurons)


class PlainLogits(torch.nn.Module):
    """No margin: hands a linear head's logits to ``LogSoftmaxWrapper`` unchanged.

    ``LogSoftmaxWrapper(PlainLogits())`` is then ordinary softmax cross-entropy.
    ``scale`` is 1: the logits are used as they are (inference reads it as the
    softmax temperature of the family probabilities).

    Example
    -------
    >>> from speechbrain.nnet.losses import LogSoftmaxWrapper
    >>> logits, targets = torch.randn(4, 1, 3), torch.tensor([[0], [2], [1], [0]])
    >>> loss = LogSoftmaxWrapper(PlainLogits())(logits, targets)
    >>> torch.allclose(loss, torch.nn.functional.cross_entropy(logits[:, 0], targets[:, 0]))
    True
    """

    scale = 1.0

    def forward(self, outputs, targets=None):
        """[batch, classes] logits (and unused one-hot targets) -> the same logits."""
        return outputs


def _check_head_type(head_type):
    if head_type not in HEAD_TYPES:
        raise ValueError(f"head_type must be one of {HEAD_TYPES}, got {head_type!r}")


def classification_head(head_type, input_size, out_neurons):
    """A head of the chosen type: ``"cosine"`` (SpeechBrain's ECAPA ``Classifier``) or ``"linear"``.

    Example
    -------
    >>> classification_head("cosine", 8, 3)(torch.rand(2, 1, 8)).abs().max() <= 1.0
    tensor(True)
    >>> type(classification_head("linear", 8, 3)).__name__
    'LinearClassifier'
    """
    _check_head_type(head_type)
    if head_type == "cosine":
        return Classifier(input_size=input_size, lin_blocks=0, out_neurons=out_neurons)
    return LinearClassifier(input_size=input_size, out_neurons=out_neurons)


def score_rows(head, embeddings):
    """A classification head's scores for embeddings with any leading shape: [..., emb] -> [..., n_classes].

    The heads take SpeechBrain's [n, 1, emb] (SpeechBrain's cosine ``Classifier`` would
    misread [batch, rows, emb]), so the rows are scored one at a time in one pass.

    Example
    -------
    >>> head = classification_head("linear", input_size=4, out_neurons=3)
    >>> score_rows(head, torch.rand(2, 5, 4)).shape
    torch.Size([2, 5, 3])
    """
    flat = embeddings.reshape(-1, 1, embeddings.shape[-1])
    return head(flat)[:, 0].reshape(*embeddings.shape[:-1], -1)


def head_logits(head_type, margin, scale):
    """The ``loss_fn`` of ``LogSoftmaxWrapper`` matching a head type.

    ``"cosine"``: SpeechBrain's ``AdditiveAngularMargin(margin, scale)``.
    ``"linear"``: :class:`PlainLogits` (``margin`` and ``scale`` have no meaning there).
    """
    _check_head_type(head_type)
    if head_type == "cosine":
        return AdditiveAngularMargin(margin=margin, scale=scale)
    return PlainLogits()


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
