"""Scale and resilience (issue 6): resume after SIGKILL, atomic outputs, multi-process training.

The recipe runs on the tiny corpus in subprocesses, as in ``test_recipe_nsynth.py``,
with intra-epoch checkpoints every few steps so that a kill lands mid-epoch.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import REPO
from test_recipe_nsynth import TINY_SIZES

from timbre_lobes.atomic import atomic_open, write_json

TRAIN_PY = os.path.join(REPO, "recipes", "NSynth", "train.py")
# 6 training instruments x 12 notes, less one closed-set note each (closed_set_share 0.1) = 66 crops;
# batches of 2 give 33 steps an epoch.
STEPS_PER_EPOCH = 33
# The YAML's intra-epoch checkpoint interval is in minutes; SpeechBrain's step
# interval excludes it, so the minutes are switched off.
TINY = [*TINY_SIZES, "--ckpt_interval_minutes=0"]
# Intra-epoch checkpoints every 4 steps.
RESUME = [*TINY, "--batch_size=2", "--ckpt_interval_steps=4"]


def recipe_cmd(data, out, *extra, system="transMel"):
    return [
        sys.executable,
        TRAIN_PY,
        os.path.join(REPO, "hparams", f"{system}.yaml"),
        f"--data_folder={data}",
        f"--output_folder={out}",
        *RESUME,
        *extra,
    ]


def run(cmd, timeout=300, env=None):
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def read_meta(ckpt):
    """A checkpoint folder's CKPT.yaml as a dict of strings (flat YAML)."""
    meta = {}
    with open(os.path.join(ckpt, "CKPT.yaml")) as handle:
        for line in handle:
            if ":" in line and not line.startswith("#"):
                key, value = line.split(":", 1)
                meta[key.strip()] = value.strip()
    return meta


def checkpoints(save):
    """[(folder, meta)] of the complete checkpoints in ``save``, oldest first."""
    found = []
    for name in os.listdir(save) if os.path.isdir(save) else []:
        folder = os.path.join(save, name)
        if name.startswith("CKPT") and os.path.isfile(os.path.join(folder, "CKPT.yaml")):
            try:
                found.append((folder, read_meta(folder)))
            except OSError:  # deleted meanwhile
                continue
    return sorted(found, key=lambda c: float(c[1]["unixtime"]))


def brain_state(ckpt):
    """(epoch, step in the epoch, optimizer steps so far) saved in a checkpoint."""
    with open(os.path.join(ckpt, "counter.ckpt")) as handle:
        epoch = int(handle.read())
    state = {}
    with open(os.path.join(ckpt, "brain.ckpt")) as handle:
        for line in handle:
            key, value = line.split(":", 1)
            state[key.strip()] = value.strip()
    return epoch, int(state["step"]), int(state["optimizer_step"])


def logged_epochs(out):
    with open(os.path.join(out, "train_log.txt")) as handle:
        return [int(m.group(1)) for m in re.finditer(r"^epoch: (\d+),", handle.read(), re.M)]


def check_finished_run(out, epochs):
    """The run ended normally: each epoch logged once, a best model, results, no stray checkpoints."""
    assert logged_epochs(out) == list(range(1, epochs + 1))
    with open(os.path.join(out, "train_log.txt")) as handle:
        assert "Epoch loaded:" in handle.read()  # the test evaluation loaded the best model
    results = json.loads(open(os.path.join(out, "results.json")).read())
    assert 0.0 <= results["EER"] <= 100.0 and results["n_notes"] == 48
    save = os.path.join(out, "save")
    kept = checkpoints(save)
    assert kept and all(meta["end-of-epoch"] == "true" and "EER" in meta for _, meta in kept)
    assert all(os.path.isfile(os.path.join(save, n, "CKPT.yaml")) for n in os.listdir(save) if n.startswith("CKPT"))
    last_epoch, _, optimizer_steps = brain_state(kept[-1][0])
    assert last_epoch == epochs
    return optimizer_steps


def test_sigkill_mid_epoch_then_the_same_command_finishes_the_run(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    cmd = recipe_cmd(tiny_corpus, out, "--number_of_epochs=3")
    log = open(tmp_path / "killed.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    killed_at = None
    deadline = time.time() + 240
    try:
        while killed_at is None:
            assert proc.poll() is None, "the run ended before a mid-epoch checkpoint of epoch 2 appeared"
            assert time.time() < deadline, "no mid-epoch checkpoint of epoch 2 within 240 s"
            for folder, meta in checkpoints(out / "save"):
                if meta.get("brain_intra_epoch_ckpt") == "true":
                    try:
                        epoch, step, _ = brain_state(folder)
                    except OSError:  # the run deleted this checkpoint while we read it
                        continue
                    # Well inside epoch 2, so the kill cannot reach the epoch's end.
                    if epoch == 2 and step <= STEPS_PER_EPOCH - 12:
                        proc.send_signal(signal.SIGKILL)
                        killed_at = (folder, step)
                        break
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
        log.close()
    assert proc.returncode == -signal.SIGKILL
    # What the kill left: epoch 1 done and logged, the newest checkpoint mid-epoch 2.
    assert logged_epochs(out) == [1]
    assert not (out / "results.json").exists()
    latest, meta = checkpoints(out / "save")[-1]
    assert meta["brain_intra_epoch_ckpt"] == "true"
    epoch, resume_step, _ = brain_state(latest)
    assert epoch == 2 and 0 < resume_step < STEPS_PER_EPOCH
    with open(os.path.join(latest, "wall_clock.ckpt")) as handle:
        killed_run_seconds = float(handle.read())
    assert killed_run_seconds > 0

    output = run(cmd)  # the same command again
    assert f"Loading a checkpoint from {latest}" in output
    assert "Going into epoch 1" not in output and "Going into epoch 2" in output
    # Epoch 2 resumes at the saved batch, not at its start.
    assert re.search(rf"\b{resume_step}/{STEPS_PER_EPOCH} \[", output)
    optimizer_steps = check_finished_run(out, epochs=3)
    # Every batch of every epoch was trained exactly once, across both runs.
    assert optimizer_steps == 3 * STEPS_PER_EPOCH
    # The wall time counts the killed process up to its last checkpoint, not only the resumed one.
    results = json.loads((out / "results.json").read_text())
    assert results["wall_seconds_earlier_processes"] == round(killed_run_seconds, 1)
    assert results["wall_seconds"] > killed_run_seconds


@pytest.mark.parametrize(
    "signum, status, said",
    [(signal.SIGINT, 130, "interrupted."), (signal.SIGTERM, 143, "terminated (SIGTERM).")],
    ids=["ctrl-c", "sigterm"],
)
def test_ctrl_c_or_sigterm_stops_the_run_with_one_message_and_keeps_its_checkpoints(
    signum, status, said, tiny_corpus, tmp_path
):
    """Ctrl-C (SIGINT) and SIGTERM (kill, a scheduler's time limit) each end a run with one line."""
    out = tmp_path / "run"
    cmd = recipe_cmd(tiny_corpus, out, "--number_of_epochs=20")
    # A shell's background job (`make test &`, nohup) starts with SIGINT ignored, and the child would
    # inherit that: it gets the default disposition back, as a terminal's foreground job has.
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 240
    try:
        while not checkpoints(out / "save"):
            assert proc.poll() is None, "the run ended before its first checkpoint"
            assert time.time() < deadline, "no checkpoint within 240 s"
            time.sleep(0.05)
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == status, stderr[-2000:]
    assert f"train.py: {said} Any checkpoint already saved is kept; the same command resumes" in stderr
    assert "Traceback" not in stderr and checkpoints(out / "save")
    assert not (out / "results.json").exists()


def test_run_clock_ignores_the_best_checkpoint_loaded_after_it_saved(tmp_path):
    """A fresh run saves, then loads an earlier epoch's checkpoint for the test: its time stays its own."""
    from timbre_lobes.checkpoints import RunClock

    clock = RunClock()
    clock.started -= 50.0  # this process has run 50 s
    clock._save(tmp_path / "clock.ckpt")
    assert 50.0 <= float((tmp_path / "clock.ckpt").read_text()) < 51.0
    (tmp_path / "best.ckpt").write_text("20.0")  # the best epoch's checkpoint
    clock._recover(tmp_path / "best.ckpt", end_of_epoch=True)
    assert clock.earlier_seconds == 0.0 and 50.0 <= clock.seconds < 51.0


DIE_WHILE_SAVING = """
import io, os, runpy, signal, sys
import torch

real_save = torch.save
saves = 0

def save(obj, f, *args, **kwargs):
    # On the {n}th checkpoint: write half of the encoder's file, then die.
    global saves
    if str(f).endswith("embedding_model.ckpt"):
        saves += 1
        if saves == {n}:
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            with open(f, "wb") as handle:
                handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, f, *args, **kwargs)

torch.save = save
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(sys.argv[0]))  # as `python train.py` would: the recipe's folder first
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_sigkill_while_saving_a_checkpoint_resumes_from_the_previous_one(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    cmd = recipe_cmd(tiny_corpus, out, "--number_of_epochs=1")
    driver = tmp_path / "die_while_saving.py"
    driver.write_text(DIE_WHILE_SAVING.replace("{n}", "3"))
    proc = subprocess.run(
        [sys.executable, str(driver), *cmd[1:]], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert proc.returncode == -signal.SIGKILL, proc.stdout[-2000:] + proc.stderr[-2000:]
    # The last complete checkpoint (step 8; older intra-epoch ones are pruned) and the
    # unfinished third one.
    complete = checkpoints(out / "save")
    assert [brain_state(folder)[1] for folder, _ in complete] == [8]
    unfinished = [
        n for n in os.listdir(out / "save") if n.startswith("CKPT") and not (out / "save" / n / "CKPT.yaml").exists()
    ]
    assert len(unfinished) == 1

    output = run(cmd)
    assert f"Loading a checkpoint from {complete[-1][0]}" in output
    assert check_finished_run(out, epochs=1) == STEPS_PER_EPOCH


# Atomic outputs: an interrupted write leaves the previous file, never a half one.


def test_atomic_open_keeps_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(path) as handle:
        handle.write("half of the new")
        raise RuntimeError("interrupted")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["results.json"]  # the temporary file is gone


def test_atomic_open_keeps_the_old_file_when_the_process_is_killed(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("old")
    code = textwrap.dedent(f"""
        import os, signal
        from timbre_lobes.atomic import atomic_open
        with atomic_open({str(path)!r}) as handle:
            handle.write("half of the new")
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert path.read_text() == "old"
    # Only a hidden temporary file is left beside it, which nothing reads.
    assert all(n == "train.csv" or (n.startswith(".train.csv.") and n.endswith(".tmp")) for n in os.listdir(tmp_path))


def test_results_manifests_and_trials_are_written_whole_or_not_at_all(tmp_path):
    from nsynth_prepare import MANIFEST_FIELDS, write_manifest

    from timbre_lobes.scoring.verification import write_trials

    results = tmp_path / "results.json"
    write_json(results, {"EER": 1.0})
    with pytest.raises(TypeError):  # fails half-way through the dump
        write_json(results, {"EER": 2.0, "machine": object()})
    assert json.loads(results.read_text()) == {"EER": 1.0}

    manifest = tmp_path / "train.csv"
    row = {field: "x" for field in MANIFEST_FIELDS}
    write_manifest([row], manifest)
    before = manifest.read_text()
    with pytest.raises(ValueError):  # the second row has a field the header lacks
        write_manifest([row, {**row, "bogus": 1}], manifest)
    assert manifest.read_text() == before

    enrol, trials = tmp_path / "test_enrolments.txt", tmp_path / "test_trials.txt"
    write_trials({"e1": ["n1"]}, [(1, "e1", "n2")], enrol, trials)
    with pytest.raises(ValueError):  # a malformed trial after a good one
        write_trials({"e1": ["n1"]}, [(1, "e1", "n2"), (0, "e1")], enrol, trials)
    assert trials.read_text() == "1 e1 n2\n"


def test_interrupted_preparation_is_redone_not_trusted(tiny_corpus, tmp_path, monkeypatch):
    import nsynth_prepare

    save = tmp_path / "save"
    real_write_trials = nsynth_prepare.write_trials

    def die_on_test_split(enrolments, trials, enrol_path, trials_path):
        if "test_" in os.path.basename(enrol_path):
            raise KeyboardInterrupt  # stands for a kill after train/valid were written
        real_write_trials(enrolments, trials, enrol_path, trials_path)

    monkeypatch.setattr(nsynth_prepare, "write_trials", die_on_test_split)
    with pytest.raises(KeyboardInterrupt):
        nsynth_prepare.prepare_nsynth(tiny_corpus, str(save))
    assert (save / "train.csv").exists() and not (save / nsynth_prepare.OPTIONS_FILE).exists()

    monkeypatch.setattr(nsynth_prepare, "write_trials", real_write_trials)
    nsynth_prepare.prepare_nsynth(tiny_corpus, str(save))
    assert (save / "test_trials.txt").exists() and (save / nsynth_prepare.OPTIONS_FILE).exists()


# Multi-process training: torchrun, 2 processes on CPU (gloo).

RANK_DRIVER = """
import builtins, json, os, sys
import torch

rank, out, report = int(os.environ["RANK"]), os.path.abspath(os.environ["RUN_OUT"]), os.environ["RANK_REPORT"]
real_open, real_os_open, real_replace = builtins.open, os.open, os.replace
writes = []

def under_out(path):
    try:
        return os.path.abspath(os.fspath(path)).startswith(out)
    except TypeError:  # a file descriptor
        return False

def watched_open(file, mode="r", *args, **kwargs):
    if any(c in mode for c in "wax+") and under_out(file):
        writes.append(("open", str(file)))
    return real_open(file, mode, *args, **kwargs)

def watched_os_open(path, flags, *args, **kwargs):
    if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and under_out(path):
        writes.append(("os.open", str(path)))
    return real_os_open(path, flags, *args, **kwargs)

def watched_replace(src, dst, *args, **kwargs):
    if under_out(dst):
        writes.append(("replace", str(dst)))
    return real_replace(src, dst, *args, **kwargs)

if rank != 0:  # everything rank 1 writes into the run's folder is recorded
    builtins.open, os.open, os.replace = watched_open, watched_os_open, watched_replace

sys.path.insert(0, os.path.dirname(sys.argv[1]))
import train

brain = train.main(sys.argv[2:])
params = [p.detach().double() for m in brain.modules.values() for p in m.parameters()]
stats = {k: brain.test_stats[k] for k in ("EER", "minDCF", "family_micro_f1", "family_macro_f1")}
with real_open(os.path.join(report, f"rank{rank}.json"), "w") as handle:
    json.dump({"rank": rank, "world_size": torch.distributed.get_world_size(), "test": stats,
               "param_sum": float(sum(p.sum() for p in params)),
               "param_abs_sum": float(sum(p.abs().sum() for p in params)), "writes": writes}, handle)
"""


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not installed")
def test_torchrun_two_cpu_processes_agree_and_only_rank_0_writes(tiny_corpus, tmp_path):
    out, report = tmp_path / "run", tmp_path / "ranks"
    report.mkdir()
    driver = tmp_path / "rank_driver.py"
    driver.write_text(RANK_DRIVER)
    epochs = 2
    cmd = [
        "torchrun",
        "--standalone",
        "--nproc_per_node=2",
        str(driver),
        TRAIN_PY,
        os.path.join(REPO, "hparams", "transMel.yaml"),
        f"--data_folder={tiny_corpus}",
        f"--output_folder={out}",
        f"--number_of_epochs={epochs}",
        *TINY,
        "--batch_size=8",
        "--ckpt_interval_steps=2",
        "--distributed_backend=gloo",
        "--device=cpu",
    ]
    env = {**os.environ, "RUN_OUT": str(out), "RANK_REPORT": str(report), "OMP_NUM_THREADS": "1"}
    run(cmd, env=env)

    ranks = [json.loads((report / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    # Both ranks end with the same weights and the same test figures.
    assert ranks[0]["param_sum"] == pytest.approx(ranks[1]["param_sum"], rel=1e-9, abs=1e-9)
    assert ranks[0]["param_abs_sum"] == pytest.approx(ranks[1]["param_abs_sum"], rel=1e-9)
    for key, value in ranks[0]["test"].items():
        assert ranks[1]["test"][key] == pytest.approx(value, abs=1e-9), key
    results = json.loads((out / "results.json").read_text())
    assert results["EER"] == pytest.approx(ranks[0]["test"]["EER"])
    # Only rank 0 writes: logs, checkpoints, results.
    assert ranks[1]["writes"] == []
    optimizer_steps = check_finished_run(out, epochs)
    # The ranks split each epoch: 66 crops / 2 ranks / batches of 8 (drop_last) = 4 steps.
    assert optimizer_steps == epochs * 4
