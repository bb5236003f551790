"""benchmarks/benchmark.py and evaluate.py end to end on the tiny corpus and the real NSynth sample.

One benchmark run (2 tiny systems, scenarios rendered + nsynth_real) is shared by the
tests of this module; the leave-one-SoundFont-out corpus builder is tested on a
hand-made corpus whose notes carry the renderer's ``soundfont`` field. The CPU budget
(benchmarks/cpu_budget.yaml) is checked against every system's YAML and the Makefile's
demo, and the front-end size vocabulary (n_filters, win_ms, hop_ms) against every front end.
"""

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SHARED_DATA

from timbre_lobes.data.synthetic import make_nsynth_corpus

BENCHMARKS = os.path.join(REPO, "benchmarks")
# The benchmarks' modules (benchmark, budget, profile_systems) import each other as siblings,
# as `python benchmarks/benchmark.py` lets them.
sys.path.insert(0, BENCHMARKS)
BENCHMARK = os.path.join(BENCHMARKS, "benchmark.py")
BUDGET_PY = os.path.join(BENCHMARKS, "budget.py")
BUDGET_FILE = os.path.join(BENCHMARKS, "cpu_budget.yaml")


def _is_system_yaml(path):
    """A system's YAML names its system (``system: ...``); hparams/probing.yaml and the like do not."""
    with open(path) as handle:
        return any(line.startswith("system:") for line in handle)


SYSTEM_YAMLS = sorted(
    name[: -len(".yaml")]
    for name in os.listdir(os.path.join(REPO, "hparams"))
    if name.endswith(".yaml") and _is_system_yaml(os.path.join(REPO, "hparams", name))
)
assert len(SYSTEM_YAMLS) == 6, SYSTEM_YAMLS  # the paper's three systems and the three baselines
NSYNTH_DEV = os.path.join(SHARED_DATA, "nsynth-test-dev")
SYSTEMS = ["melspec", "xvector"]
SCENARIOS = ["rendered", "nsynth_real"]
TINY_PROTOCOL = ["--enrolments_per_instrument=4", "--targets_per_note=4", "--nontargets_per_note=4"]
TINY_CONFIG = {
    "common": [
        "--number_of_epochs=1",
        "--batch_size=8",
        "--eval_batch_size=16",
        "--num_workers=0",
        "--crop_seconds=0.5",
        "--crop_max_start=0.5",
        "--emb_dim=32",
        *TINY_PROTOCOL,
    ],
    "systems": {
        "melspec": ["--n_filters=40", "--resnet_channels=[4,8]", "--resnet_blocks=[1,1]", "--resnet_strides=[1,2]"],
        "xvector": ["--n_filters=40", "--tdnn_channels=[16,16,16,16,32]"],
    },
    "profile": {"steps": 1, "warmup": 0, "embed_repeats": 1, "timeout": 300},
}


def benchmark_argv(run, *extra):
    return [
        f"--config={run['config']}",
        f"--corpus={run['corpus']}",
        f"--output={run['out']}",
        f"--systems={','.join(SYSTEMS)}",
        f"--scenarios={','.join(SCENARIOS)}",
        f"--nsynth_real={NSYNTH_DEV}",
        *extra,
    ]


@pytest.fixture(scope="module")
def benchmark_run(tiny_corpus, tmp_path_factory):
    """One benchmark.py run on the command line, as a user starts it."""
    work = tmp_path_factory.mktemp("benchmark")
    run = {"config": work / "tiny.yaml", "out": work / "out", "corpus": tiny_corpus}
    run["config"].write_text(yaml.safe_dump(TINY_CONFIG))
    # One thread: the machine is shared, and tiny models gain nothing from more.
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, BENCHMARK, *benchmark_argv(run)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run["stdout"] = proc.stdout
    return run


def test_benchmark_writes_a_row_per_system_and_scenario(benchmark_run):
    out = benchmark_run["out"]
    report = json.loads((out / "benchmark.json").read_text())
    assert report["failures"] == []
    assert {(r["system"], r["scenario"]) for r in report["rows"]} == {(s, c) for s in SYSTEMS for c in SCENARIOS}
    for row in report["rows"]:
        assert row["status"] == "ok"
        for key in (
            "EER",
            "minDCF",
            "family_micro_f1",
            "family_macro_f1",
            "parameters",
            "train_examples_per_s",
            "embed_notes_per_s_batch",
            "embed_notes_per_s_single",
            "peak_rss_mb",
        ):
            assert isinstance(row[key], (int, float)) and math.isfinite(row[key]), (row["system"], key)
        assert 0 <= row["EER"] <= 100 and 0 <= row["family_micro_f1"] <= 1
        assert row["parameters"] > 0 and row["train_examples_per_s"] > 0
        assert row["n_notes"] == (48 if row["scenario"] == "rendered" else 400)
    for key in ("cpu", "cores", "torch"):
        assert report["machine"][key]
    # The budget is the same for both; the sizes differ.
    assert report["common_overrides"] == TINY_CONFIG["common"]
    markdown = (out / "benchmark.md").read_text()
    for system in SYSTEMS:
        for scenario in SCENARIOS:
            assert f"| {system} | {scenario} | " in markdown
    assert (out / "benchmark.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "rendered" / "melspec" / "model" / "hyperparams.yaml").is_file()
    assert (out / "nsynth_real" / "xvector" / "trials.txt").is_file()
    assert "rendered/melspec: training (log" in benchmark_run["stdout"]


def test_a_second_run_reuses_everything(benchmark_run, capsys):
    import benchmark

    out = benchmark_run["out"]
    done = [out / s / system / "results.json" for s in SCENARIOS for system in SYSTEMS]
    done += [out / "profile" / f"{system}.json" for system in SYSTEMS]
    before = {p: p.stat().st_mtime_ns for p in done}
    first = json.loads((out / "benchmark.json").read_text())["rows"]
    start = time.time()
    benchmark.main(benchmark_argv(benchmark_run))
    seconds = time.time() - start
    stdout = capsys.readouterr().out
    assert ": training (log" not in stdout and "measuring costs" not in stdout
    assert stdout.count("reusing") == len(done)
    assert {p: p.stat().st_mtime_ns for p in done} == before
    again = json.loads((out / "benchmark.json").read_text())["rows"]
    assert [(r["system"], r["scenario"], r["EER"]) for r in again] == [
        (r["system"], r["scenario"], r["EER"]) for r in first
    ]
    assert seconds < 30


def test_other_settings_in_the_same_output_are_refused(benchmark_run):
    import benchmark

    with pytest.raises(benchmark.BenchmarkError, match="other settings"):
        benchmark.main(benchmark_argv(benchmark_run, "--lr=0.5"))
    # The tiny corpus was not rendered from SoundFonts: no leave-one-source-out corpus from it.
    with pytest.raises(benchmark.BenchmarkError, match="soundfont"):
        benchmark.main(benchmark_argv(benchmark_run, "--scenarios=leave_one_source_out"))


def test_a_bad_corpus_leaves_no_output_folder(tmp_path):
    import benchmark

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_CONFIG))
    out = tmp_path / "out"
    argv = [f"--config={config}", f"--corpus={tmp_path / 'no_corpus'}", f"--output={out}", "--systems=melspec"]
    with pytest.raises(benchmark.BenchmarkError, match="no_corpus is not an NSynth-format corpus"):
        benchmark.main(argv)
    assert not out.exists()


def test_evaluation_on_real_nsynth_notes(benchmark_run):
    """The nsynth_real scenario is evaluate_model (timbre_lobes.scoring.evaluate) on the 400 shared NSynth notes."""
    folder = benchmark_run["out"] / "nsynth_real" / "melspec"
    record = json.loads((folder / "results.json").read_text())
    assert record["n_notes"] == 400 and record["n_instruments"] == 25 and record["n_skipped"] == 0
    assert record["data_folder"] == os.path.abspath(NSYNTH_DEV)
    assert record["protocol"]["enrolments_per_instrument"] == 4  # the budget's protocol
    assert record["n_target_trials"] > 0 and record["n_nontarget_trials"] > 0
    assert sum(map(sum, record["family_confusion"])) == 400
    with open(folder / "trials.txt") as handle:
        trials = [line.split() for line in handle]
    assert len(trials) == record["n_target_trials"] + record["n_nontarget_trials"]
    assert (folder / "enrolments.txt").is_file() and (folder / "family_confusion.png").is_file()


def test_real_family_sets_beside_the_nsynth_notes(benchmark_run):
    """Philharmonia and RWC family accuracy of the rendered model, recomputed here through classify_family_files."""
    import glob

    import real_samples

    from timbre_lobes.serving.inference import TimbreEncoder

    record = json.loads((benchmark_run["out"] / "nsynth_real" / "melspec" / "results.json").read_text())
    model = TimbreEncoder.from_hparams(source=str(benchmark_run["out"] / "rendered" / "melspec" / "model"))
    files = sorted(glob.glob(os.path.join(SHARED_DATA, "philharmonia-sample", "*.mp3")))
    assert files  # the shared sample is there
    predicted, _ = model.classify_family_files(files)
    truth = [real_samples.philharmonia_family(f) for f in files]
    kept = [(p, t) for p, t in zip(predicted, truth) if t is not None]
    assert record["philharmonia_family_accuracy"] == pytest.approx(sum(p == t for p, t in kept) / len(kept))
    assert 0 <= record["rwc_family_accuracy"] <= 1
    markdown = (benchmark_run["out"] / "benchmark.md").read_text()
    row = next(line for line in markdown.splitlines() if line.startswith("| melspec | nsynth_real |"))
    assert row.rstrip(" |").endswith(
        f"{record['philharmonia_family_accuracy']:.3f} / {record['rwc_family_accuracy']:.3f}"
    )


def test_evaluate_cli_matches_the_training_run(benchmark_run, tmp_path):
    """Whole notes, as train.py's test evaluation reads them: the same figures on the same trials."""
    import evaluate

    run = benchmark_run["out"] / "rendered" / "melspec"
    # A corpus root is read as its nsynth-test split.
    record = evaluate.main(
        [
            "--model",
            str(run / "model"),
            "--data_folder",
            benchmark_run["corpus"],
            "--output",
            str(tmp_path),
            *TINY_PROTOCOL,
        ]
    )
    trained = json.loads((run / "results.json").read_text())
    assert record["n_notes"] == trained["n_notes"] == 48
    assert (tmp_path / "trials.txt").read_text() == (run / "save" / "test_trials.txt").read_text()
    for key in ("EER", "minDCF", "family_micro_f1", "family_macro_f1"):
        assert record[key] == pytest.approx(trained[key], abs=1e-4), key
    for name in ("results.json", "family_confusion.png", "enrolments.txt", "skipped.txt"):
        assert (tmp_path / name).is_file(), name
    with pytest.raises(SystemExit):
        evaluate.main(["--model", str(run / "model"), "--data_folder", benchmark_run["corpus"], "--batch_size", "0"])


SOUNDFONTS = ["A.sf2", "B.sf2", "C.sf2"]


@pytest.fixture
def soundfont_corpus(tmp_path):
    """16 instruments (4 families), each from one of three SoundFonts."""
    root = make_nsynth_corpus(
        str(tmp_path / "corpus"), instruments_per_split=(8, 4, 4), pitches=(48, 60, 72), seconds=0.25
    )
    for split in ("train", "valid", "test"):
        path = os.path.join(root, f"nsynth-{split}", "examples.json")
        with open(path) as handle:
            examples = json.load(handle)
        for meta in examples.values():
            meta["soundfont"] = SOUNDFONTS[meta["instrument"] % 3]
        with open(path, "w") as handle:
            json.dump(examples, handle)
    return root


def read_split(folder, split):
    with open(os.path.join(folder, f"nsynth-{split}", "examples.json")) as handle:
        return json.load(handle)


def test_leave_one_source_out_corpus(soundfont_corpus, tmp_path):
    from benchmark import build_leave_one_source_out
    from nsynth_prepare import prepare_nsynth

    out = str(tmp_path / "loso")
    summary = build_leave_one_source_out(soundfont_corpus, out, "B")  # the stem works as well
    held = {
        m["instrument_str"]
        for s in ("train", "valid", "test")
        for m in read_split(soundfont_corpus, s).values()
        if m["soundfont"] == "B.sf2"
    }
    splits = {s: read_split(out, s) for s in ("train", "valid", "test")}
    assert {m["instrument_str"] for m in splits["test"].values()} == held
    for split in ("train", "valid"):
        assert splits[split] and not any(m["soundfont"] == "B.sf2" for m in splits[split].values())
    n_source = sum(len(read_split(soundfont_corpus, s)) for s in ("train", "valid", "test"))
    assert sum(map(len, splits.values())) == n_source
    assert summary["splits"]["test"] == {
        "instruments": len(held),
        "notes": len(splits["test"]),
        "groups": ["B.sf2"],
    }
    for split, examples in splits.items():
        for note_id, meta in examples.items():
            link = os.path.join(out, f"nsynth-{split}", "audio", f"{note_id}.wav")
            source = os.path.join(soundfont_corpus, f"nsynth-{meta['corpus_split']}", "audio", f"{note_id}.wav")
            assert os.path.islink(link) and os.path.samefile(link, source)
    manifests = prepare_nsynth(
        out,
        str(tmp_path / "save"),
        protocol={"enrolments_per_instrument": 2, "targets_per_note": 2, "nontargets_per_note": 2},
    )
    with open(manifests["test"]) as handle:
        assert sum(1 for _ in handle) - 1 == len(splits["test"])
    # Built once: the same call reuses it; other inputs are refused; bad names are explained.
    assert build_leave_one_source_out(soundfont_corpus, out, "B") == summary
    with pytest.raises(RuntimeError, match="other inputs"):
        build_leave_one_source_out(soundfont_corpus, out, "C")
    with pytest.raises(ValueError, match="no instrument of source 'D.sf2'"):
        build_leave_one_source_out(soundfont_corpus, str(tmp_path / "x"), "D.sf2")


def test_leave_one_source_out_holds_out_the_whole_group(soundfont_corpus, tmp_path):
    """Sources A and B share a group (B a copy of A, like MuseScore_General of FluidR3): leaving out B leaves out A."""
    from benchmark import build_leave_one_source_out

    for split in ("train", "valid", "test"):
        path = os.path.join(soundfont_corpus, f"nsynth-{split}", "examples.json")
        examples = read_split(soundfont_corpus, split)
        for meta in examples.values():
            meta["sound_source"] = meta.pop("soundfont")[0].lower()
            meta["source_group"] = "ab" if meta["sound_source"] in "ab" else meta["sound_source"]
        with open(path, "w") as handle:
            json.dump(examples, handle)
    out = str(tmp_path / "loso")
    summary = build_leave_one_source_out(soundfont_corpus, out, "b")
    splits = {s: read_split(out, s) for s in ("train", "valid", "test")}
    assert {m["sound_source"] for m in splits["test"].values()} == {"a", "b"}
    assert {m["sound_source"] for s in ("train", "valid") for m in splits[s].values()} == {"c"}
    assert summary["groups"] == ["ab"] and summary["splits"]["train"]["groups"] == ["c"]


def _makefile_demo_overrides():
    """The overrides ``make demo`` gives train.py, as make and the shell expand its DEMO_OVERRIDES."""
    rule = '_demo_overrides:\n\t@overrides="$(DEMO_OVERRIDES)" && echo $$overrides\n'
    proc = subprocess.run(
        [
            "make",
            "-s",
            "--no-print-directory",
            "-f",
            "Makefile",
            "-f",
            "-",
            "_demo_overrides",
            f"PYTHON={sys.executable}",
        ],
        input=rule,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def _shipped_budgets():
    """(system, overrides) for every system of the CPU budget file, and its demo."""
    import benchmark
    import budget

    config = benchmark.load_config(benchmark.DEFAULT_CONFIG)
    budgets = [
        (system, benchmark.merge_overrides(config["common"], sizes)) for system, sizes in config["systems"].items()
    ]
    budgets.append(("transMel", budget.system_overrides(budget.load_budget(BUDGET_FILE), "transMel", demo=True)))
    return budgets


def test_every_system_is_in_the_budget():
    import benchmark

    assert sorted(benchmark.load_config(benchmark.DEFAULT_CONFIG)["systems"]) == SYSTEM_YAMLS


@pytest.mark.parametrize("system,overrides", _shipped_budgets(), ids=lambda v: v if isinstance(v, str) else "")
def test_shipped_budgets_set_real_keys_of_each_yaml(system, overrides, tmp_path):
    """A misspelt key in the budget file would stop a long run at its start, or
    (as a new key) change nothing; every override must name a key of the system's YAML and take effect."""
    import profile_systems
    from hyperpyyaml import load_hyperpyyaml

    _, values = profile_systems.cli_to_overrides(overrides)
    assert values, overrides
    with open(os.path.join(REPO, "hparams", f"{system}.yaml")) as fin:  # its checkpointer makes a folder
        hparams = load_hyperpyyaml(fin, {**values, "output_folder": str(tmp_path / "out")})
    for key, value in values.items():
        assert hparams[key] == value, key


def test_the_demo_and_the_benchmark_read_one_budget():
    """make demo trains what budget.py prints from the budget file: common + transMel's + demo's overrides,
    which differ from the benchmark's transMel only in the epochs and the benchmark's checkpoint setting."""
    import benchmark
    import budget

    proc = subprocess.run(
        [sys.executable, BUDGET_PY, BUDGET_FILE, "transMel", "--demo"], capture_output=True, text=True, check=True
    )
    printed = proc.stdout.split()
    shipped = budget.load_budget(BUDGET_FILE)
    assert printed == budget.system_overrides(shipped, "transMel", demo=True)
    assert _makefile_demo_overrides() == printed
    config = benchmark.load_config(BUDGET_FILE)
    bench = dict(
        arg[2:].split("=", 1) for arg in benchmark.merge_overrides(config["common"], config["systems"]["transMel"])
    )
    demo = dict(arg[2:].split("=", 1) for arg in printed)
    # The demo keeps the YAML's intra-epoch checkpoints; the benchmark checkpoints at epoch ends.
    assert {k for k in set(bench) | set(demo) if bench.get(k) != demo.get(k)} == {"ckpt_interval_minutes"}
    assert demo["number_of_epochs"] == bench["number_of_epochs"] == "8"
    # One hop for every system, written once in common; its exceptions are per system.
    assert "--hop_ms=20" in shipped["common"] and not any("hop" in a for s in shipped["systems"].values() for a in s)
    unknown = subprocess.run([sys.executable, BUDGET_PY, BUDGET_FILE, "noSuchSystem"], capture_output=True, text=True)
    assert unknown.returncode == 2 and "no overrides for 'noSuchSystem'" in unknown.stderr and not unknown.stdout


def test_budget_file_errors(tmp_path):
    import budget

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"common": ["--output_folder=x"], "systems": {}}))
    with pytest.raises(budget.BudgetError, match="output_folder"):
        budget.load_budget(str(path))
    path.write_text(yaml.safe_dump({"common": "--lr=0.1"}))
    with pytest.raises(budget.BudgetError, match="list"):
        budget.load_budget(str(path))
    path.write_text(yaml.safe_dump({"systems": {"melspec": ["--seed=1"]}, "demo": ["--bad value"]}))
    proc = subprocess.run([sys.executable, BUDGET_PY, str(path), "melspec", "--demo"], capture_output=True, text=True)
    assert proc.returncode == 2 and "white space" in proc.stderr


def _frontend_sizes(module):
    """(filters, window samples, hop samples) of a built front end."""
    name = type(module).__name__
    if name == "TransformLayer":
        return module.out_channels, module.kernel_size, module.stride
    if name == "Fbank":
        stft = module.compute_STFT
        return module.compute_fbanks.n_mels, stft.win_length, stft.hop_length
    if name == "Leaf":
        return module.complex_conv.filters, module.complex_conv.kernel_size, module.pooling.stride
    raise AssertionError(f"unknown front end {name}")


#: The paper's sizes, the YAML defaults: filters, window (taps or samples), hop (samples at 16 kHz).
PAPER_FRONTENDS = {
    "transMel": (122, 801, 192),
    "transMIDI": (122, 801, 192),
    "leaf": (122, 801, 192),
    "melspec": (128, 800, 192),
    "xvector": (128, 800, 192),
    "ecapa": (128, 800, 192),
}


@pytest.mark.parametrize("system", SYSTEM_YAMLS)
def test_one_front_end_vocabulary(system, tmp_path):
    """n_filters, win_ms and hop_ms size every front end: the defaults are the paper's, and one
    override changes the same size in every system (window length + 1 for the odd transform kernels)."""
    from hyperpyyaml import load_hyperpyyaml

    def sizes(**overrides):
        with open(os.path.join(REPO, "hparams", f"{system}.yaml")) as fin:
            hparams = load_hyperpyyaml(fin, dict(overrides, output_folder=str(tmp_path)))
        return tuple(int(v) for v in _frontend_sizes(hparams["compute_features"]))

    assert sizes() == PAPER_FRONTENDS[system]
    filters, window, _ = PAPER_FRONTENDS[system]
    assert sizes(hop_ms=20) == (filters, window, 320)
    assert sizes(n_filters=40, win_ms=25, hop_ms=10) == (40, window - 400, 160)


def test_budget_doctests():
    import doctest

    import budget

    assert doctest.testmod(budget).failed == 0


def test_instrument_subset_corpus_is_nested_and_keeps_valid_test_and_families(tmp_path):
    from benchmark import build_instrument_subset

    corpus = make_nsynth_corpus(str(tmp_path / "corpus"), instruments_per_split=(16, 4, 4), pitches=(60,), seconds=0.1)
    kept = {}
    for fraction in (0.25, 0.5, 0.75, 1.0):
        out = str(tmp_path / f"subset_{fraction}")
        summary = build_instrument_subset(corpus, out, fraction, seed=3)
        train = read_split(out, "train")
        kept[fraction] = {m["instrument_str"] for m in train.values()}
        # Four instruments a family: ceil(fraction * 4) of each, every family kept.
        families = [m["instrument_family_str"] for m in {m["instrument_str"]: m for m in train.values()}.values()]
        assert sorted(set(families)) == ["bass", "brass", "flute", "guitar"]
        assert all(families.count(f) == math.ceil(fraction * 4) for f in set(families))
        assert summary["splits"]["train"]["instruments"] == len(kept[fraction]) == 4 * math.ceil(fraction * 4)
        for split in ("valid", "test"):
            assert read_split(out, split).keys() == read_split(corpus, split).keys()
        for note_id, meta in train.items():
            link = os.path.join(out, "nsynth-train", "audio", f"{note_id}.wav")
            assert meta["corpus_split"] == "train" and os.path.islink(link)
    assert kept[0.25] < kept[0.5] < kept[0.75] < kept[1.0]  # nested draws
    assert kept[1.0] == {m["instrument_str"] for m in read_split(corpus, "train").values()}
    assert build_instrument_subset(corpus, str(tmp_path / "subset_0.5"), 0.5, seed=3)["fraction"] == 0.5  # reused
    with pytest.raises(RuntimeError, match="other inputs"):
        build_instrument_subset(corpus, str(tmp_path / "subset_0.5"), 0.5, seed=4)
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            build_instrument_subset(corpus, str(tmp_path / "bad"), bad)


def test_instrument_curve_trains_every_point_for_the_same_steps(tiny_corpus, tmp_path, monkeypatch):
    import instrument_curve

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_CONFIG))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "curve"
    argv = [f"--config={config}", f"--corpus={tiny_corpus}", f"--output={out}", "--system=melspec"]
    argv += ["--fractions=0.5", f"--nsynth_real={tmp_path / 'absent'}"]
    report = instrument_curve.main(argv)
    full, half = sorted(report["points"], key=lambda p: -p["fraction"])
    assert [p["fraction"] for p in report["points"]] == [0.5, 1.0]
    assert full["train_instruments"] == 6 and half["train_instruments"] == 4  # one per family of four
    crops = report["crops_per_epoch"]
    assert crops == instrument_curve.training_notes(os.path.join(full["folder"], "melspec"))
    assert instrument_curve.training_notes(os.path.join(half["folder"], "melspec")) < crops

    def steps(point):
        ckpts = sorted((Path(point["folder"]) / "melspec" / "save").glob("CKPT*/brain.ckpt"))
        return yaml.safe_load(ckpts[-1].read_text())["optimizer_step"]

    assert steps(half) == steps(full) == crops // 8  # batch 8, last partial batch dropped
    for name in ("curve.json", "curve.md", "curve.png"):
        assert (out / name).is_file()
    assert "| 4 | 0.5 |" in (out / "curve.md").read_text()
    with pytest.raises(SystemExit):
        instrument_curve.parse_args(["--fractions=0,1"])
