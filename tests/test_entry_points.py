"""Every entry point given a bad input: a one-line error naming the path and what to do, and nothing left behind.

Each script runs as a user runs it (a subprocess). An error must be the last line of standard
error, the only one starting with ``<script>: error:``, with no traceback, and the output folder
the run was given must not exist afterwards.
"""

import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from conftest import REPO, SHARED_DATA
from test_rwc import SMALL_PROTOCOL, make_rwc_corpus, rwc

from timbre_lobes.checkpoints import CommitLastCheckpointer, RunSignature

TRAIN = os.path.join(REPO, "recipes", "NSynth", "train.py")
EVALUATE = os.path.join(REPO, "recipes", "NSynth", "evaluate.py")
RWC_TRAIN = os.path.join(REPO, "recipes", "RWC", "train.py")
COMPARE = os.path.join(REPO, "recipes", "RWC", "compare.py")
REAL_SAMPLES = os.path.join(REPO, "benchmarks", "real_samples.py")
ROBUSTNESS = os.path.join(REPO, "benchmarks", "robustness.py")
PROBE = os.path.join(REPO, "recipes", "probing", "probe.py")
#: What every model-folder error tells the user to give instead.
EXPORT_HINT = "give the folder train.py exports"


def run_script(script, *args):
    return subprocess.run([sys.executable, script, *args], capture_output=True, text=True, cwd=REPO, timeout=300)


def one_line_error(proc, script):
    """The error line of a failed run, after checking it is the only one, the last, and no traceback came."""
    name = os.path.basename(script)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith(f"{name}: error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert proc.stderr.rstrip().endswith(errors[0]), proc.stderr[-3000:]
    return errors[0]


@pytest.fixture(scope="module")
def rwc_folder(tmp_path_factory):
    return make_rwc_corpus(str(tmp_path_factory.mktemp("rwc_entry")))


@pytest.fixture()
def empty_note_folder(tmp_path):
    """An NSynth-format folder that passes the layout check and lists no note."""
    folder = tmp_path / "notes"
    (folder / "audio").mkdir(parents=True)
    (folder / "examples.json").write_text("{}")
    return folder


def model_without_files(tmp_path):
    """A folder with an export's YAML but none of its label files or checkpoints."""
    folder = tmp_path / "half_model"
    folder.mkdir()
    (folder / "hyperparams.yaml").write_text("embedding_model: <pretrained_path>/embedding_model.ckpt\n")
    return folder


# ---------------------------------------------------------------------------
# Preparation: the warning names the report
# ---------------------------------------------------------------------------


def test_the_preparation_warning_names_its_report(tiny_corpus, tmp_path, caplog):
    from nsynth_prepare import prepare_nsynth

    data = tmp_path / "data"
    shutil.copytree(tiny_corpus, data)
    path = data / "nsynth-train" / "examples.json"
    examples = json.loads(path.read_text())
    examples[next(iter(examples))]["pitch"] = "C4"
    path.write_text(json.dumps(examples))
    with caplog.at_level(logging.WARNING):
        prepare_nsynth(str(data), str(tmp_path / "save"))
    report = str(tmp_path / "save" / "prepare_report.txt")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(report in message and "1 notes skipped" in message for message in warnings), warnings
    assert "field 'pitch' is a str" in open(report).read()


# ---------------------------------------------------------------------------
# recipes/NSynth/train.py and recipes/RWC/train.py: inputs checked before the experiment folder
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["missing", "no examples.json"])
def test_train_with_an_unusable_data_folder_leaves_no_experiment_folder(case, tmp_path):
    data = tmp_path / "data"
    if case == "no examples.json":
        (data / "nsynth-train").mkdir(parents=True)
    out = tmp_path / "out"
    proc = run_script(TRAIN, "hparams/transMel.yaml", f"--data_folder={data}", f"--output_folder={out}")
    error = one_line_error(proc, TRAIN)
    assert str(data) in error and "nsynth-train/examples.json" in error and "timbre_lobes render" in error
    assert ("does not exist" in error) == (case == "missing")
    assert not out.exists()  # SpeechBrain's experiment folder (log.txt, env.log, hyperparams.yaml) and save/


def test_train_with_a_missing_pretrained_model_stops_before_preparing(tiny_corpus, tmp_path):
    out, missing = tmp_path / "out", tmp_path / "no_model"
    proc = run_script(
        TRAIN,
        "hparams/melspec.yaml",
        f"--data_folder={tiny_corpus}",
        f"--output_folder={out}",
        f"--pretrained_model={missing}",
    )
    error = one_line_error(proc, TRAIN)
    assert f"pretrained_model: no exported model at {missing}" in error and EXPORT_HINT in error
    assert not out.exists()


@pytest.mark.parametrize("case", ["missing", "no audio file", "missing pretrained model"])
def test_rwc_train_with_a_bad_input_leaves_no_experiment_folder(case, rwc_folder, tmp_path):
    data = {"missing": tmp_path / "none", "no audio file": tmp_path / "empty"}.get(case, rwc_folder)
    if case == "no audio file":
        data.mkdir()
        (data / "README.txt").write_text("not audio")
    out, model = tmp_path / "out", tmp_path / "no_model"
    args = [
        "hparams/RWC/finetune.yaml",
        f"--data_folder={data}",
        f"--output_folder={out}",
        f"--pretrained_model={model}",
    ]
    args += [f"--notes_folder={tmp_path / 'notes'}", "--rwc_valid_share=0.25"]
    proc = run_script(RWC_TRAIN, *args, *(f"--{k}={v}" for k, v in SMALL_PROTOCOL.items()))
    error = one_line_error(proc, RWC_TRAIN)
    expected = {
        "missing": f"RWC data folder '{data}' does not exist: give RWC-MDB-I",
        "no audio file": f"RWC data folder '{data}' holds no audio file: give RWC-MDB-I",
        "missing pretrained model": f"pretrained_model: no exported model at {model}",
    }[case]
    assert expected in error
    assert not out.exists() and not (tmp_path / "notes").exists()


@pytest.mark.parametrize("case", ["missing export", "missing data"])
def test_rwc_compare_checks_every_input_before_the_first_run(case, rwc_folder, tmp_path):
    model = model_without_files(tmp_path) if case == "missing export" else tmp_path / "no_model"
    data = rwc_folder if case == "missing export" else tmp_path / "no_data"
    out = tmp_path / "out"
    proc = run_script(COMPARE, f"--pretrained=transMel={model}", f"--data_folder={data}", f"--out={out}")
    error = one_line_error(proc, COMPARE)
    expected = {
        "missing export": f"incomplete model folder {model}: instrument_encoder.txt is missing; {EXPORT_HINT}",
        "missing data": f"RWC data folder '{data}' does not exist",  # checked first
    }[case]
    assert expected in error and "+ " not in proc.stdout  # no run was started (compare.py echoes each with "+ ")
    assert not out.exists()


def test_rwc_train_into_a_folder_of_other_data_stops_before_writing(rwc_folder, tmp_path):
    """The RWC recipe checks the output folder's checkpoints before preparing, as the NSynth one does."""
    out = tmp_path / "out"
    CommitLastCheckpointer(
        str(out / "save"), {"run_signature": RunSignature(str(tmp_path / "a"), {}, {})}
    ).save_checkpoint()
    before = sorted(os.listdir(out / "save"))
    args = ["hparams/RWC/scratch.yaml", f"--data_folder={rwc_folder}", f"--output_folder={out}"]
    args += [f"--notes_folder={tmp_path / 'notes'}", "--rwc_valid_share=0.25"]
    proc = run_script(RWC_TRAIN, *args, *(f"--{k}={v}" for k, v in SMALL_PROTOCOL.items()))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "were made with other settings" in proc.stderr and f"data folder: {tmp_path / 'a'}" in proc.stderr
    assert "--start_over=True" in proc.stderr
    # Nothing written: no manifests prepared over the checkpoints' data, no experiment files, no notes cut.
    assert sorted(os.listdir(out / "save")) == before and sorted(os.listdir(out)) == ["save"]
    assert not (tmp_path / "notes").exists()


# ---------------------------------------------------------------------------
# recipes/NSynth/evaluate.py and benchmarks/real_samples.py
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["missing model", "model without its files", "missing data", "no examples.json"])
def test_evaluate_bad_input_is_one_line_naming_the_path(case, empty_note_folder, tmp_path):
    model, data = tmp_path / "no_model", empty_note_folder
    if case == "model without its files":
        model = model_without_files(tmp_path)
    elif case == "missing data":
        data = tmp_path / "no_data"
    elif case == "no examples.json":
        data = tmp_path / "plain"
        data.mkdir()
    out = tmp_path / "out"
    proc = run_script(EVALUATE, "--model", str(model), "--data_folder", str(data), "--output", str(out))
    error = one_line_error(proc, EVALUATE)
    expected = {
        "missing model": f"no exported model at {model} (not a folder): {EXPORT_HINT}",
        "model without its files": f"incomplete model folder {model}: instrument_encoder.txt is missing; {EXPORT_HINT}",
        "missing data": f"data folder '{data}' does not exist: give an NSynth-format folder",
        "no examples.json": f"'{data}' holds no examples.json (nor nsynth-test/examples.json): give an NSynth-format",
    }[case]
    assert expected in error
    assert not out.exists()


@pytest.mark.parametrize("case", ["missing model", "model without its files", "missing shared", "no sample set"])
def test_real_samples_bad_input_is_one_line_naming_the_path(case, tmp_path):
    model, shared = tmp_path / "no_model", SHARED_DATA
    if case == "model without its files":
        model = model_without_files(tmp_path)
    elif case == "missing shared":
        shared = str(tmp_path / "no_shared")
    elif case == "no sample set":
        shared = str(tmp_path / "shared")
        os.makedirs(os.path.join(shared, "nsynth-test-dev"))  # a folder, but no examples.json in it
    out = tmp_path / "out"
    proc = run_script(REAL_SAMPLES, "--model", str(model), "--shared", shared, "--output", str(out))
    error = one_line_error(proc, REAL_SAMPLES)
    expected = {
        "missing model": f"no exported model at {model} (not a folder): {EXPORT_HINT}",
        "model without its files": f"incomplete model folder {model}: instrument_encoder.txt is missing",
        "missing shared": f"no real samples at {shared} (not a folder): pass --shared",
        "no sample set": f"{shared} holds none of the real sample sets",
    }[case]
    assert expected in error
    assert not out.exists()


@pytest.mark.parametrize("case", ["missing model", "model without its files", "missing notes", "no examples.json"])
def test_robustness_bad_input_is_one_line_naming_the_path(case, tmp_path):
    from timbre_lobes.serving.inference import REQUIRED_FILES

    model, notes = tmp_path / "no_model", os.path.join(SHARED_DATA, "nsynth-test-dev")
    if case != "missing model":
        model = model_without_files(tmp_path)
    if case in ("missing notes", "no examples.json"):  # every file of an export there: the notes are checked next
        for name in [*REQUIRED_FILES, "embedding_model.ckpt"]:
            (model / name).touch()
        notes = str(tmp_path / "no_notes")
        if case == "no examples.json":
            os.makedirs(notes)
    out = tmp_path / "out"
    proc = run_script(ROBUSTNESS, "--model", str(model), "--notes", notes, "--output", str(out))
    error = one_line_error(proc, ROBUSTNESS)
    expected = {
        "missing model": f"no exported model at {model} (not a folder): {EXPORT_HINT}",
        "model without its files": f"incomplete model folder {model}: instrument_encoder.txt is missing",
        "missing notes": f"data folder '{notes}' does not exist",
        "no examples.json": f"'{notes}' holds no examples.json",
    }[case]
    assert expected in error
    assert not out.exists()


# ---------------------------------------------------------------------------
# recipes/probing/probe.py
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["missing model", "missing data"])
def test_probe_bad_input_leaves_no_output_folder(case, empty_note_folder, tmp_path):
    model = tmp_path / "no_model" if case == "missing model" else model_without_files(tmp_path)
    data = empty_note_folder if case == "missing model" else tmp_path / "no_data"
    out = tmp_path / "out"
    proc = run_script(
        PROBE, "hparams/probing.yaml", f"--model={model}", f"--data_folder={data}", f"--output_folder={out}"
    )
    error = one_line_error(proc, PROBE)
    expected = {
        "missing model": f"no exported model at {model} (not a folder): {EXPORT_HINT}",
        "missing data": f"data folder '{data}' does not exist: give an NSynth-format folder",  # checked first
    }[case]
    assert expected in error
    assert not out.exists()


# ---------------------------------------------------------------------------
# Damage found while reviewing the recipes: a cut-short recording, an interrupted write
# ---------------------------------------------------------------------------


def test_rwc_preparation_reports_a_cut_short_recording(tmp_path):
    """A WAV cut short by an interrupted copy reads as a shorter recording: it is reported, not split."""
    data = tmp_path / "rwc"
    sr = 16000
    t = np.arange(int(0.5 * sr)) / sr
    note = np.sin(2 * np.pi * 220 * t) * np.exp(-4 * t) * 0.5
    recording = np.concatenate([np.zeros(sr // 4)] + [note, np.zeros(sr // 2)] * 3).astype(np.float32)
    data.mkdir()
    sf.write(str(data / "171VCNOF.wav"), recording, sr)
    whole = (data / "171VCNOF.wav").read_bytes()
    (data / "172VCNOF.wav").write_bytes(whole[: len(whole) // 2])  # the header still declares every sample
    problems = []
    rows = rwc.read_rwc_notes(str(data), str(tmp_path / "notes"), problems=problems)
    assert [r["ID"] for r in rows] == ["171VCNOF_000", "171VCNOF_001", "171VCNOF_002"]
    assert len(problems) == 1 and problems[0][0] == "172VCNOF.wav" and problems[0][1].startswith("truncated")


def test_probe_tsne_file_survives_an_interrupted_write(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("probe", PROBE)
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    path = tmp_path / "tsne.npz"
    probe.save_tsne(str(path), ["a", "b"], {"m": np.ones((2, 2), dtype=np.float32)})
    before = path.read_bytes()

    def cut_short(file, **arrays):
        file.write(before[:100])
        raise KeyboardInterrupt

    monkeypatch.setattr(probe.np, "savez", cut_short)
    with pytest.raises(KeyboardInterrupt):
        probe.save_tsne(str(path), ["a", "b"], {"m": np.zeros((2, 2), dtype=np.float32)})
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["tsne.npz"]


# ---------------------------------------------------------------------------
# recipes/RWC/standin.py and benchmarks/profile_systems.py
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["folder is a file", "pitch step 0", "negative note length"])
def test_standin_bad_arguments_are_a_usage_error(case, tmp_path):
    target = tmp_path / "standin"
    args = [str(target)]
    if case == "folder is a file":
        target.write_text("not a folder")
        expected = f"{target} is a file, not a folder: give a folder for the stand-in corpus"
    elif case == "pitch step 0":
        args += ["--pitch-step", "0"]
        expected = "argument --pitch-step: must be a positive integer, got 0"
    else:
        args += ["--note-seconds", "-1"]
        expected = "argument --note-seconds: must be a positive number, got -1"
    proc = run_script(os.path.join(REPO, "recipes", "RWC", "standin.py"), *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"standin.py: error: {expected}"
    assert case == "folder is a file" or not target.exists()


def test_profile_systems_with_a_missing_yaml_is_one_line(tmp_path):
    script = os.path.join(REPO, "benchmarks", "profile_systems.py")
    out = tmp_path / "profile.json"
    proc = run_script(script, "hparams/noSuchSystem.yaml", f"--output={out}", f"--work_folder={tmp_path / 'work'}")
    error = one_line_error(proc, script)
    assert "no system YAML ['hparams/noSuchSystem.yaml']" in error
    assert not out.exists() and not (tmp_path / "work").exists()


@pytest.mark.parametrize("case", ["missing notes", "too few notes"])
def test_augment_cost_bad_notes_folder_is_one_line(case, tmp_path):
    script = os.path.join(REPO, "benchmarks", "augment_cost.py")
    notes = tmp_path / "notes"
    if case == "too few notes":
        notes.mkdir()
        sf = pytest.importorskip("soundfile")
        sf.write(str(notes / "one.wav"), [0.0] * 1600, 16000)
    out = tmp_path / "out"
    proc = run_script(script, "hparams/transMel.yaml", "--notes", str(notes), "--output", str(out), "--batch_size=4")
    error = one_line_error(proc, script)
    expected = "no folder" if case == "missing notes" else "has 1 .wav notes, a batch of --batch_size=4 needs that many"
    assert expected in error and str(notes) in error
    assert not out.exists()
