"""The training core on data that is not NSynth's: own label spaces, start from an export, extraction."""

import csv
import json
import os
import random
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch
from conftest import REPO, rewrite_examples
from hyperpyyaml import load_hyperpyyaml
from sklearn.metrics import f1_score
from test_recipe_nsynth import TINY, run_recipe

from timbre_lobes import training
from timbre_lobes.lobes.embed import embed_waveforms
from timbre_lobes.serving.extract import LABEL_FIELDS, extract_embeddings
from timbre_lobes.serving.inference import TimbreEncoder

#: Three made-up categories in place of NSynth's families (the tiny corpus has four).
RENAME = {"bass": "winds", "brass": "strings", "flute": "percussion", "guitar": "strings"}
CLASSES = ["percussion", "strings", "winds"]


@pytest.fixture(scope="module")
def three_class_corpus(tiny_corpus, tmp_path_factory):
    """The tiny corpus with its families renamed to three categories NSynth does not have."""
    root = tmp_path_factory.mktemp("three") / "corpus"
    shutil.copytree(tiny_corpus, root)
    rewrite_examples(root, lambda meta: meta.update(instrument_family_str=RENAME[meta["instrument_family_str"]]))
    return root


@pytest.fixture(scope="module")
def nsynth_run(tiny_corpus, tmp_path_factory):
    """A one-epoch tiny transMel run on NSynth-labelled data, exported to ``model/``."""
    out = tmp_path_factory.mktemp("pretrain") / "transMel"
    run_recipe("transMel", tiny_corpus, out)
    return out


def label_file(path):
    encoder = training.load_label_encoder(str(path))
    return [encoder.ind2lab[i] for i in range(len(encoder))]


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_three_made_up_classes_train_evaluate_and_export(three_class_corpus, tmp_path):
    out = tmp_path / "run"
    proc = run_recipe("transMel", three_class_corpus, out, "--closed_set_share=0")
    results = json.loads((out / "results.json").read_text())
    assert results["families_present"] == CLASSES
    # No closed set: every training note trains, and the figures are null, never zeros.
    assert results["closed_set"] is None and "closed set: off" in proc.stdout
    assert read_csv(out / "save" / "closed_set.csv") == [] and len(read_csv(out / "save" / "train.csv")) == 72
    assert not (out / "closed_set_predictions.csv").exists()
    assert 0 <= results["EER_snorm"] <= 100 and results["minDCF_snorm"] <= 1.0  # s-norm against the head's prototypes
    assert np.asarray(results["family_confusion"]).shape == (3, 3)
    # The family head has one row per category, and the export says which.
    model = TimbreEncoder.from_hparams(source=str(out / "model"), run_opts={"device": "cpu"})
    assert model.family_labels == CLASSES
    assert model.mods.family_head(torch.zeros(1, 1, 32)).shape[-1] == 3
    wav = next((three_class_corpus / "nsynth-test" / "audio").iterdir())
    families, probs = model.classify_family_files([str(wav)])
    assert families[0] in CLASSES and probs.shape == (1, 3)
    # Evaluation of the export on the same kind of data uses the same label space.
    from timbre_lobes.scoring.evaluate import evaluate_model

    record = evaluate_model(str(out / "model"), str(three_class_corpus), str(tmp_path / "eval"), verbose=False)
    assert record["families_present"] == CLASSES and record["n_notes"] == 48


def test_start_from_an_export_gives_its_embeddings_before_training(nsynth_run, three_class_corpus, tmp_path):
    """pretrained_model initialises front end, normalisation and encoder; the heads are new and sized by the data."""
    export = nsynth_run / "model"
    overrides = {
        **{arg[2:].split("=")[0]: _value(arg) for arg in TINY},
        "output_folder": str(tmp_path / "ft"),
        "pretrained_model": str(export),
        "freeze_frontend": True,
    }
    with open(os.path.join(REPO, "hparams", "transMel.yaml")) as handle:
        hparams = load_hyperpyyaml(handle, overrides)
    labels = {"instrument": _encoder(["a", "b"]), "family": _encoder(CLASSES)}
    training.add_heads(hparams, labels)
    assert training.initialise_from_pretrained(hparams) is True
    assert hparams["family_head"].weight.shape[0] == 3 and hparams["instrument_head"].weight.shape[0] == 2
    assert not any(p.requires_grad for p in hparams["compute_features"].parameters())
    wavs = 0.1 * torch.randn(3, 16000, generator=torch.Generator().manual_seed(0))
    modules = {k: hparams[k].eval() for k in ("compute_features", "mean_var_norm", "embedding_model")}
    with torch.no_grad():
        mine = embed_waveforms(modules, wavs, torch.ones(3))
    exported = TimbreEncoder.from_hparams(source=str(export), run_opts={"device": "cpu"}).encode_batch(wavs)
    assert torch.allclose(mine, exported, atol=1e-6)


def test_pretrained_heads_load_when_the_labels_are_the_same(nsynth_run, tmp_path):
    """pretrained_heads starts both heads from the export's; other labels are a clear error."""
    export = nsynth_run / "model"
    save = tmp_path / "ft" / "save"

    def hparams_with(instrument_file):
        overrides = {
            **{arg[2:].split("=")[0]: _value(arg) for arg in TINY},
            "output_folder": str(tmp_path / "ft"),
            "pretrained_model": str(export),
        }
        with open(os.path.join(REPO, "hparams", "transMel.yaml")) as handle:
            hparams = load_hyperpyyaml(handle, overrides)
        hparams["pretrained_heads"] = True
        save.mkdir(parents=True, exist_ok=True)
        shutil.copy(export / "family_encoder.txt", save / "family_encoder.txt")
        shutil.copy(instrument_file, save / "instrument_encoder.txt")
        labels = {k: training.load_label_encoder(str(save / f"{k}_encoder.txt")) for k in ("instrument", "family")}
        training.add_heads(hparams, labels)
        return hparams

    hparams = hparams_with(export / "instrument_encoder.txt")
    assert training.initialise_from_pretrained(hparams) is True
    for key in ("instrument_head", "family_head"):
        saved = torch.load(export / f"{key}.ckpt", weights_only=True)
        assert all(torch.equal(saved[k], v) for k, v in hparams[key].state_dict().items())
    names = label_file(export / "instrument_encoder.txt")
    _encoder(list(reversed(names))).save(str(tmp_path / "other.txt"))
    hparams = hparams_with(tmp_path / "other.txt")
    with pytest.raises(ValueError, match="instrument_encoder.txt lists other labels"):
        training.initialise_from_pretrained(hparams)


def test_fine_tune_run_keeps_the_frozen_front_end_and_trains_the_rest(nsynth_run, three_class_corpus, tmp_path):
    out = tmp_path / "ft"
    run_recipe(
        "transMel",
        three_class_corpus,
        out,
        f"--pretrained_model={nsynth_run / 'model'}",
        "--freeze_frontend=True",
    )
    before = {k: torch.load(nsynth_run / "model" / f"{k}.ckpt") for k in ("compute_features", "embedding_model")}
    after = {k: torch.load(out / "model" / f"{k}.ckpt") for k in ("compute_features", "embedding_model")}
    assert all(torch.equal(before["compute_features"][k], v) for k, v in after["compute_features"].items())
    assert any(not torch.equal(before["embedding_model"][k], v) for k, v in after["embedding_model"].items())
    assert label_file(out / "model" / "family_encoder.txt") == CLASSES


def test_a_pretrained_model_of_other_sizes_is_a_clear_error(nsynth_run, tmp_path):
    overrides = {
        **{arg[2:].split("=")[0]: _value(arg) for arg in TINY},
        "emb_dim": 48,
        "output_folder": str(tmp_path / "ft"),
        "pretrained_model": str(nsynth_run / "model"),
    }
    with open(os.path.join(REPO, "hparams", "transMel.yaml")) as handle:
        hparams = load_hyperpyyaml(handle, overrides)
    with pytest.raises(ValueError, match="embedding_model has other sizes"):
        training.initialise_from_pretrained(hparams)


def test_extraction_writes_embeddings_and_labels_and_reuses_them(nsynth_run, shared_nsynth, tmp_path):
    model = TimbreEncoder.from_hparams(source=str(nsynth_run / "model"), run_opts={"device": "cpu"})
    out = tmp_path / "emb"
    first = extract_embeddings(model, shared_nsynth, str(out), progress=False)
    assert not first.reused and first.embeddings.shape == (400, 32)
    assert np.load(out / "embeddings.npy").shape == (400, 32)
    with open(out / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == LABEL_FIELDS and len(rows) == 400
    with open(os.path.join(shared_nsynth, "examples.json")) as handle:
        meta = json.load(handle)
    for row in rows[:50]:
        m = meta[row["id"]]
        assert (row["instrument"], row["family"], row["source"]) == (
            m["instrument_str"],
            m["instrument_family_str"],
            m["instrument_source_str"],
        )
        assert (int(row["pitch"]), int(row["velocity"])) == (m["pitch"], m["velocity"])
        assert row["qualities"] == "".join(map(str, m["qualities"]))
    # Row i of embeddings.npy is the note of row i, embedded alone over the first eval_seconds, as the
    # training run's evaluation read notes (here 1 s: crops of 0.5 s starting within 0.5 s), no trim.
    assert model.eval_seconds == 1.0
    model.max_seconds, model.trim_db = 1.0, None
    single = model.embed_files([rows[7]["path"]])[0]
    assert np.allclose(first.embeddings[7], single, atol=1e-5)
    # A second call reads the files back; a changed examples.json makes it embed again.
    second = extract_embeddings(model, shared_nsynth, str(out), progress=False)
    assert second.reused and np.array_equal(second.embeddings, first.embeddings)
    info = json.loads((out / "extraction.json").read_text())
    info["examples_json"] = [0, 0]
    (out / "extraction.json").write_text(json.dumps(info))
    assert not extract_embeddings(model, shared_nsynth, str(out), progress=False).reused
    # Changed audio under the same examples.json: embedded again, never read back stale.
    copy = tmp_path / "notes"
    shutil.copytree(shared_nsynth, copy)
    assert not extract_embeddings(model, str(copy), str(tmp_path / "emb2"), progress=False).reused
    assert extract_embeddings(model, str(copy), str(tmp_path / "emb2"), progress=False).reused
    (copy / "audio" / f"{rows[3]['id']}.wav").unlink()
    third = extract_embeddings(model, str(copy), str(tmp_path / "emb2"), progress=False)
    assert not third.reused and len(third.labels) == 399 and third.skipped[0][0] == rows[3]["id"]


def _encoder(labels):
    from speechbrain.dataio.encoder import CategoricalEncoder

    encoder = CategoricalEncoder()
    encoder.update_from_iterable(labels)
    return encoder


def _value(arg):
    """The Python value of a ``--key=value`` override, as hyperpyyaml would read it."""
    import yaml

    return yaml.safe_load(arg.split("=", 1)[1])


def _relabelled_copy(corpus, dest, suffix):
    """The corpus with every instrument renamed: other instruments, same audio."""
    shutil.copytree(corpus, dest)
    rewrite_examples(dest, lambda meta: meta.update(instrument_str=meta["instrument_str"] + suffix))
    return dest


def _checkpoints(out):
    return sorted(p.name for p in (out / "save").glob("CKPT+*"))


def test_reusing_an_output_folder_with_other_data_stops_and_says_why(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    run_recipe("melspec", tiny_corpus, out)
    before = _checkpoints(out)
    kept = {
        name: (out / name).read_bytes()
        for name in ("hyperparams.yaml", "save/train.csv", "save/instrument_encoder.txt")
    }
    other = _relabelled_copy(tiny_corpus, tmp_path / "other", "_b")
    proc = run_recipe("melspec", other, out, expect_fail=True)
    # Refused before anything was written: the folder still describes the run its checkpoints come from.
    assert all((out / name).read_bytes() == content for name, content in kept.items())
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "were made with other settings" in proc.stderr
    assert "data folder" in proc.stderr
    assert "--start_over=True" in proc.stderr and "--output_folder" in proc.stderr
    assert _checkpoints(out) == before  # nothing trained, nothing mixed
    # The explicit way out: the old checkpoints go, the run trains from scratch on the new data.
    run_recipe("melspec", other, out, "--start_over=True")
    assert _checkpoints(out) and _checkpoints(out) != before
    results = json.loads((out / "results.json").read_text())
    assert results["data_folder"] == str(other)


def test_changing_a_model_size_into_the_same_folder_names_the_tensors(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    run_recipe("melspec", tiny_corpus, out)
    yaml_before = (out / "hyperparams.yaml").read_bytes()
    proc = run_recipe("melspec", tiny_corpus, out, "--lde_components=4", expect_fail=True)
    assert (out / "hyperparams.yaml").read_bytes() == yaml_before
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "were made with other settings" in proc.stderr
    # LDE's dictionary: 8 components in the checkpoints, 4 now.
    assert re.search(r"embedding_model\.\S+: \(8, \d+\) in the checkpoints, \(4, \d+\) now", proc.stderr)


def test_closed_set_figures_are_the_heads_predictions_on_held_out_training_notes(nsynth_run, tiny_corpus):
    """results.json's closed set: the YAML's share of every training instrument's notes, scored by both heads."""
    closed = json.loads((nsynth_run / "results.json").read_text())["closed_set"]
    held, train = read_csv(nsynth_run / "save" / "closed_set.csv"), read_csv(nsynth_run / "save" / "train.csv")
    assert not {r["ID"] for r in held} & {r["ID"] for r in train}
    # 12 notes per training instrument, closed_set_share 0.1: one held-out note of each of the 6.
    instruments = label_file(nsynth_run / "save" / "instrument_encoder.txt")
    assert sorted(r["instrument"] for r in held) == sorted(instruments) and len(train) == 66
    assert (closed["share"], closed["n_notes"], closed["n_instruments"]) == (0.1, 6, 6)
    assert all(0.0 <= closed[k] <= 1.0 for k in ("instrument_accuracy", "instrument_top5_accuracy"))
    # The same figures, recomputed from the export: each note embedded whole and alone, each head's best rows.
    model = TimbreEncoder.from_hparams(source=str(nsynth_run / "model"), run_opts={"device": "cpu"})
    model.max_seconds, model.trim_db = None, None
    embeddings = model.embed_files([r["wav"].replace("$data_root", str(tiny_corpus)) for r in held])
    instrument_scores = model.instrument_probabilities(embeddings)
    family_pred = [model.family_labels[i] for i in model.family_probabilities(embeddings).argmax(axis=1)]
    truth = [r["instrument"] for r in held]
    top1 = [model.instrument_labels[i] for i in instrument_scores.argmax(axis=1)]
    top5 = [{model.instrument_labels[i] for i in np.argsort(-p)[:5]} for p in instrument_scores]
    assert closed["instrument_accuracy"] == pytest.approx(np.mean([p == t for p, t in zip(top1, truth)]))
    assert closed["instrument_top5_accuracy"] == pytest.approx(np.mean([t in p for p, t in zip(top5, truth)]))
    families = [r["family"] for r in held]
    present = sorted(set(families))
    assert closed["family_micro_f1"] == pytest.approx(f1_score(families, family_pred, average="micro"))
    assert closed["family_macro_f1"] == pytest.approx(
        f1_score(families, family_pred, labels=present, average="macro", zero_division=0)
    )
    # The per-note predictions behind them, and the final log line with both scenarios.
    predictions = {r["ID"]: r for r in read_csv(nsynth_run / "closed_set_predictions.csv")}
    assert [predictions[r["ID"]]["predicted_instrument"] for r in held] == top1
    assert [predictions[r["ID"]]["predicted_family"] for r in held] == family_pred
    last = (nsynth_run / "train_log.txt").read_text().strip().splitlines()[-1]
    assert "test EER" in last and "test closed_set_instrument_accuracy" in last


def test_reusing_an_output_folder_with_another_closed_set_share_stops_and_says_why(nsynth_run, tiny_corpus, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(nsynth_run, out)
    train = (out / "save" / "train.csv").read_bytes()
    proc = run_recipe("transMel", tiny_corpus, out, "--closed_set_share=0.2", expect_fail=True)
    assert "Traceback" not in proc.stderr and "were made with other settings" in proc.stderr
    assert (
        "closed set: closed_set_share 0.1, closed_set_seed 1234 in the checkpoints, "
        "closed_set_share 0.2, closed_set_seed 1234 now" in proc.stderr
    )
    assert (out / "save" / "train.csv").read_bytes() == train  # refused before the preparation


def test_train_crops_per_epoch_fixes_the_epoch_size_and_covers_every_note():
    opts = {"batch_size": 4, "shuffle": True, "drop_last": True}
    assert training.train_loader_options({"train_dataloader_opts": opts, "seed": 1}, range(5)) == opts
    hparams = {"train_dataloader_opts": opts, "seed": 1, "train_crops_per_epoch": 12}
    options = training.train_loader_options(hparams, list(range(5)))
    assert "shuffle" not in options and options["batch_size"] == 4
    sampler = options["sampler"]
    first = list(sampler)
    assert len(first) == 12
    # Successive shuffles: the first ten crops are every note twice, the rest a third pass.
    assert sorted(first[:10]) == sorted(list(range(5)) * 2) and len(set(first[10:])) == 2
    sampler.set_epoch(1)
    assert list(sampler) != first  # a new order each epoch
    loader = torch.utils.data.DataLoader(list(range(5)), **options)
    assert len(loader) == 3  # 12 crops in batches of 4
    for bad in (0, -3, 2.5, True, "12"):
        with pytest.raises(ValueError, match="train_crops_per_epoch"):
            training.train_loader_options(dict(hparams, train_crops_per_epoch=bad), list(range(5)))


@pytest.mark.parametrize("max_start", [0.0, None])
def test_training_crops_start_within_crop_max_start_or_anywhere_in_the_note(nsynth_run, tiny_corpus, max_start):
    hparams = {
        "save_folder": str(nsynth_run / "save"),
        "sample_rate": 16000,
        "crop_seconds": 0.25,
        "crop_max_start": max_start,
        "stitch_notes": 0,
        "stitch_top_db": 40,
    }
    datasets, _ = training.dataio_prep(hparams, str(tiny_corpus))
    train = datasets["train"]
    note_id = train.data_ids[0]
    whole = soundfile.read(train.data[note_id]["wav"], dtype="float32")[0]
    crop = 4000
    starts = []
    for seed in range(40):
        random.seed(seed)  # the pipeline draws crop starts with Python's random
        sig = train[0]["sig"].numpy()
        assert len(sig) == crop
        # Where in the note the crop was read from (the tiny notes' samples do not repeat exactly).
        matches = [s for s in np.flatnonzero(whole == sig[0]) if np.array_equal(whole[s : s + crop], sig)]
        assert matches, "the crop is not an excerpt of its note"
        starts.append(matches[0])
    if max_start == 0.0:
        assert set(starts) == {0}
    else:  # 1 s notes: starts reach the second half of the possible range [0, 12000] samples
        assert max(starts) > 6000 and min(starts) < 6000
        assert max(starts) <= len(whole) - crop


def test_evaluation_embeds_the_span_of_the_note_training_crops_come_from(tiny_corpus, tmp_path):
    out = tmp_path / "span"
    run_recipe("transMel", tiny_corpus, out, "--eval_seconds=0.5")
    # The export embeds every sound over that span, and says so.
    model = TimbreEncoder.from_hparams(source=str(out / "model"), run_opts={"device": "cpu"})
    assert model.eval_seconds == 0.5 and model.max_seconds == 0.5
    assert "The evaluation embedded each note's first 0.5 s" in (out / "model" / "README.md").read_text()
    assert json.loads((out / "results.json").read_text())["eval_seconds"] == 0.5
    model.min_seconds = 0.25  # shorter sounds are padded to min_seconds (1 s): not these 0.5 s excerpts
    extraction = extract_embeddings(model, str(tiny_corpus), str(tmp_path / "emb"), progress=False)
    whole = [torch.from_numpy(soundfile.read(row["path"], dtype="float32")[0]) for row in extraction.labels]
    assert {len(w) for w in whole} == {16000}  # the tiny corpus's notes are 1 s long
    first_half = model.embed_signals([w[:8000] for w in whole]).numpy()
    np.testing.assert_allclose(extraction.embeddings, first_half, atol=1e-5)
    assert not np.allclose(extraction.embeddings, model.embed_signals(whole).numpy(), atol=1e-3)
    # The run's own validation and test read the same span.
    hparams = {"save_folder": str(out / "save"), "sample_rate": 16000, "crop_seconds": 0.5, "crop_max_start": 0.5}
    hparams.update(stitch_notes=0, stitch_top_db=40)
    for seconds, samples in ((0.5, 8000), (None, 16000)):
        datasets, _ = training.dataio_prep(dict(hparams, eval_seconds=seconds), str(tiny_corpus))
        assert {len(datasets[split][i]["sig"]) for split in ("valid", "test") for i in range(3)} == {samples}


@pytest.mark.parametrize("bad", ["-1", "0", "soon", "true", ".inf", "[1, 2]"])
def test_a_bad_eval_seconds_stops_the_run_before_anything_is_written(tiny_corpus, tmp_path, bad):
    out = tmp_path / "bad"
    proc = run_recipe("transMel", tiny_corpus, out, f"--eval_seconds={bad}", expect_fail=True)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "eval_seconds must be a positive number of seconds or null" in last, proc.stderr[-2000:]
    assert not out.exists()
    with pytest.raises(training.SettingsError, match="eval_seconds"):
        training.eval_samples({"eval_seconds": _value(f"--x={bad}"), "sample_rate": 16000})


@pytest.mark.parametrize("key,bad", [("crop_max_start", "-1"), ("crop_max_start", "abc"), ("crop_seconds", "0")])
def test_bad_crop_settings_stop_the_run_before_anything_is_written(tiny_corpus, tmp_path, key, bad):
    out = tmp_path / "bad"
    args = [a for a in TINY if not a.startswith(f"--{key}=")] + [f"--{key}={bad}"]
    script = os.path.join(REPO, "recipes", "NSynth", "train.py")
    hparams = os.path.join(REPO, "hparams", "transMel.yaml")
    cmd = [sys.executable, script, hparams, f"--data_folder={tiny_corpus}", f"--output_folder={out}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(f"train.py: error: {key} must be"), proc.stderr[-2000:]
    assert not out.exists()


def test_eval_seconds_null_evaluates_and_exports_whole_sounds(tiny_corpus, tmp_path):
    out = tmp_path / "whole"
    proc = run_recipe("transMel", tiny_corpus, out, "--eval_seconds=null")
    assert "Validation, test and closed-set evaluation embed whole notes (eval_seconds)" in proc.stdout
    model = TimbreEncoder.from_hparams(source=str(out / "model"), run_opts={"device": "cpu"})
    assert model.eval_seconds is None and model.max_seconds is None  # not the 4 s default
    assert "The evaluation embedded whole notes" in (out / "model" / "README.md").read_text()
    assert json.loads((out / "results.json").read_text())["eval_seconds"] is None
