"""benchmarks/note_span.py: a model evaluated on the first T seconds of each note, for several T."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO
from test_recipe_nsynth import run_recipe

SCRIPT = os.path.join(REPO, "benchmarks", "note_span.py")


def load_script():
    spec = importlib.util.spec_from_file_location("note_span", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


@pytest.mark.parametrize("case", ["missing model", "bad span", "model span"])
def test_bad_input_is_one_line_and_writes_nothing(case, tiny_model, tiny_corpus, tmp_path):
    model, spans = str(tiny_model), ["2.5"]
    if case == "missing model":
        model = str(tmp_path / "nowhere")
    elif case == "bad span":
        spans = ["-1"]
    else:
        spans = ["model"]
    out = tmp_path / "out"
    cmd = [sys.executable, SCRIPT, "--model", model, "--notes", str(tiny_corpus), "--spans", *spans]
    proc = subprocess.run([*cmd, "--output", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    expected = {
        "missing model": "no exported model at",
        "bad span": "must be a positive number of seconds, 'whole' or 'model', got -1",
        "model span": "give numbers of seconds or 'whole'",
    }[case]
    assert expected in last
    assert not out.exists()
