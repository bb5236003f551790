"""The export's label spaces come from the data: a Brain-less export of tiny untrained modules.

No training here: the modules are built from a tiny resolved "training" YAML, the
family head sized by a made-up 3-family label space, and exported with
``export_model`` (any object with ``modules`` and ``device`` stands for the Brain).
"""

import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.encoder import CategoricalEncoder

from timbre_lobes.__main__ import main
from timbre_lobes.data.nsynth_labels import FAMILIES
from timbre_lobes.lobes.embed import embed_waveforms
from timbre_lobes.scoring.evaluation import family_scores, plot_confusion
from timbre_lobes.serving import export
from timbre_lobes.serving.inference import TimbreEncoder
from timbre_lobes.serving.inference_yaml import training_definitions

RATE = 16000
MADE_UP_FAMILIES = ["plucked", "blown", "struck"]  # not NSynth's, not in sorted order
INSTRUMENTS = ["harp_000", "flute_001", "gong_002", "zither_003"]

#: A run's resolved training YAML (references substituted): tiny transMel-like modules,
#: both heads defined with !name: (sized at run time by their label spaces).
TINY_YAML = """\
system: tiny
sample_rate: 16000
compute_features: !new:timbre_lobes.lobes.frontend.TransformLayer
    out_channels: 8
    kernel_size: 101
    stride: 160
mean_var_norm: !new:timbre_lobes.lobes.frontend.GlobalNormalization
embedding_model: !new:timbre_lobes.lobes.encoder.ResNetLDE
    in_bins: 8
    channels: [4, 8]
    blocks: [1, 1]
    strides: [1, 2]
    lde_components: 2
    lin_neurons: 16
family_head: !name:timbre_lobes.lobes.heads.classification_head
    head_type: cosine
    input_size: 16
instrument_head: !name:timbre_lobes.lobes.heads.classification_head
    head_type: cosine
    input_size: 16
"""

RESULTS = {
    "EER": 25.0,
    "minDCF": 0.75,
    "eer_threshold": 0.4,
    "family_micro_f1": 0.5,
    "family_macro_f1": 0.5,
    "data_folder": "made-up-corpus",
}


def _encoder(labels):
    encoder = CategoricalEncoder()
    encoder.update_from_iterable(labels)
    return encoder


class _Modules:
    """Stands for a Brain: ``modules`` and ``device`` are all ``export_model`` uses."""

    def __init__(self, modules):
        self.modules = torch.nn.ModuleDict(modules)
        self.device = "cpu"


def _tiny_run(folder, yaml_text=TINY_YAML, n_families=3):
    """A run folder holding the resolved YAML, and its modules (heads sized by the label spaces)."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "hyperparams.yaml")
    with open(path, "w") as handle:
        handle.write(yaml_text)
    torch.manual_seed(0)
    hp = load_hyperpyyaml(yaml_text)
    modules = {k: hp[k] for k in ("compute_features", "mean_var_norm", "embedding_model")}
    family_head = hp["family_head"]
    modules["family_head"] = (
        family_head if isinstance(family_head, torch.nn.Module) else family_head(out_neurons=n_families)
    )
    modules["instrument_head"] = hp["instrument_head"](out_neurons=len(INSTRUMENTS))
    # One training-mode pass gives the normalisation real global statistics to export.
    embed_waveforms(modules, torch.randn(4, RATE), torch.ones(4), epoch=0)
    for module in modules.values():
        module.eval()
    hparams = {"output_folder": str(folder), "system": "tiny", "sample_rate": RATE}
    return hparams, modules


@pytest.fixture(scope="module")
def made_up_export(tmp_path_factory):
    """An export of tiny modules whose family head predicts 3 made-up families."""
    root = tmp_path_factory.mktemp("made_up")
    hparams, modules = _tiny_run(str(root / "run"))
    folder = export.export_model(
        hparams,
        _Modules(modules),
        _encoder(INSTRUMENTS),
        RESULTS,
        root / "model",
        family_encoder=_encoder(MADE_UP_FAMILIES),
    )
    return folder, modules


@pytest.fixture(scope="module")
def sounds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sounds")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        path = str(folder / f"sound{i}.wav")
        tone = 0.4 * np.sin(2 * np.pi * (220 * (i + 1)) * np.arange(RATE) / RATE)
        sf.write(path, tone + 0.01 * rng.standard_normal(RATE), RATE)
        paths.append(path)
    return paths


def _label_lines(path):
    """The ``'label' => index`` lines of a CategoricalEncoder file (before its ``=====`` separator)."""
    lines = []
    for line in open(path).read().splitlines():
        if line.startswith("="):
            break
        lines.append(line)
    return lines


def test_export_writes_the_given_family_label_space(made_up_export):
    folder, _ = made_up_export
    assert _label_lines(os.path.join(folder, "family_encoder.txt")) == [
        "'plucked' => 0",
        "'blown' => 1",
        "'struck' => 2",
    ]
    text = open(os.path.join(folder, "hyperparams.yaml")).read()
    # Both !name: heads became built definitions sized by their label spaces.
    assert "family_head: !apply:timbre_lobes.lobes.heads.classification_head" in text
    assert "instrument_head: !apply:timbre_lobes.lobes.heads.classification_head" in text
    family_def = text.split("family_head: !apply:")[1].split("\n\n")[0]
    assert "out_neurons: 3" in family_def
    info = json.load(open(os.path.join(folder, "model_info.json")))
    assert info["family_labels"] == MADE_UP_FAMILIES
    card = open(os.path.join(folder, "README.md")).read()
    assert "the 3 instrument families (plucked, blown, struck)" in card
    assert "NSynth's 11" not in card and "11 instrument families" not in card
    assert not [n for n in os.listdir(os.path.dirname(folder)) if n.startswith(".model.")]


def test_made_up_families_load_and_classify(made_up_export, sounds):
    folder, modules = made_up_export
    model = TimbreEncoder.from_hparams(source=folder, run_opts={"device": "cpu"})
    assert model.family_labels == MADE_UP_FAMILIES
    assert model.instrument_labels == INSTRUMENTS
    model.trim_db = None  # the same samples as the reference below
    names, probs = model.classify_family_files(sounds)
    assert probs.shape == (3, 3) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # The reloaded family head gives the trained modules' answer, named from the export's label space.
    wavs = torch.stack([torch.from_numpy(sf.read(p, dtype="float32")[0]) for p in sounds])
    with torch.no_grad():
        scores = modules["family_head"](embed_waveforms(modules, wavs, torch.ones(3)))[:, 0]
    assert names == [MADE_UP_FAMILIES[i] for i in scores.argmax(dim=-1).tolist()]
    _, _, index, labels = model.classify_batch(wavs)
    assert labels == [MADE_UP_FAMILIES[i] for i in index.tolist()] == names


def test_cli_classify_names_made_up_families(made_up_export, sounds, capsys):
    folder, _ = made_up_export
    main(["classify", *sounds, "--model", folder, "--json"])
    records = json.loads(capsys.readouterr().out)
    assert len(records) == 3
    for record in records:
        assert record["family"] in MADE_UP_FAMILIES
        assert list(record["probabilities"]) == MADE_UP_FAMILIES


def test_family_head_size_must_match_the_family_encoder(tmp_path):
    hparams, modules = _tiny_run(str(tmp_path / "run"))  # a 3-row family head
    with pytest.raises(ValueError, match="family head has 3 rows but the family encoder 11 labels"):
        export.export_model(hparams, _Modules(modules), _encoder(INSTRUMENTS), RESULTS, tmp_path / "model")
    with pytest.raises(ValueError, match="family head has 3 rows but the family encoder 2 labels"):
        export.export_model(
            hparams,
            _Modules(modules),
            _encoder(INSTRUMENTS),
            RESULTS,
            tmp_path / "model",
            family_encoder=_encoder(["plucked", "blown"]),
        )
    with pytest.raises(ValueError, match="instrument head has 4 rows but the instrument encoder 3 labels"):
        export.export_model(
            hparams,
            _Modules(modules),
            _encoder(INSTRUMENTS[:3]),
            RESULTS,
            tmp_path / "model",
            family_encoder=_encoder(MADE_UP_FAMILIES),
        )
    assert sorted(os.listdir(tmp_path)) == ["run"]  # nothing written, nothing left behind


def test_without_a_family_encoder_the_families_are_nsynths(tmp_path):
    """Old callers (no family_encoder=) and old YAMLs (an !apply: family head of 11) export as before."""
    old_yaml = TINY_YAML.replace(
        "family_head: !name:timbre_lobes.lobes.heads.classification_head\n",
        "family_head: !apply:timbre_lobes.lobes.heads.classification_head\n    out_neurons: 11\n",
    )
    hparams, modules = _tiny_run(str(tmp_path / "run"), old_yaml)
    assert modules["family_head"].weight.shape[0] == 11
    folder = export.export_model(hparams, _Modules(modules), _encoder(INSTRUMENTS), RESULTS, tmp_path / "model")
    assert [line.split(" => ")[0].strip("'") for line in _label_lines(os.path.join(folder, "family_encoder.txt"))] == (
        list(FAMILIES)
    )
    text = open(os.path.join(folder, "hyperparams.yaml")).read()
    assert "family_head: !apply:timbre_lobes.lobes.heads.classification_head" in text
    assert "the 11 instrument families (bass, brass, flute," in open(os.path.join(folder, "README.md")).read()
    model = TimbreEncoder.from_hparams(source=folder, run_opts={"device": "cpu"})
    assert model.family_labels == list(FAMILIES)
    assert model.threshold == pytest.approx(RESULTS["eer_threshold"])  # no validation set: the test threshold


def test_training_definitions_size_both_heads(tmp_path):
    path = tmp_path / "hyperparams.yaml"
    path.write_text(TINY_YAML)
    heads = training_definitions(
        str(path), ["family_head", "instrument_head"], {"family_head": 3, "instrument_head": 4}
    )
    assert heads["family_head"].splitlines()[-1] == "    out_neurons: 3"
    assert heads["instrument_head"].splitlines()[-1] == "    out_neurons: 4"
    # The former signature (the instrument head's size alone) still sizes the instrument head.
    assert "out_neurons: 4" in training_definitions(str(path), ["instrument_head"], 4)["instrument_head"]
    with pytest.raises(ValueError, match="family_head: expected a !new: or !apply:"):
        training_definitions(str(path), ["family_head"], 4)  # a !name: head of no known size
    with pytest.raises(ValueError, match="does not define it"):
        training_definitions(str(path), ["pooling"], {})


def test_family_scores_and_confusion_use_the_given_labels(tmp_path):
    scores = family_scores([0, 1, 2, 2], [0, 2, 2, 2], labels=MADE_UP_FAMILIES)
    assert scores["family_confusion"] == [[1, 0, 0], [0, 0, 1], [0, 0, 2]]
    assert scores["families_present"] == MADE_UP_FAMILIES
    assert np.shape(family_scores([0, 1], [0, 1])["family_confusion"]) == (11, 11)  # NSynth's by default
    picture = str(tmp_path / "confusion.png")
    plot_confusion(scores["family_confusion"], picture, title="made up", labels=MADE_UP_FAMILIES)
    assert os.path.getsize(picture) > 0
    with pytest.raises(ValueError, match="3x3 but there are 11 family labels"):
        plot_confusion(scores["family_confusion"], picture)
