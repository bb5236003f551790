"""Transform layer: initial filter grids, gradients, shapes; global normalisation."""

import pytest
import torch

from timbre_lobes.lobes.frontend import GlobalNormalization, TransformLayer, midi_to_hz


def test_midi_init_centres_are_equal_tempered_notes():
    layer = TransformLayer(out_channels=122, init_type="midi", min_low_hz=5.0, min_band_hz=5.0)
    low, high = layer.band_edges()
    notes = torch.arange(122, dtype=torch.float64)
    expected = 440.0 * 2 ** ((notes - 69) / 12)
    # Bands wide enough to exceed min_band_hz and below Nyquist keep their exact edges.
    exact = (high - low > 5.0 + 1e-3) & (high < 8000 * 0.999 - 1e-3)
    assert exact.sum() > 80
    centre = (low.double() * high.double()).sqrt()
    torch.testing.assert_close(centre[exact], expected[exact], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(low[exact].double(), midi_to_hz(notes[exact] - 1), rtol=1e-4, atol=1e-3)


def test_midi_init_respects_nyquist_and_minimum_band():
    low, high = TransformLayer(out_channels=122, init_type="midi").band_edges()
    assert bool((high <= 8000).all())
    assert bool((high - low >= 5.0 - 1e-4).all())
    assert bool((low[1:] >= low[:-1]).all()), "filters must stay in pitch order"


def test_mel_init_is_mel_spaced():
    layer = TransformLayer(out_channels=40, init_type="mel", min_low_hz=5.0, min_band_hz=5.0)
    low, _ = layer.band_edges()
    low = low.detach().double()
    # SincConv stores mel-spaced edges from min_low_hz and adds min_low_hz when filtering.
    mel = 2595 * torch.log10(1 + (low - 5.0) / 700)
    steps = mel[1:] - mel[:-1]
    torch.testing.assert_close(steps, torch.full_like(steps, float(steps.mean())), rtol=1e-3, atol=1e-3)
    # And it is not the MIDI grid.
    midi_low, _ = TransformLayer(out_channels=40, init_type="midi").band_edges()
    assert not torch.allclose(low, midi_low.detach().double())


@pytest.mark.parametrize("output", ["signed", "log_energy"])
@pytest.mark.parametrize("n_samples", [4000, 4001, 4191])
def test_shapes_odd_and_even_lengths(output, n_samples):
    layer = TransformLayer(out_channels=16, kernel_size=101, stride=64, output=output)
    out = layer(torch.randn(3, n_samples))
    assert out.shape == (3, -(-n_samples // 64), 16)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("output", ["signed", "log_energy"])
def test_gradients_reach_band_parameters(output):
    layer = TransformLayer(out_channels=16, kernel_size=101, stride=64, init_type="midi", output=output, lowest_note=40)
    layer(torch.randn(2, 3000)).pow(2).mean().backward()
    assert layer.low_hz_.grad is not None and layer.low_hz_.grad.abs().sum() > 0
    assert layer.band_hz_.grad is not None and layer.band_hz_.grad.abs().sum() > 0


def test_log_energy_peaks_at_the_filter_of_the_played_note():
    # A pure A4 must excite the A4 filter (MIDI 69) the most, a pure A5 the A5 filter.
    layer = TransformLayer(out_channels=122, init_type="midi")
    t = torch.arange(16000) / 16000
    for note in (69, 81):
        tone = torch.sin(2 * torch.pi * float(midi_to_hz(torch.tensor(float(note)))) * t)
        energy = layer(tone.unsqueeze(0))[0, 20:-20].mean(dim=0)
        assert int(energy.argmax()) == note


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="init_type"):
        TransformLayer(init_type="bark")
    with pytest.raises(ValueError, match="output"):
        TransformLayer(output="magnitude")
    with pytest.raises(ValueError, match="odd"):
        TransformLayer(kernel_size=800)
    with pytest.raises(ValueError, match="batch, samples"):
        TransformLayer(out_channels=8, kernel_size=11, stride=4)(torch.randn(2, 100, 1))


def test_global_normalisation_uses_dataset_statistics_not_per_note():
    norm = GlobalNormalization()
    quiet = torch.zeros(2, 10, 3)
    loud = torch.ones(2, 10, 3) * 4
    batch = torch.cat([quiet, loud])
    out = norm(batch, torch.ones(4))
    # Per-note normalisation would map both notes to zero; global keeps them apart.
    assert out[:2].mean() < -0.5 < 0.5 < out[2:].mean()


def test_dynamic_range_makes_log_energies_level_relative_and_floored():
    torch.manual_seed(0)
    layer = TransformLayer(out_channels=40, kernel_size=401, stride=160, dynamic_range_db=60)
    t = torch.arange(16000) / 16000
    tone = 0.5 * torch.sin(2 * torch.pi * 440 * t) * torch.exp(-3 * t)
    tone[12000:] = 0.0  # a digitally silent tail, as rendered notes have
    feats = layer(tone[None])
    floor = -60 * torch.log(torch.tensor(10.0)) / 10
    assert feats.max().item() == pytest.approx(0.0, abs=1e-6) and feats.min().item() == pytest.approx(floor.item())
    # A gain changes nothing; white noise at -70 dBFS lies under the floor almost everywhere.
    assert torch.allclose(layer((0.1 * tone)[None]), feats, atol=1e-4)
    noisy = tone + 10 ** (-70 / 20) * torch.randn(16000)
    assert (layer(noisy[None]) - feats).abs().mean() < 0.05
    # Without it (the default): absolute log energies, which the same noise moves a lot.
    plain = TransformLayer(out_channels=40, kernel_size=401, stride=160)
    assert (plain(noisy[None]) - plain(tone[None])).abs().mean() > 1.0
    with pytest.raises(ValueError, match="dynamic_range_db"):
        TransformLayer(out_channels=8, kernel_size=101, stride=160, dynamic_range_db=0)
