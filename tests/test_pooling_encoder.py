"""LDE pooling and the ResNet-LDE encoder."""

import pytest
import torch

from timbre_lobes.lobes.encoder import ResNetLDE, ResNetTrunk
from timbre_lobes.lobes.pooling import LDEPooling


def test_lde_output_shape_and_dim():
    pool = LDEPooling(in_channels=12, n_components=8)
    assert pool(torch.randn(3, 20, 12)).shape == (3, 96)
    assert pool.get_out_dim() == 96


def test_lde_padding_changes_nothing():
    torch.manual_seed(0)
    pool = LDEPooling(in_channels=6, n_components=4)
    short = torch.randn(1, 7, 6)
    long = torch.randn(1, 20, 6)
    padded = torch.zeros(2, 20, 6)
    padded[0, :7] = short[0]
    padded[0, 7:] = 100.0  # garbage in the padding must not leak in
    padded[1] = long[0]
    out = pool(padded, torch.tensor([7 / 20, 1.0]))
    torch.testing.assert_close(out[0], pool(short)[0])
    torch.testing.assert_close(out[1], pool(long)[0])


def test_lde_is_invariant_to_frame_order():
    torch.manual_seed(1)
    pool = LDEPooling(in_channels=5, n_components=3)
    x = torch.randn(2, 15, 5)
    perm = torch.randperm(15)
    torch.testing.assert_close(pool(x), pool(x[:, perm]))


def test_lde_components_and_smoothing_learn():
    pool = LDEPooling(in_channels=4, n_components=3)
    pool(torch.randn(2, 10, 4)).pow(2).sum().backward()
    assert pool.components.grad.abs().sum() > 0
    assert pool.smoothing.grad.abs().sum() > 0


def test_lde_differs_between_different_inputs():
    pool = LDEPooling(in_channels=4, n_components=2)
    assert not torch.allclose(pool(torch.randn(1, 10, 4)), pool(torch.randn(1, 10, 4) + 3))


def test_trunk_paper_configuration_downsamples_by_8():
    trunk = ResNetTrunk()  # ResNet-34 thin: [3, 4, 6, 3] blocks, 16..128 channels
    assert [len(stage) for stage in trunk.stages] == [3, 4, 6, 3]
    assert trunk.out_channels == 128 and trunk.downsampling == 8
    assert trunk.out_bins(122) == 16


@pytest.mark.parametrize("collapse", ["flatten", "mean"])
@pytest.mark.parametrize("bins", [40, 37])
def test_encoder_accepts_any_bins_and_returns_batch_1_emb(collapse, bins):
    enc = ResNetLDE(
        in_bins=bins, channels=(4, 8, 8), blocks=(1, 1, 1), strides=(1, 2, 2), lin_neurons=24, freq_collapse=collapse
    )
    enc.eval()
    assert enc(torch.randn(2, 33, bins)).shape == (2, 1, 24)


def test_encoder_honours_relative_lengths():
    torch.manual_seed(2)
    enc = ResNetLDE(in_bins=16, channels=(4, 8), blocks=(1, 1), strides=(1, 2), lin_neurons=8).eval()
    x = torch.randn(1, 40, 16)
    padded = torch.cat([x, torch.randn(1, 24, 16) * 50], dim=1)
    with torch.no_grad():
        full = enc(x)
        masked = enc(padded, torch.tensor([40 / 64]))
    # Convolutions see the padding at the boundary only; pooling ignores it.
    assert torch.nn.functional.cosine_similarity(full, masked, dim=-1).item() > 0.95


def test_encoder_rejects_unknown_collapse():
    with pytest.raises(ValueError, match="freq_collapse"):
        ResNetLDE(in_bins=8, freq_collapse="max")
