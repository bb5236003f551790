"""Front ends: the transform layer's filter grids, gradients and shapes; global normalisation;
every system's level-relative floor (``dynamic_range_db``)."""

import os

import pytest
import torch

from timbre_lobes.lobes.frontend import GlobalNormalization, TransformLayer, midi_to_hz

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


# --- dynamic_range_db in every system's front end, built from its YAML -----------------------------

SYSTEMS = ("melspec", "transMel", "transMIDI", "leaf", "xvector", "ecapa")


def yaml_front_end(system, tmp_path, dynamic_range_db):
    """The ``compute_features`` of ``hparams/<system>.yaml`` at small sizes (40 filters, 25 ms, 20 ms hop)."""
    from hyperpyyaml import load_hyperpyyaml

    overrides = {"output_folder": str(tmp_path), "n_filters": 40, "win_ms": 25, "hop_ms": 20}
    if system == "transMIDI":
        overrides["lowest_note"] = 40  # E2..G5: the test note's harmonics
    with open(os.path.join(REPO, "hparams", f"{system}.yaml")) as handle:
        hparams = load_hyperpyyaml(handle, dict(overrides, dynamic_range_db=dynamic_range_db))
    return hparams["compute_features"].eval()


def clean_note(seconds=1.0, peak=0.5):
    """A decaying 220 Hz harmonic tone with digitally silent (exact-zero) lead-in and tail, as rendered notes have."""
    t = torch.arange(int(16000 * seconds)) / 16000
    note = sum(torch.sin(2 * torch.pi * 220 * k * t) / k for k in range(1, 6)) * torch.exp(-4 * t)
    note = peak * note / note.abs().max()
    note[: len(t) // 10] = 0.0
    note[3 * len(t) // 4 :] = 0.0
    return note


def relative_change(feats, reference):
    """Mean absolute change, in units of the reference features' standard deviation."""
    return float((feats - reference).abs().mean() / reference.std())


@pytest.mark.parametrize("system", SYSTEMS)
def test_dynamic_range_floor_hides_a_noise_floor(system, tmp_path):
    torch.manual_seed(0)
    note = clean_note()
    noisy = note + 10 ** (-70 / 20) * torch.randn(len(note))  # white noise at -70 dBFS
    changes = {}
    for dynamic_range_db in (None, 60):
        front_end = yaml_front_end(system, tmp_path, dynamic_range_db)
        with torch.no_grad():
            changes[dynamic_range_db] = relative_change(front_end(noisy[None]), front_end(note[None]))
    assert changes[60] < 0.02, changes
    if system == "leaf":
        # SpeechBrain's LEAF already hides it, under its pooling's learnable bias (an absolute
        # energy floor, 15-20 dB under a full-scale sine at initialisation): no margin to win here.
        assert changes[None] < 0.02, changes
    else:
        # Absolute log energies: the noise fills the silent stretches and bands (measured 0.23-0.45).
        assert changes[None] > 0.1 and changes[60] < 0.1 * changes[None], changes


@pytest.mark.parametrize("system", SYSTEMS)
def test_dynamic_range_floor_ignores_gain(system, tmp_path):
    note = clean_note()
    front_end = yaml_front_end(system, tmp_path, 60)
    with torch.no_grad():
        feats, quieter = front_end(note[None]), front_end(0.1 * note[None])  # -20 dB
        plain = yaml_front_end(system, tmp_path, None)
        plain_change = relative_change(plain(0.1 * note[None]), plain(note[None]))
    assert float((quieter - feats).abs().max() / feats.std()) < 1e-4
    assert plain_change > 0.1  # without the floor a gain moves every system's features


@pytest.mark.parametrize("dynamic_range_db", [None, 60])
@pytest.mark.parametrize("system", SYSTEMS)
def test_front_end_rows_do_not_depend_on_batch_neighbours(system, dynamic_range_db, tmp_path):
    # A row's floor is its own clip's maximum (also SpeechBrain's 80 dB top_db, per clip), never
    # the batch's. The note ends in digital silence, so its zero padding changes no frame either.
    torch.manual_seed(0)
    note = clean_note()
    batch = torch.zeros(3, 24000)
    batch[0] = 0.9 * torch.randn(24000).clamp(-1, 1)  # louder and longer
    batch[1, : len(note)] = note
    batch[2, :8000] = 0.01 * torch.randn(8000)
    front_end = yaml_front_end(system, tmp_path, dynamic_range_db)
    with torch.no_grad():
        alone = front_end(note[None])[0]
        together = front_end(batch)[1, : alone.shape[0]]
    # Float noise of a batched convolution's summation order only (a few ulps of the features'
    # magnitude: LEAF's near-constant output once differed by 2e-7 at 0.32, 1.2e-5 of its std);
    # a batch-wide floor would move whole frames by decibels.
    assert float((together - alone).abs().max() / alone.abs().max()) < 1e-5


def test_fbank_and_leaf_without_floor_are_speechbrains():
    from speechbrain.lobes import features as sb_features

    from timbre_lobes.lobes.frontend import Fbank, Leaf

    torch.manual_seed(0)
    wavs = torch.randn(2, 8000) * torch.tensor([[1.0], [1e-3]])
    args = {"sample_rate": 16000, "n_fft": 512, "win_length": 25, "hop_length": 20, "n_mels": 40}
    assert torch.equal(Fbank(**args)(wavs), sb_features.Fbank(**args)(wavs))
    args = {"out_channels": 8, "window_len": 25.0, "window_stride": 20.0, "in_channels": 1, "min_freq": 30.0}
    ours, theirs = Leaf(**args), sb_features.Leaf(**args)
    theirs.load_state_dict(ours.state_dict())
    with torch.no_grad():
        assert torch.equal(ours(wavs), theirs(wavs))
    with pytest.raises(ValueError, match="dynamic_range_db"):
        Fbank(dynamic_range_db=-10)
    with pytest.raises(ValueError, match="dynamic_range_db"):
        Leaf(**args, dynamic_range_db=0)


def test_leaf_floor_keeps_gradients_on_the_filters():
    from timbre_lobes.lobes.frontend import Leaf

    leaf = Leaf(out_channels=8, window_len=25.0, window_stride=20.0, in_channels=1, dynamic_range_db=60)
    leaf(torch.randn(2, 4000)).pow(2).mean().backward()
    grads = [p.grad for p in leaf.complex_conv.parameters()]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_global_normalisation_std_floor_bounds_a_band_that_never_varied_in_training():
    """A band constant in training: without the floor a 1e-3 change there is huge once normalised; with it, small."""
    torch.manual_seed(0)
    train = torch.cat([torch.randn(8, 50, 5), torch.full((8, 50, 1), -13.8)], dim=2)  # band 5 at the floor
    plain, floored = GlobalNormalization(), GlobalNormalization(std_floor=0.1)
    for norm in (plain, floored):
        norm.train()
        norm(train, torch.ones(8), epoch=0)
        norm.eval()
    test = train[:2].clone()
    test[..., 5] += 1e-3  # quantisation noise lifts the floored band a little
    assert float(plain(test, torch.ones(2))[..., 5].abs().min()) > 100
    assert float(floored(test, torch.ones(2))[..., 5].abs().max()) < 0.05
    # The bands that varied in training are normalised exactly as without the floor.
    torch.testing.assert_close(floored(test, torch.ones(2))[..., :5], plain(test, torch.ones(2))[..., :5])
    with pytest.raises(ValueError, match="std_floor"):
        GlobalNormalization(std_floor=-1)
