"""Using a trained model: export round trip, robust audio loading, TimbreEncoder, the CLI.

One tiny transMel model is trained per session (the recipe in a subprocess, on
the tiny corpus, with test_recipe_nsynth's TINY sizes) and exported by train.py.
It is barely trained: tests check the machinery (equal embeddings, loading,
ranking, caching, exit codes), not the quality of its timbre space.
"""

import glob
import io
import json
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import REPO, SHARED_DATA
from hyperpyyaml import load_hyperpyyaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from speechbrain.dataio.dataio import read_audio
from speechbrain.dataio.encoder import CategoricalEncoder
from test_recipe_nsynth import run_recipe

from timbre_lobes.__main__ import main
from timbre_lobes.data.audio import AudioError, load_audio, prepare_audio, read_audio_file, resample
from timbre_lobes.lobes.embed import embed_unpadded, embed_waveforms
from timbre_lobes.serving import cli, export
from timbre_lobes.serving.inference import TimbreEncoder


def _drop_broken_lazy_modules():
    """Removes SpeechBrain's lazy module stubs whose target cannot be imported (k2 is not installed).

    Hypothesis reads ``__file__`` of every module in ``sys.modules`` (to mine
    constants), which makes such a stub try its import and raise ImportError.
    """
    from speechbrain.utils.importutils import LazyModule

    for name, module in list(sys.modules.items()):
        if isinstance(module, LazyModule):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # deprecated-redirect notices
                    module.ensure_module(0)
            except ImportError:
                del sys.modules[name]


_drop_broken_lazy_modules()


@pytest.fixture(autouse=True)
def _no_broken_lazy_modules():
    _drop_broken_lazy_modules()


# ---------------------------------------------------------------------------
# Fixtures: one trained and exported model
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tiny_corpus, tmp_path_factory):
    """Output folder of a one-epoch tiny transMel run; train.py exported ``model/`` in it."""
    out = tmp_path_factory.mktemp("inference") / "transMel"
    run_recipe("transMel", tiny_corpus, out)
    return out


@pytest.fixture(scope="module")
def model_dir(trained, tmp_path_factory):
    """A copy of the export, away from the training folder: it must stand alone."""
    copy = tmp_path_factory.mktemp("exported") / "model"
    shutil.copytree(trained / "model", copy)
    return copy


@pytest.fixture(scope="module")
def model(model_dir):
    return TimbreEncoder.from_hparams(source=str(model_dir), run_opts={"device": "cpu"})


@pytest.fixture(scope="module")
def training_modules(trained):
    """The modules re-instantiated from the run's training YAML, loaded from its best checkpoint."""
    with open(trained / "hyperparams.yaml") as handle:
        hp = load_hyperpyyaml(handle)
    encoder = CategoricalEncoder()
    encoder.load(trained / "save" / "instrument_encoder.txt")
    family_file = trained / "save" / "family_encoder.txt"  # the data's family label space
    families = export.nsynth_family_encoder()
    if family_file.exists():
        families = CategoricalEncoder()
        families.load(family_file)
    # The heads are !name: definitions sized by their label spaces (an older YAML's
    # !apply: family head is already built); the family head first, as in training.
    for key, size in (("family_head", len(families)), ("instrument_head", len(encoder))):
        head = hp[key] if isinstance(hp[key], torch.nn.Module) else hp[key](out_neurons=size)
        hp["modules"][key] = head
        if key not in hp["checkpointer"].recoverables:
            hp["checkpointer"].add_recoverable(key, head)
    assert hp["checkpointer"].recover_if_possible(min_key="EER") is not None
    for module in hp["modules"].values():
        module.eval()
    return hp, hp["modules"], encoder


@pytest.fixture(scope="module")
def test_notes(tiny_corpus):
    return sorted(glob.glob(os.path.join(tiny_corpus, "nsynth-test", "audio", "*.wav")))


def instrument_of(path):
    return os.path.basename(path).rsplit("-", 2)[0]


# ---------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------


def test_export_folder_is_complete_and_self_contained(trained, model_dir):
    names = set(os.listdir(model_dir))
    for name in (
        "hyperparams.yaml",
        "README.md",
        "model_info.json",
        "instrument_encoder.txt",
        "family_encoder.txt",
        "compute_features.ckpt",
        "mean_var_norm.ckpt",
        "embedding_model.ckpt",
        "family_head.ckpt",
        "instrument_head.ckpt",
    ):
        assert name in names, name
    text = (model_dir / "hyperparams.yaml").read_text()
    assert "pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer" in text
    assert "embedding_model: !ref <pretrained_path>/embedding_model.ckpt" in text
    assert str(trained) not in text  # nothing points back at the training run
    info = json.loads((model_dir / "model_info.json").read_text())
    assert "validation" in info["verification_threshold_origin"]
    card = (model_dir / "README.md").read_text()
    assert "transMel" in card and f"{info['test']['EER']:.2f}" in card
    assert not [n for n in os.listdir(trained) if n.startswith(".model.")]  # no temporary folders left


def test_exported_weights_are_the_best_checkpoint(trained, model_dir):
    """The validation EER recomputed at export equals the one the best checkpoint was chosen by."""
    info = json.loads((model_dir / "model_info.json").read_text())
    metas = [load_hyperpyyaml(open(p)) for p in glob.glob(str(trained / "save" / "CKPT+*" / "CKPT.yaml"))]
    best = min(m["EER"] for m in metas)
    assert info["validation"]["EER"] == pytest.approx(best, abs=1e-6)


def test_round_trip_embeddings_equal_the_training_models(model, training_modules, test_notes):
    hp, modules, encoder = training_modules
    wavs = torch.stack([read_audio(p) for p in test_notes[:6]])
    lens = torch.tensor([1.0, 0.9, 1.0, 0.7, 1.0, 0.8])
    with torch.no_grad():  # rows cut at their relative lengths, as the Brain's evaluation embeds them
        reference = embed_unpadded(modules, wavs, lens)
        ref_family = modules["family_head"](reference)
        ref_instrument = modules["instrument_head"](reference)
    exported = model.encode_batch(wavs, lens)
    assert exported.shape == (6, 1, 32)
    torch.testing.assert_close(exported, reference, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(model.mods.family_head(exported), ref_family, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(model.mods.instrument_head(exported), ref_instrument, atol=1e-5, rtol=1e-4)
    assert model.instrument_labels == [encoder.ind2lab[i] for i in range(len(encoder))]
    # Through the file loader (16 kHz 1 s notes, nothing trimmed): the same embeddings.
    model.trim_db = None
    try:
        from_files = model.embed_files(test_notes[:6], batch_size=4)
    finally:
        model.trim_db = 60.0
    np.testing.assert_allclose(
        from_files, embed_waveforms(modules, wavs, torch.ones(6))[:, 0].detach().numpy(), atol=1e-5, rtol=1e-4
    )


def test_interface_methods(model, test_notes):
    emb = model.embed_files(test_notes[:3])
    assert emb.shape == (3, 32) and np.isfinite(emb).all()
    score, same = model.verify_files(test_notes[0], test_notes[0])
    assert score == pytest.approx(1.0, abs=1e-5) and same
    families, probs = model.classify_family_files(test_notes[:3])
    assert probs.shape == (3, 11) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert all(f in model.family_labels for f in families) and model.family_labels[0] == "bass"
    closest = model.closest_instrument(test_notes[:2], top_k=3)
    assert len(closest) == 2 and len(closest[0]) == 3
    assert all(name in model.instrument_labels for name, _ in closest[0])
    assert closest[0][0][1] >= closest[0][1][1] >= closest[0][2][1]
    inst_probs = model.instrument_probabilities(model.embed_files(test_notes[:2]))
    assert inst_probs.shape == (2, len(model.instrument_labels))
    assert np.allclose(inst_probs.sum(axis=1), 1.0, atol=1e-5)
    # The most probable instrument is the head's top score.
    assert model.instrument_labels[int(inst_probs[0].argmax())] == closest[0][0][0]
    probs_b, score_b, index_b, labels_b = model.classify_file(test_notes[0])
    assert labels_b[0] == families[0] and float(score_b[0]) == pytest.approx(probs[0].max(), abs=1e-5)


def test_loading_with_a_savedir_or_a_plain_speechbrain_interface(model_dir, model, tmp_path, test_notes):
    before = sorted(os.listdir(model_dir))
    linked = TimbreEncoder.from_hparams(source=str(model_dir), savedir=str(tmp_path / "links"))
    same_dir = TimbreEncoder.from_hparams(source=str(model_dir), savedir=str(model_dir))
    assert sorted(os.listdir(model_dir)) == before  # loading writes nothing into the export
    wav = read_audio(test_notes[0]).unsqueeze(0)
    for other in (linked, same_dir):
        torch.testing.assert_close(other.encode_batch(wav), model.encode_batch(wav))
    from speechbrain.inference.classifiers import EncoderClassifier

    plain = EncoderClassifier.from_hparams(source=str(model_dir), overrides={"pretrained_path": str(model_dir)})
    torch.testing.assert_close(plain.encode_batch(wav), model.encode_batch(wav))


def test_loading_needs_the_folders_files(model_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    os.remove(broken / "embedding_model.ckpt")
    with pytest.raises(FileNotFoundError, match="embedding_model.ckpt"):
        TimbreEncoder.from_hparams(source=str(broken))
    with pytest.raises(FileNotFoundError, match="no exported model"):
        TimbreEncoder.from_hparams(source=str(tmp_path / "nowhere"))


def _fake_brain(modules):
    class Brain:
        pass

    brain = Brain()
    brain.modules = torch.nn.ModuleDict(modules)
    brain.device = "cpu"
    return brain


def test_export_is_atomic(trained, training_modules, model_dir, tmp_path, monkeypatch):
    hp, modules, encoder = training_modules
    dest = tmp_path / "model"
    shutil.copytree(model_dir, dest)
    before = {n: (dest / n).read_bytes() for n in os.listdir(dest)}
    results = {
        "EER": 12.5,
        "minDCF": 0.5,
        "eer_threshold": 0.5,
        "family_micro_f1": 0.5,
        "family_macro_f1": 0.5,
        "data_folder": "corpus",
    }

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    # A failure midway (checkpoints written, model card not yet): the previous export stays.
    monkeypatch.setattr(export, "model_card", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        export.export_model(hp, _fake_brain(modules), encoder, results, dest)
    assert {n: (dest / n).read_bytes() for n in os.listdir(dest)} == before
    assert os.listdir(tmp_path) == ["model"]
    monkeypatch.undo()

    # A failure in the swap itself: the previous export is put back.
    real_rename = os.rename
    calls = []

    def rename(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # old export moved aside, new one about to move in
            raise OSError("simulated crash")
        return real_rename(src, dst)

    monkeypatch.setattr(export.os, "rename", rename)
    with pytest.raises(OSError, match="simulated"):
        export.export_model(hp, _fake_brain(modules), encoder, results, dest)
    monkeypatch.undo()
    assert {n: (dest / n).read_bytes() for n in os.listdir(dest)} == before
    assert os.listdir(tmp_path) == ["model"]

    # Success replaces it; without a validation set the threshold is the test one, and says so.
    export.export_model(hp, _fake_brain(modules), encoder, results, dest)
    info = json.loads((dest / "model_info.json").read_text())
    assert info["verification_threshold"] == 0.5 and "TEST" in info["verification_threshold_origin"]
    assert "12.50" in (dest / "README.md").read_text()
    assert os.listdir(tmp_path) == ["model"]
    reloaded = TimbreEncoder.from_hparams(source=str(dest))
    assert reloaded.threshold == 0.5


# ---------------------------------------------------------------------------
# Audio loading
# ---------------------------------------------------------------------------


def _wav_bytes(data, rate=16000, subtype="PCM_16"):
    buffer = io.BytesIO()
    sf.write(buffer, data, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


TONE = 0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000)

BAD_FILES = {
    "empty": (lambda p: p.write_bytes(b""), "empty file"),
    "truncated header": (lambda p: p.write_bytes(_wav_bytes(TONE)[:20]), "unreadable audio"),
    "text named .wav": (lambda p: p.write_text("these are my notes\n"), "unreadable audio"),
    "NaN samples": (
        lambda p: p.write_bytes(_wav_bytes(np.where(np.arange(8000) == 99, np.nan, TONE), subtype="FLOAT")),
        "non-finite",
    ),
    "0-length": (lambda p: p.write_bytes(_wav_bytes(np.zeros(0))), "no audio samples"),
    "all silent": (lambda p: p.write_bytes(_wav_bytes(np.zeros(16000))), "silent"),
    "missing": (lambda p: None, "missing file"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_give_a_clear_error_naming_the_file(case, tmp_path):
    path = tmp_path / "sound.wav"
    make, reason = BAD_FILES[case]
    make(path)
    with pytest.raises(AudioError, match=reason) as info:
        load_audio(path)
    assert str(path) in str(info.value) and isinstance(info.value, ValueError)
    assert "<_io." not in str(info.value) and "Error opening" not in str(info.value)  # libsndfile's words only


def test_8khz_stereo_is_resampled_and_downmixed(tmp_path):
    path = tmp_path / "stereo.wav"
    t = np.arange(8000) / 8000
    left = 0.8 * np.sin(2 * np.pi * 440 * t)
    sf.write(path, np.stack([left, np.zeros_like(left)], axis=1), 8000, subtype="PCM_16")
    x = load_audio(path, 16000, trim_db=None, min_seconds=0)
    assert x.shape == (16000,)
    assert float(x.abs().max()) == pytest.approx(0.4, abs=0.02)  # the average of the channels
    spectrum = np.abs(np.fft.rfft(x.numpy()))
    assert np.argmax(spectrum) == pytest.approx(440, abs=2)  # 1 Hz bins: still 440 Hz at 16 kHz


def test_truncated_data_loads_what_is_there(tmp_path):
    path = tmp_path / "cut.wav"
    path.write_bytes(_wav_bytes(TONE)[:4044])  # header declares 8000 samples, 2000 are there
    x = load_audio(path, trim_db=None, min_seconds=0)
    assert x.shape == (2000,)


def test_trimming_padding_and_long_files(tmp_path):
    path = tmp_path / "late.flac"
    sf.write(path, np.concatenate([np.zeros(22050), 0.5 * np.sin(np.arange(4410) / 3.0)]), 44100)
    x = load_audio(path, 16000, min_seconds=1.0)
    assert x.shape == (16000,)  # 0.1 s of note (+5 ms pre-roll), padded to 1 s
    assert float(x[:1000].abs().max()) > 0.1 and float(x[3000:].abs().max()) == 0.0
    assert load_audio(path, 16000, trim_db=None, min_seconds=0).shape == (int(np.ceil(26460 * 16000 / 44100)),)
    long = tmp_path / "long.wav"
    sf.write(long, 0.3 * np.sin(np.arange(16000 * 10) / 5.0), 16000)
    assert load_audio(long, max_seconds=4.0).shape == (64000,)
    assert load_audio(long, max_seconds=None).shape == (160000,)
    with pytest.raises(AudioError, match="offset"):
        load_audio(long, offset_seconds=20.0)


def test_batches_skip_bad_files_and_keep_the_good(model, test_notes, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    results = list(model.iter_embed_files([test_notes[0], str(bad), test_notes[1]], batch_size=2))
    assert [r.path for r in results] == [test_notes[0], str(bad), test_notes[1]]
    assert results[1].embedding is None and isinstance(results[1].error, AudioError)
    np.testing.assert_allclose(
        np.stack([results[0].embedding, results[2].embedding]),
        model.embed_files([test_notes[0], test_notes[1]]),
        atol=1e-5,
    )
    with pytest.raises(AudioError, match="bad.wav"):
        model.embed_files([test_notes[0], str(bad)])


def test_shared_real_recordings_load_resample_and_embed(model):
    mp3s = sorted(glob.glob(os.path.join(SHARED_DATA, "philharmonia-sample", "*.mp3")))
    flacs = sorted(glob.glob(os.path.join(SHARED_DATA, "rwc-sample", "**", "*.flac"), recursive=True))
    assert len(mp3s) == 24 and len(flacs) == 15, "shared real recordings missing"
    for path in mp3s[:3] + flacs[-3:]:
        mono, rate, duration = read_audio_file(path)
        assert rate == 44100 and duration > 0.2
        x = load_audio(path, 16000, max_seconds=None, trim_db=None, min_seconds=0)
        assert x.shape == (int(np.ceil(len(mono) * 16000 / 44100)),)
    emb = model.embed_files(mp3s + flacs)
    assert emb.shape == (39, 32) and np.isfinite(emb).all()
    # The 132 s RWC cello run, as the average of windows over the whole recording.
    model.long_audio = "average"
    try:
        run = [p for p in flacs if p.endswith("172VCSPP.flac")]
        windows, duration = model.load_windows(run[0])
        averaged = model.embed_files(run)
    finally:
        model.long_audio = "excerpt"
    assert duration == pytest.approx(132.2, abs=0.1) and len(windows) == model.max_windows
    assert np.isfinite(averaged).all()


WAV_HEAD = _wav_bytes(TONE[:400])
FLAC_HEAD = (
    open(sorted(glob.glob(os.path.join(SHARED_DATA, "rwc-sample", "notes", "*.flac")))[0], "rb").read(4096)
    if os.path.isdir(os.path.join(SHARED_DATA, "rwc-sample"))
    else b"fLaC"
)
MP3_HEAD = (
    open(sorted(glob.glob(os.path.join(SHARED_DATA, "philharmonia-sample", "*.mp3")))[0], "rb").read(4096)
    if os.path.isdir(os.path.join(SHARED_DATA, "philharmonia-sample"))
    else b"ID3"
)


def _check_loader(path):
    try:
        x = load_audio(path)
    except AudioError:
        return
    assert x.ndim == 1 and x.shape[0] >= 16000 and torch.isfinite(x).all()


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    prefix=st.sampled_from([b"", WAV_HEAD, FLAC_HEAD, MP3_HEAD]),
    cut=st.integers(0, 4096),
    junk=st.binary(max_size=2048),
    ext=st.sampled_from([".wav", ".flac", ".mp3", ".ogg", ""]),
)
def test_loader_survives_random_bytes(prefix, cut, junk, ext, tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / f"x{ext}"
    path.write_bytes(prefix[:cut] + junk)
    _check_loader(path)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    data=arrays(
        np.float32,
        st.tuples(st.integers(0, 2000), st.integers(1, 3)),
        elements=st.floats(width=32, allow_nan=True, allow_infinity=True),
    ),
    rate=st.one_of(st.sampled_from([8000, 11025, 44100, 44101, 96000]), st.integers(1, 400_000)),
    subtype=st.sampled_from(["FLOAT", "PCM_16"]),
)
def test_loader_survives_random_arrays(data, rate, subtype, tmp_path_factory):
    try:
        x = prepare_audio(data, rate, 16000)
        assert x.ndim == 1 and torch.isfinite(x).all()
    except AudioError:
        pass
    path = tmp_path_factory.mktemp("fuzz") / "a.wav"
    sf.write(path, data, rate, subtype=subtype)
    _check_loader(path)


# ---------------------------------------------------------------------------
# Library search
# ---------------------------------------------------------------------------


@pytest.fixture
def library(tmp_path, test_notes):
    """One note of each test instrument, plus the query note re-encoded (44.1 kHz stereo FLAC)."""
    lib = tmp_path / "library"
    (lib / "sub").mkdir(parents=True)
    query = [p for p in test_notes if p.endswith("-048-075.wav")][0]
    for path in test_notes:
        if path.endswith("-072-127.wav"):
            shutil.copy(path, lib / os.path.basename(path))
    audio, rate = sf.read(query)
    up = resample(torch.from_numpy(audio).float(), rate, 44100).numpy()
    sf.write(lib / "sub" / "same-note.flac", np.stack([up, up], axis=1), 44100)
    return lib, query


def test_similar_ranks_the_same_instruments_note_first(model, library):
    lib, query = library
    index = cli.EmbeddingIndex(str(lib), str(lib.parent / "cache"))
    index.update(model, progress=False)
    ranked = index.nearest(model.embed_files([query])[0], top_k=3)
    assert ranked[0][0].endswith("same-note.flac")  # the query's instrument (its note, re-encoded)
    assert ranked[0][1] > ranked[1][1]
    # The query itself, once in the library, is left out of its own results.
    shutil.copy(query, lib / "query.wav")
    index.update(model, progress=False)
    assert all(
        not p.endswith("query.wav")
        for p, _ in index.nearest(model.embed_files([query])[0], top_k=10, exclude=str(lib / "query.wav"))
    )


def test_similar_index_is_cached_and_updated_incrementally(model, library, monkeypatch, test_notes):
    lib, _ = library
    cache = lib.parent / "cache"
    first = cli.EmbeddingIndex(str(lib), str(cache)).update(model, progress=False)
    assert (first["added"], first["reused"]) == (5, 0)
    embedded = []
    real = model.iter_embed_files

    def spy(paths, batch_size=16):
        embedded.extend(os.path.basename(p) for p in paths)
        return real(paths, batch_size)

    monkeypatch.setattr(model, "iter_embed_files", spy)
    again = cli.EmbeddingIndex(str(lib), str(cache)).update(model, progress=False)
    assert (again["added"], again["reused"], embedded) == (0, 5, [])
    extra = [p for p in test_notes if p.endswith("-055-127.wav")][0]
    shutil.copy(extra, lib / "new.wav")
    changed = sorted(lib.glob("*-072-127.wav"))[0]
    shutil.copy([p for p in test_notes if p.endswith("-060-075.wav")][0], changed)  # new content
    os.remove(lib / "sub" / "same-note.flac")
    (lib / "broken.wav").write_bytes(b"RIFF")
    index = cli.EmbeddingIndex(str(lib), str(cache))
    stats = index.update(model, progress=False)
    assert (stats["added"], stats["changed"], stats["removed"], stats["reused"]) == (2, 1, 1, 3)
    assert sorted(embedded) == sorted(["new.wav", changed.name, "broken.wav"])
    assert len(index.paths) == 5 and [e.path for e in index.failures] == [str(lib / "broken.wav")]
    embedded.clear()
    index = cli.EmbeddingIndex(str(lib), str(cache))
    stats = index.update(model, progress=False)  # the broken file is not retried until it changes
    assert embedded == [] and len(stats["failed"]) == 1
    np.testing.assert_allclose(
        index.embeddings[index.paths.index("new.wav")], model.embed_files([lib / "new.wav"])[0], atol=1e-5
    )


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def run_cli(capsys, *argv):
    """Runs ``python -m timbre_lobes ARGV`` in this process: (exit status, stdout, stderr)."""
    try:
        main([str(a) for a in argv])
        status = 0
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_classify_verify_embed(capsys, model_dir, test_notes, tmp_path):
    sounds = tmp_path / "sounds"
    sounds.mkdir()
    for path in test_notes[:3]:
        shutil.copy(path, sounds / os.path.basename(path))
    (sounds / "notes.txt").write_text("not a sound: not picked up from a folder")
    status, out, err = run_cli(capsys, "classify", sounds, "--model", model_dir, "--json")
    assert status == 0, err
    records = json.loads(out)
    assert len(records) == 3 and abs(sum(records[0]["probabilities"].values()) - 1) < 1e-4
    assert "closest_instrument" not in records[0]
    status, out, err = run_cli(capsys, "classify", sounds, "--model", model_dir, "--json", "--instrument")
    assert status == 0, err
    record = json.loads(out)[0]
    model = TimbreEncoder.from_hparams(source=str(model_dir))
    expected = model.instrument_probabilities(model.embed_files([record["file"]]))[0]
    assert record["closest_instrument"] == model.instrument_labels[int(expected.argmax())]
    assert record["instrument_probability"] == pytest.approx(float(expected.max()), abs=1e-5)

    (sounds / "bad.wav").write_text("not a sound")
    status, out, err = run_cli(capsys, "classify", sounds, "--model", model_dir, "--instrument")
    assert status == 1
    assert sum(os.path.basename(p) in out for p in test_notes[:3]) == 3 and "bad.wav" not in out
    assert "1 of 4 file(s) could not be used" in err and "bad.wav" in err

    status, out, err = run_cli(capsys, "embed", sounds, "--out", tmp_path / "emb", "--model", model_dir)
    assert status == 1 and "bad.wav" in err
    lines = (tmp_path / "emb" / "index.csv").read_text().splitlines()
    assert lines[0] == "file,embedding,duration,family,family_confidence" and len(lines) == 4
    first = lines[1].split(",")
    np.testing.assert_allclose(
        np.load(tmp_path / "emb" / first[1]),
        TimbreEncoder.from_hparams(source=str(model_dir)).embed_files([first[0]])[0],
        atol=1e-5,
    )

    status, out, err = run_cli(capsys, "verify", test_notes[0], test_notes[0], "--model", model_dir)
    assert status == 0 and out.startswith("score 1.0000") and "same instrument" in out
    status, out, err = run_cli(capsys, "verify", test_notes[0], sounds / "bad.wav", "--model", model_dir)
    assert status == 1 and "bad.wav: unreadable audio" in err


def test_cli_warns_of_files_shorter_than_the_models_min_seconds(capsys, model_dir, test_notes, tmp_path):
    """Short sounds are padded and used, and named in one warning; full-length notes are not."""
    audio, rate = sf.read(test_notes[0])
    short = tmp_path / "click.wav"
    sf.write(short, audio[: rate // 100], rate)  # 10 ms
    status, out, err = run_cli(capsys, "classify", short, test_notes[1], "--model", model_dir)
    assert status == 0, err
    assert "warning: 1 file(s) shorter than the model's min_seconds (1 s) were padded" in err
    assert f"{short} (0.01 s)" in err and os.path.basename(test_notes[1]) not in err
    assert "click.wav" in out  # still classified
    status, out, err = run_cli(capsys, "verify", test_notes[0], short, "--model", model_dir)
    assert status == 0 and out.startswith("score") and f"{short} (0.01 s)" in err
    status, out, err = run_cli(capsys, "verify", test_notes[0], test_notes[1], "--model", model_dir)
    assert status == 0 and "warning" not in err


def test_cli_similar(capsys, model_dir, library):
    lib, query = library
    (lib / "bad.wav").write_text("not a sound")
    status, out, err = run_cli(
        capsys,
        "similar",
        query,
        "--library",
        lib,
        "--top",
        "2",
        "--json",
        "--model",
        model_dir,
        "--cache",
        lib.parent / "cache",
    )
    assert status == 1 and "bad.wav" in err  # results still given, the bad file listed
    results = json.loads(out)["results"]
    assert len(results) == 2 and results[0]["file"].endswith("same-note.flac")
    os.remove(lib / "bad.wav")
    status, out, err = run_cli(capsys, "similar", query, "--library", lib, "--model", model_dir)
    assert status == 0 and "1  " in out and os.path.isdir(lib / ".timbre-lobes")


def test_cli_without_a_model_says_how_to_get_one(capsys, tmp_path, monkeypatch, test_notes):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "REPO_ROOT", str(tmp_path))
    status, out, err = run_cli(capsys, "classify", test_notes[0])
    assert status == 1 and "no trained model at results/demo/model: run `make demo` or pass --model" in err
    status, out, err = run_cli(capsys, "verify", "a.wav", "b.wav", "--model", tmp_path / "nothing")
    assert status == 1 and "no trained model at" in err


def test_cli_device_the_machine_lacks_is_a_clear_error(capsys, model_dir, test_notes, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a CPU-only machine
    status, out, err = run_cli(capsys, "classify", test_notes[0], "--model", model_dir, "--device", "cuda")
    assert status == 1 and "--device cuda: this machine has no CUDA device" in err and "Traceback" not in err
    status, out, err = run_cli(capsys, "verify", *test_notes[:2], "--model", model_dir, "--device", "gpu0")
    assert status == 1 and "--device gpu0: not a torch device" in err
    status, out, err = run_cli(capsys, "verify", *test_notes[:2], "--model", model_dir, "--device", "meta")
    assert status == 1 and "runs on cpu, cuda or mps, not meta" in err
    status, out, err = run_cli(capsys, "classify", test_notes[0], "--model", model_dir, "--device", "cpu")
    assert status == 0 and out


def test_cli_embed_of_nothing_usable_says_so(capsys, model_dir, tmp_path):
    missing = tmp_path / "nonexistent.wav"
    status, out, err = run_cli(capsys, "embed", missing, "--out", tmp_path / "e", "--model", model_dir)
    assert status == 1 and "Nothing embedded" in out and "Embedded 0" not in out and not (tmp_path / "e").exists()


def test_cli_exit_status_in_a_real_process(model_dir, test_notes, tmp_path):
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"\x00" * 100)
    cmd = [sys.executable, "-m", "timbre_lobes", "classify", "--model", str(model_dir), test_notes[0]]
    proc = subprocess.run(cmd + [str(bad)], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 1 and os.path.basename(test_notes[0]) in proc.stdout and "bad.mp3" in proc.stderr


@pytest.fixture
def mixed_lengths(tmp_path, test_notes):
    """Five sounds from 0.4 s to 9 s: a note cut short, notes, a note looped to 9 s."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    audio, rate = sf.read(test_notes[0])
    rng = np.random.default_rng(0)
    cases = {"cut.wav": audio[: int(0.4 * rate)], "loop.wav": np.tile(audio, 9)[: 9 * rate]}
    for k, path in enumerate(test_notes[1:4]):
        n = int((0.7 + 0.9 * k) * rate)
        note = np.tile(sf.read(path)[0], 3)[:n]
        cases[f"note{k}.wav"] = note + 1e-3 * rng.standard_normal(n)
    for name, signal in cases.items():
        sf.write(folder / name, signal, rate)
    return sorted(str(p) for p in folder.iterdir())


def test_an_embedding_does_not_depend_on_its_batch_neighbours(model, model_dir, mixed_lengths, capsys):
    """Every path: files of very different lengths embedded together equal each embedded alone."""
    alone = np.stack([model.embed_files([p], batch_size=1)[0] for p in mixed_lengths])
    together = model.embed_files(mixed_lengths, batch_size=16)
    assert np.abs(together - alone).max() < 1e-4
    reversed_ = model.embed_files(mixed_lengths[::-1], batch_size=3)[::-1]
    assert np.abs(reversed_ - alone).max() < 1e-4
    # encode_batch with zero padding and relative lengths: each row as if alone.
    signals = [model.load_audio(p) for p in mixed_lengths]
    longest = max(s.shape[0] for s in signals)
    padded = torch.zeros(len(signals), longest)
    for i, s in enumerate(signals):
        padded[i, : s.shape[0]] = s
    lens = torch.tensor([s.shape[0] / longest for s in signals])
    batch = model.encode_batch(padded, lens)[:, 0].numpy()
    single = np.stack([model.encode_batch(s)[0, 0].numpy() for s in signals])
    assert np.abs(batch - single).max() < 1e-4
    # verify A B (the two embedded together) gives the score of the two embedded alone.
    score, _ = model.verify_files(mixed_lengths[0], mixed_lengths[-1])
    assert score == pytest.approx(float(model.similarity(alone[0], alone[-1])), abs=1e-4)
    # classify on the command line: the same probabilities with --batch-size 16 and 1.
    records = {}
    for size in ("16", "1"):
        status, out, err = run_cli(
            capsys, "classify", *mixed_lengths, "--model", model_dir, "--json", "--batch-size", size
        )
        assert status == 0, err
        records[size] = json.loads(out)
    for a, b in zip(records["16"], records["1"], strict=True):
        assert a["family"] == b["family"]
        assert max(abs(a["probabilities"][k] - b["probabilities"][k]) for k in a["probabilities"]) < 1e-4


def test_a_file_name_that_is_not_utf8_is_read_and_printed_escaped(model_dir, test_notes, tmp_path):
    """``mod\\xe0 - la notte.wav`` (Latin-1 bytes): classified and embedded like any file, its name escaped."""
    folder = tmp_path / "odd"
    folder.mkdir()
    name = os.fsdecode(b"mod\xe0 - la notte.wav")  # a str with a surrogate, as Python lists it
    shutil.copy(test_notes[0], os.path.join(str(folder), name))
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    for verb in (["classify", str(folder)], ["embed", str(folder), "--out", str(tmp_path / "emb")]):
        proc = subprocess.run(
            [sys.executable, "-m", "timbre_lobes", *verb, "--model", str(model_dir)],
            capture_output=True,
            cwd=REPO,
            env=env,
            timeout=300,
        )
        out = proc.stdout.decode("utf-8") + proc.stderr.decode("utf-8")
        assert proc.returncode == 0, out
        assert "unreadable" not in out and "skipped" not in out, out
        if verb[0] == "classify":  # it prints each file's name: escaped, not a crash
            assert "mod\\udce0 - la notte" in out, out
    index = (tmp_path / "emb" / "index.csv").read_bytes()
    assert b"mod\xe0 - la notte.wav" in index  # the file's own bytes


def test_similar_in_an_empty_library_is_an_error_and_writes_nothing(capsys, model_dir, test_notes, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    status, _, err = run_cli(capsys, "similar", test_notes[0], "--library", empty, "--model", model_dir)
    assert status != 0 and "no audio files in" in err
    assert list(empty.iterdir()) == []  # no index folder left in the user's library
