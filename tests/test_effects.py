"""Audio-effect augmentation (timbre_lobes.data.effects) and its YAML wiring in every system."""

import os

import numpy as np
import pedalboard
import pytest
import torch
from conftest import REPO
from hyperpyyaml import load_hyperpyyaml

from timbre_lobes.data.effects import AudioEffect

SYSTEMS = ["melspec", "transMel", "transMIDI", "leaf", "xvector", "ecapa"]
EFFECT_KEYS = ["reverb", "equaliser", "lowpass", "compressor", "distortion"]


def _note(n=8000, sample_rate=16000, hz=440.0):
    t = torch.arange(n) / sample_rate
    return 0.3 * torch.sin(2 * torch.pi * hz * t) * torch.exp(-3 * t)


def test_fixed_parameters_give_pedalboards_own_output_row_by_row():
    """A row in a padded batch gets exactly what pedalboard gives that row alone, at its own length."""
    effect = AudioEffect("Reverb", 16000, {"room_size": 0.7, "wet_level": 0.5, "dry_level": 0.5})
    short, full = _note(4000), _note(8000, hz=220.0)
    batch = torch.stack([torch.cat([short, torch.zeros(4000)]), full])
    out = effect(batch, torch.tensor([0.5, 1.0]))
    reference = pedalboard.Reverb(room_size=0.7, wet_level=0.5, dry_level=0.5)
    expected_short = reference(short.numpy(), 16000.0)
    np.testing.assert_allclose(out[0, :4000].numpy(), expected_short, atol=1e-6)
    assert torch.all(out[0, 4000:] == 0)  # the reverb's tail does not spill into the padding
    np.testing.assert_allclose(out[1].numpy(), reference(full.numpy(), 16000.0), atol=1e-6)
    assert not torch.allclose(out[1], full, atol=1e-3)  # the effect did something


def test_parameters_are_drawn_per_example_and_follow_torchs_seed():
    effect = AudioEffect(
        "PeakFilter",
        16000,
        {"cutoff_frequency_hz": [200, 4000], "gain_db": [-12, 12], "q": 1.0},
        log_scale=["cutoff_frequency_hz"],
    )
    batch = _note().repeat(3, 1)
    torch.manual_seed(3)
    first = effect(batch, torch.ones(3))
    torch.manual_seed(3)
    again = effect(batch, torch.ones(3))
    torch.manual_seed(4)
    other = effect(batch, torch.ones(3))
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)
    # Three identical rows, three draws: the rows differ from each other.
    assert not torch.allclose(first[0], first[1]) and not torch.allclose(first[1], first[2])


def test_log_scale_draws_cover_the_range_evenly_in_octaves():
    effect = AudioEffect(
        "LowpassFilter", 16000, {"cutoff_frequency_hz": [100, 10000]}, log_scale=["cutoff_frequency_hz"]
    )
    torch.manual_seed(0)
    draws = np.array([effect._draw()["cutoff_frequency_hz"] for _ in range(2000)])
    assert draws.min() >= 100 and draws.max() <= 10000
    # Uniform in log: about half the draws below the geometric mid-point (1 kHz), not ~10 %.
    assert 0.45 < np.mean(draws < 1000) < 0.55


@pytest.mark.parametrize(
    "args,message",
    [
        (("NoSuchEffect", 16000, {}), "no effect"),
        (("Plugin", 16000, {}), "no effect"),
        (("Reverb", 16000, {"room_sise": [0.1, 0.5]}), "room_sise"),
        (("Reverb", 16000, {"room_size": [0.9, 0.1]}), "low 0.9 > high 0.1"),
        (("LowpassFilter", 16000, {"cutoff_frequency_hz": [0, 100]}, ["cutoff_frequency_hz"]), "positive"),
        (("LowpassFilter", 16000, {"cutoff_frequency_hz": 100}, ["q"]), "without a range"),
    ],
)
def test_bad_configuration_fails_at_construction(args, message):
    with pytest.raises(ValueError, match=message):
        AudioEffect(*args)


@pytest.mark.parametrize("system", SYSTEMS)
def test_every_system_has_the_effects_off_by_default_and_each_effect_works(system):
    path = os.path.join(REPO, "hparams", f"{system}.yaml")
    with open(path) as fin:
        hparams = load_hyperpyyaml(fin)
    wavs = torch.stack([_note(), _note(hz=330.0)])
    lens = torch.ones(2)
    out, _ = hparams["audio_effects"](wavs, lens)
    assert hparams["effects_prob"] == 0.0 and torch.equal(out, wavs)  # off: untouched
    assert hparams["noise_floor_prob"] == 0.0 and hparams["quantise_prob"] == 0.0
    assert torch.equal(hparams["quantisation"](wavs, lens)[0], wavs)
    with open(path) as fin:
        hparams = load_hyperpyyaml(fin, {"effects_prob": 1.0, "quantise_prob": 1.0})
    crushed, crushed_lens = hparams["quantisation"](wavs * 0.1, lens)
    step = 2.0**-5  # the coarsest of bit depths 6 to 12: at most about half a 6-bit step from the input
    error = (crushed - wavs * 0.1).abs()
    assert torch.equal(crushed_lens, lens) and 0 < error.max() <= step and crushed.shape == wavs.shape
    out, out_lens = hparams["audio_effects"](wavs, lens)
    assert out.shape == wavs.shape and torch.equal(out_lens, lens)  # one output per input: labels unchanged
    assert not torch.allclose(out, wavs, atol=1e-4)
    for key in EFFECT_KEYS:
        changed = hparams[key](wavs, lens)
        assert changed.shape == wavs.shape and torch.isfinite(changed).all()
        assert not torch.allclose(changed, wavs, atol=1e-5), key
