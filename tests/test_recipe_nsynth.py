"""End to end: each paper system trains one epoch on the tiny corpus and evaluates."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO
from hyperpyyaml import load_hyperpyyaml

#: The tiny sizes every end-to-end test trains with (the tiny corpus's 1 s notes).
TINY_SIZES = [
    "--eval_batch_size=16",
    "--num_workers=0",
    "--crop_seconds=0.5",
    "--crop_max_start=0.5",
    "--n_filters=40",
    "--resnet_channels=[4,8]",
    "--resnet_blocks=[1,1]",
    "--resnet_strides=[1,2]",
    "--emb_dim=32",
    "--enrolments_per_instrument=4",
    "--targets_per_note=4",
    "--nontargets_per_note=4",
]
TINY = ["--number_of_epochs=1", "--batch_size=8", *TINY_SIZES]


def run_recipe(system, data, out, *extra, expect_fail=False):
    """Runs train.py as a user would; asserts it succeeded (or, with ``expect_fail``, that it failed)."""
    cmd = [
        sys.executable,
        os.path.join(REPO, "recipes", "NSynth", "train.py"),
        os.path.join(REPO, "hparams", f"{system}.yaml"),
        f"--data_folder={data}",
        f"--output_folder={out}",
        *TINY,
        *extra,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert (proc.returncode != 0) == expect_fail, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize("system", ["melspec", "transMel", "transMIDI"])
def test_system_trains_and_evaluates(system, tiny_corpus, tmp_path):
    out = tmp_path / system
    proc = run_recipe(system, tiny_corpus, out)
    results = json.loads((out / "results.json").read_text())
    assert results["system"] == system
    assert 0.0 <= results["EER"] <= 100.0 and 0.0 <= results["family_micro_f1"] <= 1.0
    assert results["n_target_trials"] > 0 and results["n_nontarget_trials"] > 0
    assert results["n_notes"] == 48  # 4 test instruments x 12 notes
    assert results["n_train_instruments"] == 6
    assert sum(map(sum, results["family_confusion"])) == 48
    for name in (
        "train_log.txt",
        "family_confusion.png",
        "hyperparams.yaml",
        "save/train.csv",
        "save/test_trials.txt",
        "save/instrument_encoder.txt",
    ):
        assert (out / name).exists(), name
    assert any(d.startswith("CKPT") for d in os.listdir(out / "save"))
    assert f"| {system} |" in proc.stdout


def test_rerun_reloads_the_checkpoint_and_reproduces_results(tiny_corpus, tmp_path):
    out = tmp_path / "rerun"
    run_recipe("transMIDI", tiny_corpus, out)
    first = json.loads((out / "results.json").read_text())
    proc = run_recipe("transMIDI", tiny_corpus, out)
    second = json.loads((out / "results.json").read_text())
    assert "Loading a checkpoint" in proc.stdout + proc.stderr
    # Nothing is trained again: the reloaded best model gives the same test figures.
    assert "Going into epoch" not in proc.stdout + proc.stderr
    for key in ("EER", "minDCF", "family_micro_f1", "family_macro_f1"):
        assert second[key] == pytest.approx(first[key], abs=1e-6)


@pytest.mark.parametrize("system", ["melspec", "transMel", "transMIDI", "leaf", "xvector", "ecapa"])
def test_augment_prob_is_one_switch_for_every_system(system):
    with open(os.path.join(REPO, "hparams", f"{system}.yaml")) as fin:
        hparams = load_hyperpyyaml(fin, {"augment_prob": 0.0})
    augmenter = hparams["wav_augment"]
    assert augmenter.augment_prob == 0.0
    wavs = torch.randn(4, 1600)
    out, lens = augmenter(wavs, torch.ones(4))
    # Off means the batch and its labels pass through untouched.
    assert torch.equal(out, wavs)
    labels = torch.arange(4).unsqueeze(1)
    assert torch.equal(augmenter.replicate_labels(labels), labels)


def test_linear_heads_train_export_and_load(tiny_corpus, tmp_path):
    """--head_type=linear: plain softmax heads train, export and give family probabilities."""
    import numpy as np

    from timbre_lobes.lobes.heads import LinearClassifier
    from timbre_lobes.serving.inference import TimbreEncoder

    out = tmp_path / "linear"
    run_recipe("transMel", tiny_corpus, out, "--head_type=linear")
    results = json.loads((out / "results.json").read_text())
    assert results["n_notes"] == 48
    model = TimbreEncoder.from_hparams(source=str(out / "model"), run_opts={"device": "cpu"})
    assert isinstance(model.mods.family_head, LinearClassifier)
    assert isinstance(model.mods.instrument_head, LinearClassifier)
    assert model.mods.instrument_head.weight.shape[0] == 6
    # Logits of a linear head are used as they are: no cosine scale.
    assert model.family_scale == 1.0
    emb = np.random.RandomState(0).randn(3, 32).astype("float32")
    probs = model.family_probabilities(emb)
    assert probs.shape == (3, 11) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    inst = model.instrument_probabilities(emb)
    logits = model.mods.instrument_head(torch.from_numpy(emb).unsqueeze(1))[:, 0].detach()
    np.testing.assert_allclose(inst, torch.softmax(logits, dim=-1).numpy(), atol=1e-6)
    assert "timbre_lobes.lobes.heads.classification_head" in (out / "model" / "hyperparams.yaml").read_text()


def test_unknown_head_type_is_a_clear_error():
    with open(os.path.join(REPO, "hparams", "transMel.yaml")) as fin:
        with pytest.raises(ValueError, match="head_type must be one of"):
            load_hyperpyyaml(fin, {"head_type": "softmax"})


@pytest.mark.parametrize("system,bins", [("melspec", 128), ("transMel", 122), ("transMIDI", 122)])
def test_yaml_defaults_are_the_papers_sizes_and_take_a_training_step(system, bins, tmp_path):
    """No size override: the paper's sizes, and one forward/backward of the whole model on 1 s crops."""
    with open(os.path.join(REPO, "hparams", f"{system}.yaml")) as fin:  # its checkpointer makes a folder
        hp = load_hyperpyyaml(fin, {"output_folder": str(tmp_path / "out")})
    assert (hp["n_filters"], hp["emb_dim"], hp["lde_components"]) == (bins, 512, 8)
    assert hp["resnet_blocks"] == [3, 4, 6, 3] and hp["resnet_channels"] == [16, 32, 64, 128]
    assert (hp["batch_size"], hp["number_of_epochs"], hp["head_type"]) == (128, 30, "cosine")
    assert hp["family_weight"] > 0  # the paper's released config trained no family head
    if system == "transMIDI":
        low, high = hp["compute_features"].band_edges()
        assert low.shape == (122,)
        assert (low[69] * high[69]).sqrt().item() == pytest.approx(440.0, rel=1e-3)  # A4 = MIDI 69
    torch.manual_seed(0)
    wavs = 0.1 * torch.randn(2, 16000)
    lens = torch.ones(2)
    feats = hp["compute_features"](wavs)
    assert feats.shape[-1] == bins
    feats = hp["mean_var_norm"](feats, lens, epoch=1)
    emb = hp["embedding_model"](feats, lens)
    assert emb.shape == (2, 1, 512)
    instrument_head = hp["instrument_head"](out_neurons=5)
    family_head = hp["family_head"](out_neurons=11)  # both heads are sized by the label files
    families, instruments = torch.tensor([[0], [3]]), torch.tensor([[1], [4]])
    loss = hp["instrument_loss"](instrument_head(emb), instruments) + hp["family_weight"] * hp["family_loss"](
        family_head(emb), families
    )
    loss.backward()
    for name, module in [
        ("embedding", hp["embedding_model"]),
        ("family head", family_head),
        ("instrument head", instrument_head),
    ]:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters()), name
