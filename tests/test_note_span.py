"""benchmarks/note_span.py: a model evaluated on the first T seconds of each note, for several T."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, load_module
from test_recipe_nsynth import run_recipe

SCRIPT = os.path.join(REPO, "benchmarks", "note_span.py")


def load_script():
    return load_module(SCRIPT)


@pytest.fixture(scope="module")
def tiny_model(tiny_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("span") / "transMel"
    run_recipe("transMel", tiny_corpus, out)
    return out / "model"


def test_spans_change_what_is_embedded_and_whole_is_the_recipes_evaluation(tiny_model, tiny_corpus, tmp_path):
    script = load_script()
    out = tmp_path / "spans"
    args = ["--model", str(tiny_model), "--notes", str(tiny_corpus), "--spans", "0.25", "whole"]
    rows = script.main([*args, "--output", str(out)])
    assert [r["span_seconds"] for r in rows] == [0.25, None]
    assert all(r["n_notes"] == 48 and r["model_name"] == "transMel" for r in rows)
    # The tiny run's own span is its 1 s notes whole: the "whole" row's family figure is its test
    # evaluation's (the same embeddings; the trial lists differ in size, so the EERs may not).
    results = json.loads((tiny_model.parent / "results.json").read_text())
    assert results["eval_seconds"] == 1.0
    assert rows[1]["family_micro_f1"] == pytest.approx(results["family_micro_f1"])
    folder = out / "transMel" / "nsynth-test"
    short = np.load(folder / "0.25s" / "embeddings.npy")
    whole = np.load(folder / "whole" / "embeddings.npy")
    assert short.shape == whole.shape == (48, 32) and not np.allclose(short, whole, atol=1e-3)
    assert json.loads((folder / "0.25s" / "results.json").read_text())["eval_seconds"] == 0.25
    table = (out / "note_span.md").read_text()
    assert "| transMel | nsynth-test | 0.25 s |" in table and "| transMel | nsynth-test | whole |" in table
    assert (out / "note_span.png").stat().st_size > 0
    assert json.loads((out / "note_span.json").read_text())["rows"] == rows


@pytest.mark.parametrize("case", ["missing model", "negative span", "infinite span", "model span", "output is a file"])
def test_bad_input_is_one_line_and_writes_nothing(case, tiny_model, tiny_corpus, tmp_path):
    model, spans, out = str(tiny_model), ["2.5"], tmp_path / "out"
    if case == "missing model":
        model = str(tmp_path / "nowhere")
    elif case == "output is a file":
        out.write_text("mine")
    else:
        spans = ["2.5", {"negative span": "-1", "infinite span": "inf", "model span": "model"}[case]]
    cmd = [sys.executable, SCRIPT, "--model", model, "--notes", str(tiny_corpus), "--spans", *spans]
    proc = subprocess.run([*cmd, "--output", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    expected = {
        "missing model": "no exported model at",
        "negative span": "must be a positive number of seconds or 'whole', got -1",
        "infinite span": "must be a positive number of seconds or 'whole', got inf",
        "model span": "must be a positive number of seconds or 'whole', got 'model'",
        "output is a file": "is a file: give a folder",
    }[case]
    assert expected in last
    assert out.read_text() == "mine" if case == "output is a file" else not out.exists()


def test_models_of_one_seed_from_two_systems_keep_their_own_rows(tiny_model, tiny_corpus, tmp_path):
    # The recipes' layout, results/<system>/<seed>/model: both runs are "1986".
    for system in ("transMel", "melspec"):
        (tmp_path / "results" / system / "1986").mkdir(parents=True)
        os.symlink(tiny_model, tmp_path / "results" / system / "1986" / "model")
    models = [str(tmp_path / "results" / s / "1986" / "model") for s in ("transMel", "melspec")]
    out = tmp_path / "spans"
    rows = load_script().main(
        ["--model", models[0], "--model", models[1], "--notes", str(tiny_corpus), "--spans", "whole"]
        + ["--output", str(out)]
    )
    assert [r["model_name"] for r in rows] == ["transMel/1986", "melspec/1986"]
    assert (out / "transMel" / "1986" / "nsynth-test" / "whole" / "results.json").exists()
    assert (out / "melspec" / "1986" / "nsynth-test" / "whole" / "results.json").exists()
