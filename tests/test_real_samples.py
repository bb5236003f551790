"""benchmarks/real_samples.py: every real sample is mapped to a family and scored."""

import glob
import json
import os

from conftest import REPO, SHARED_DATA, load_module
from test_recipe_nsynth import run_recipe

from timbre_lobes.data.nsynth_labels import FAMILIES


def load_script():
    return load_module(os.path.join(REPO, "benchmarks", "real_samples.py"))


def test_every_shared_sample_has_an_nsynth_family():
    real = load_script()
    assert set(real.PHILHARMONIA_FAMILIES.values()) <= set(FAMILIES) and set(real.RWC_FAMILIES.values()) <= set(
        FAMILIES
    )
    phil = glob.glob(os.path.join(SHARED_DATA, "philharmonia-sample", "*.mp3"))
    rwc = glob.glob(os.path.join(SHARED_DATA, "rwc-sample", "notes", "*.flac"))
    assert len(phil) == 24 and len(rwc) == 13
    assert {real.philharmonia_family(p) for p in phil} == {"string", "flute", "reed", "brass"}
    assert real.rwc_family("171VCNOP_1.flac") == "string" and real.rwc_family("302FGSTM_2.flac") == "reed"
    assert all(real.rwc_family(p) is not None for p in rwc)
    assert real.rwc_family("x.flac") is None and real.philharmonia_family("kazoo_A4.mp3") is None


def test_report_on_a_tiny_model(tiny_corpus, tmp_path):
    run_recipe("melspec", tiny_corpus, tmp_path / "run")
    real = load_script()
    report = real.main(["--model", str(tmp_path / "run" / "model"), "--output", str(tmp_path / "real")])
    assert report["nsynth-test-dev"]["n_notes"] == 400 and 0 <= report["nsynth-test-dev"]["EER"] <= 100
    for name, n in (("philharmonia-sample", 24), ("rwc-sample/notes", 13)):
        assert report[name]["n"] == n and report[name]["n_unmapped"] == 0 and 0 <= report[name]["accuracy"] <= 1
    saved = json.loads((tmp_path / "real" / "real_samples.json").read_text())
    assert saved["philharmonia-sample"]["rows"][0]["true"] == "string"  # cello, sorted first
    assert "philharmonia-sample" in (tmp_path / "real" / "real_samples.md").read_text()
    # 25 instruments: intervals from resampling them, around the figure.
    nsynth = report["nsynth-test-dev"]
    assert nsynth["ci_instruments"] == 25 and nsynth["ci_level"] == 0.95
    assert nsynth["EER_ci"][0] <= nsynth["EER"] <= nsynth["EER_ci"][1]
    assert nsynth["family_micro_f1_ci"][0] <= nsynth["family_micro_f1"] <= nsynth["family_micro_f1_ci"][1]
    assert "resampling the 25 instruments" in (tmp_path / "real" / "real_samples.md").read_text()
