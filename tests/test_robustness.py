"""benchmarks/robustness.py: the copies it makes and its report (the figures themselves are a benchmark)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from conftest import REPO, load_module
from test_recipe_nsynth import run_recipe

SCRIPT = os.path.join(REPO, "benchmarks", "robustness.py")


def load_script():
    return load_module(SCRIPT)


def test_copies_are_what_they_claim(tmp_path):
    robustness = load_script()
    t = np.arange(16000) / 16000
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    read = {
        kind: sf.read(robustness.make_copy(tone, 16000, kind, str(tmp_path), f"c{k}"))[0]
        for k, kind in enumerate(robustness.COPIES)
    }
    assert np.abs(read["FLAC"] - tone).max() < 1e-4
    assert np.sqrt(np.mean(read["-20 dB"] ** 2)) == pytest.approx(0.1 * np.sqrt(np.mean(tone**2)), rel=1e-3)
    for level in (-90, -70):
        noise = read[f"noise {level} dBFS"] - tone
        assert 20 * np.log10(np.sqrt(np.mean(noise**2))) == pytest.approx(level, abs=0.5)
    error = read["8-bit WAV"] - tone
    assert 1e-4 < np.abs(error).max() <= 1 / 128 + 1e-6  # 8-bit quantisation, not a lossless copy
    assert read["MP3"].shape[0] >= 15000 and read["Ogg"].shape[0] >= 15000


def test_report_end_to_end_on_a_tiny_model(tiny_corpus, tmp_path):
    run_recipe("melspec", tiny_corpus, tmp_path / "run")
    out = tmp_path / "rob"
    folder = os.path.join(tiny_corpus, "nsynth-test")
    proc = subprocess.run(
        [
            sys.executable,
            SCRIPT,
            "--model",
            str(tmp_path / "run" / "model"),
            "--notes",
            folder,
            "--per-folder",
            "4",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "robustness.json").read_text())
    notes = report["notes"][folder]
    assert len(notes) == 4 and len({os.path.basename(n).rsplit("-", 2)[0] for n in notes}) == 4  # 4 instruments
    rows = {r["copy"]: r for r in report["rows"]}
    assert set(rows) == set(load_script().COPIES) and all(r["n"] == 4 for r in rows.values())
    assert rows["FLAC"]["median_cosine"] > 0.999  # lossless: the same embedding
    assert (out / "robustness.png").stat().st_size > 0 and "judged different" in (out / "robustness.md").read_text()
