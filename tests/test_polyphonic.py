"""Polyphonic mixtures: the sampler, its manifest, the scores, the baseline recipe and the ``detect`` verb."""

import glob
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from conftest import REPO, SHARED_DATA, rewrite_examples
from test_inference import run_cli
from test_recipe_nsynth import run_recipe

from timbre_lobes.data.nsynth import read_nsynth_folder
from timbre_lobes.polyphonic import detection
from timbre_lobes.polyphonic.evaluate import mixture_set
from timbre_lobes.polyphonic.mixtures import (
    PEAK,
    MixtureError,
    labels_of,
    mix_audio,
    read_mixtures,
    sample_mixtures,
    split_enrolment,
)

SETTINGS = {
    "max_sources": 3,
    "min_sources": 1,
    "seconds": 1.5,
    "max_onset_seconds": 0.4,
    "gain_db": [-12.0, 0.0],
    "scale": None,
}


def notes_of(corpus, split):
    folder = os.path.join(corpus, f"nsynth-{split}")
    return read_nsynth_folder(folder, data_root=folder), folder


# ---------------------------------------------------------------------------
# The sampler and the mixing
# ---------------------------------------------------------------------------


def test_mixture_is_the_sum_of_its_labelled_notes(tiny_corpus):
    notes, folder = notes_of(tiny_corpus, "train")
    mixtures = sample_mixtures(notes, 12, max_sources=4, seconds=1.5, max_onset_seconds=0.5, seed=3)
    by_id = {row["ID"]: row for row in notes}
    for mixture in mixtures:
        instruments, families = labels_of(mixture)
        assert len(instruments) == mixture["n_sources"] == len(mixture["sources"])  # distinct instruments
        expected = np.zeros(int(1.5 * 16000))
        for source in mixture["sources"]:
            row = by_id[source["note"]]
            assert (source["instrument"], source["family"]) == (row["instrument"], row["family"])
            audio, _ = sf.read(row["wav"].replace("$data_root", folder))
            start = int(round(source["onset"] * 16000))
            piece = audio[: len(expected) - start]
            expected[start : start + len(piece)] += 10 ** (source["gain_db"] / 20) * piece
            assert 0 <= source["onset"] <= 0.5 and -12 <= source["gain_db"] <= 0
        expected *= PEAK / np.abs(expected).max()
        mixed = mix_audio(mixture, data_root=folder)
        assert mixed.shape == expected.shape and np.abs(mixed).max() == pytest.approx(PEAK, abs=1e-6)
        np.testing.assert_allclose(mixed, expected, atol=1e-5)
        assert families == {by_id[s["note"]]["family"] for s in mixture["sources"]}
    assert [m["n_sources"] for m in mixtures[:4]] == [1, 2, 3, 4]  # balanced counts


def test_draw_is_deterministic_and_depends_on_the_seed(tiny_corpus):
    notes, _ = notes_of(tiny_corpus, "train")
    a = sample_mixtures(notes, 20, max_sources=3, seed=1)
    assert a == sample_mixtures(list(reversed(notes)), 20, max_sources=3, seed=1)  # not the rows' order
    assert a != sample_mixtures(notes, 20, max_sources=3, seed=2)


def test_scale_keeps_every_mixture_in_one_key(tiny_corpus):
    notes, _ = notes_of(tiny_corpus, "train")  # pitches 48 55 60 67 72 79: pitch classes 0 and 7
    for mixture in sample_mixtures(notes, 30, max_sources=3, scale="major", seed=0):
        classes = {s["pitch"] % 12 for s in mixture["sources"]}
        assert any(classes <= {(root + step) % 12 for step in (0, 2, 4, 5, 7, 9, 11)} for root in range(12))


def test_bad_requests_are_refused(tiny_corpus):
    notes, _ = notes_of(tiny_corpus, "test")  # 4 instruments
    with pytest.raises(MixtureError, match="4 instruments cannot give mixtures of 5"):
        sample_mixtures(notes, 3, max_sources=5)
    with pytest.raises(MixtureError, match="max_onset_seconds"):
        sample_mixtures(notes, 3, seconds=1.0, max_onset_seconds=1.0)
    with pytest.raises(MixtureError, match="scale"):
        sample_mixtures(notes, 3, scale="dorian")


def test_test_mixtures_hold_only_unseen_instruments_and_never_an_enrolment_note(tiny_corpus, tmp_path):
    train, _ = notes_of(tiny_corpus, "train")
    seen = {row["instrument"] for row in train}
    folder = os.path.join(tiny_corpus, "nsynth-test")
    mixtures, enrol, root = mixture_set(folder, tmp_path / "test.json", 8, SETTINGS, n_enrol=3, seed=0)
    used = {s["note"] for m in mixtures for s in m["sources"]}
    assert not {s["instrument"] for m in mixtures for s in m["sources"]} & seen
    assert not used & {row["ID"] for rows in enrol.values() for row in rows}
    assert sorted(enrol) == sorted({row["instrument"] for row in notes_of(tiny_corpus, "test")[0]})
    assert all(len(rows) == 3 for rows in enrol.values()) and root == os.path.abspath(folder)


def test_manifest_is_written_once_and_redrawn_for_other_settings(tiny_corpus, tmp_path, capsys):
    folder = os.path.join(tiny_corpus, "nsynth-test")
    path = tmp_path / "mixtures.json"
    first, _, _ = mixture_set(folder, path, 4, SETTINGS, seed=0)
    assert "drew 12 mixtures (no manifest yet)" in capsys.readouterr().out
    stamp = os.stat(path).st_mtime_ns
    again, _, _ = mixture_set(folder, path, 4, SETTINGS, seed=0)
    assert again == first and os.stat(path).st_mtime_ns == stamp  # reused, not rewritten
    assert "reusing its 12 mixtures" in capsys.readouterr().out  # the user is told which
    record = json.loads(path.read_text())
    assert record["mixtures"] == first and record["options"]["n_mixtures"] == 12
    assert sorted(record["enrolment"]) == sorted({s["instrument"] for m in first for s in m["sources"]})
    other, _, _ = mixture_set(folder, path, 4, {**SETTINGS, "gain_db": [-6.0, 0.0]}, seed=0)
    assert other != first and read_mixtures(path)["options"]["gain_db"] == [-6.0, 0.0]
    assert "drawn with other settings (gain_db)" in capsys.readouterr().out
    path.write_text('{"version": 1, "options"')  # a manifest cut short is redrawn, not trusted
    assert mixture_set(folder, path, 4, SETTINGS, seed=0)[0] == first
    assert "unreadable or cut short" in capsys.readouterr().out


def test_split_enrolment_keeps_a_note_to_mix():
    notes = [{"ID": f"n{i}", "instrument": "a" if i < 2 else "b"} for i in range(7)]
    enrol, rest = split_enrolment(notes, n_enrol=3)
    assert len(enrol["a"]) == 1 and len(enrol["b"]) == 3 and len(rest) == 3


# ---------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------


def _toy_mixtures():
    """Six mixtures of instruments a, b, c (families x, x, y), 1 to 3 sources."""
    fam = {"a": "x", "b": "x", "c": "y"}
    sets = [["a"], ["b", "c"], ["a", "b", "c"], ["c"], ["a", "c"], ["a", "b", "c"]]
    return [
        {"id": str(i), "n_sources": len(s), "sources": [{"instrument": n, "family": fam[n]} for n in s]}
        for i, s in enumerate(sets)
    ]


def test_detection_scores_by_number_of_sources():
    mixtures = _toy_mixtures()
    truth = detection.presence_matrix(mixtures, ["a", "b", "c"], "instrument")
    assert truth.tolist()[1] == [0, 1, 1]
    perfect = detection.detection_scores(truth + 0.1, truth, mixtures)
    assert perfect["all"]["EER"] == 0.0 and perfect["all"]["n_targets"] == truth.sum()
    assert perfect["by_sources"][3] is None  # every instrument plays in 3-source mixtures: no non-target
    wrong = detection.detection_scores(1.0 - truth, truth, mixtures)
    assert wrong["all"]["EER"] == 100.0 and wrong["by_sources"][1]["EER"] == 100.0
    rates = detection.rates_at(truth + 0.1, truth, threshold=0.5)
    assert rates["miss_rate"] == 0.0 and rates["false_alarm_rate"] == 0.0


def test_family_presence_scores_and_the_chosen_threshold():
    mixtures = _toy_mixtures()
    truth = detection.presence_matrix(mixtures, ["x", "y", "z"], "family")
    scores = 0.3 + 0.4 * truth  # present 0.7, absent 0.3
    threshold = detection.best_threshold(truth, scores)
    assert 0.3 < threshold <= 0.7
    result = detection.family_presence_scores(scores, truth, mixtures, threshold, ["x", "y", "z"])
    assert result["all"]["micro_f1"] == 1.0 and result["all"]["micro_mAP"] == 1.0
    assert set(result["all"]["per_family_f1"]) == {"x", "y"}  # z never plays: not averaged in
    flipped = detection.family_presence_scores(1 - scores, truth, mixtures, 0.5, ["x", "y", "z"])
    assert flipped["all"]["micro_f1"] == 0.0


def test_instrument_intervals_contain_the_figure_and_widen_with_fewer_instruments():
    rng = np.random.default_rng(0)

    def draw(n_instruments, n_mixtures=120):
        names = [f"i{k}" for k in range(n_instruments)]
        mixtures = []
        for i in range(n_mixtures):
            chosen = rng.choice(n_instruments, size=int(rng.integers(1, 3)), replace=False)
            sources = [{"instrument": names[k], "family": "xy"[k % 2]} for k in chosen]
            mixtures.append({"id": str(i), "n_sources": len(sources), "sources": sources})
        truth = detection.presence_matrix(mixtures, names, "instrument")
        scores = truth + rng.normal(scale=0.6, size=truth.shape)  # a detector that errs
        fam_truth = detection.presence_matrix(mixtures, ["x", "y"], "family")
        fam_scores = fam_truth + rng.normal(scale=0.6, size=fam_truth.shape)
        found = detection.instrument_intervals(scores, truth, names, fam_scores, fam_truth, 0.5, mixtures, 300)
        eer = detection.detection_scores(scores, truth, mixtures)["all"]["EER"]
        f1 = detection.family_presence_scores(fam_scores, fam_truth, mixtures, 0.5, ["x", "y"])["all"]["micro_f1"]
        return found, eer, f1

    few, eer, f1 = draw(6)
    assert few["ci_instruments"] == 6 and few["ci_level"] == 0.95
    assert few["EER_ci"][0] <= eer <= few["EER_ci"][1] and few["family_micro_f1_ci"][0] <= f1
    assert f1 <= few["family_micro_f1_ci"][1] and few["family_micro_mAP_ci"][0] < few["family_micro_mAP_ci"][1]
    pairs = [{"id": "0", "n_sources": 2, "sources": [{"instrument": n, "family": "x"} for n in ("i0", "i1")]}]
    truth = detection.presence_matrix(pairs, ["i0", "i1"], "instrument")
    family = truth[:, :1]
    lone = detection.instrument_intervals(truth * 1.0, truth, ["i0", "i1"], family * 1.0, family, 0.5, pairs)
    assert lone["EER_ci"] is None  # every trial is a target: no resample can be scored, so no interval (not NaN)
    many, _, _ = draw(60, n_mixtures=1200)
    width = lambda found: found["EER_ci"][1] - found["EER_ci"][0]  # noqa: E731
    assert width(many) < width(few)  # more instruments, a narrower interval


def test_window_scores_take_the_best_window():
    enrolled = np.array([[1.0, 0.0], [0.0, 1.0]])
    windows = np.array([[1.0, 1.0], [0.0, 3.0]])
    np.testing.assert_allclose(detection.window_scores(windows, enrolled), [np.sqrt(0.5), 1.0])
    names, unit = detection.enrolment_embeddings({"b": np.array([[0.0, 2.0]]), "a": np.array([[3.0, 0], [0, 3.0]])})
    assert names == ["a", "b"]
    np.testing.assert_allclose(unit, [[np.sqrt(0.5), np.sqrt(0.5)], [0.0, 1.0]])


# ---------------------------------------------------------------------------
# The recipe and the verb, with a tiny trained model
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tiny_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("poly_model") / "transMel"
    run_recipe("transMel", tiny_corpus, out)
    return out / "model"


def test_baseline_recipe_end_to_end(tiny_model, tiny_corpus, shared_nsynth, tmp_path):
    out = tmp_path / "poly"
    cmd = [
        sys.executable,
        os.path.join(REPO, "recipes", "Polyphonic", "evaluate.py"),
        os.path.join(REPO, "hparams", "poly_baseline.yaml"),
        f"--model={tiny_model}",
        f"--data_folder={tiny_corpus}",
        f"--real_folder={shared_nsynth}",
        f"--output_folder={out}",
        "--valid_per_count=3",
        "--test_per_count=4",
        "--sampler={min_sources: 1, max_sources: 3, seconds: 1.5, max_onset_seconds: 0.4, gain_db: [-12, 0], "
        "scale: null}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((out / "polyphonic.json").read_text())
    corpus = os.path.basename(tiny_corpus)  # a synthetic corpus, not the render package's: named after its folder
    assert list(record["results"]) == [f"{corpus} valid", f"{corpus} test", "real NSynth"]
    assert record["run"]["valid_set"] == f"{corpus} valid"
    real = record["results"]["real NSynth"]["windows"]
    assert set(real["detection"]["by_sources"]) == {"1", "2", "3"}
    assert 0.0 <= real["detection"]["all"]["EER"] <= 100.0
    valid_threshold = record["results"][f"{corpus} valid"]["clip"]["family_presence"]["threshold"]
    assert record["results"][f"{corpus} test"]["clip"]["family_presence"]["threshold"] == valid_threshold
    assert record["run"]["sets"]["real NSynth"]["n_instruments"] == 25
    for name in ("polyphonic.md", "by_sources.png", f"{corpus}_test_mixtures.json", "real_NSynth_mixtures.json"):
        assert (out / name).stat().st_size > 0
    assert "## real NSynth" in (out / "polyphonic.md").read_text()
    low, high = real["intervals"]["EER_ci"]  # the 25 real instruments resampled
    assert low <= real["detection"]["all"]["EER"] <= high and real["intervals"]["ci_instruments"] == 25
    assert "bootstrap intervals of the overall EER" in (out / "polyphonic.md").read_text()
    # Two reports side by side (benchmarks/polyphonic_compare.py): one row per model and set, no validation rows.
    compare = [sys.executable, os.path.join(REPO, "benchmarks", "polyphonic_compare.py")]
    reports = [f"--report=a={out / 'polyphonic.json'}", f"--report=b={out / 'polyphonic.json'}"]
    proc = subprocess.run(
        [*compare, *reports, f"--output={tmp_path / 'cmp'}"], capture_output=True, text=True, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in (tmp_path / "cmp" / "compare.md").read_text().splitlines() if line.startswith("| a |")]
    assert [row.split(" | ")[1] for row in rows] == [f"{corpus} test", "real NSynth"]
    clip = record["results"]["real NSynth"]["clip"]["detection"]["all"]["EER"]
    low, high = record["results"]["real NSynth"]["clip"]["intervals"]["EER_ci"]
    assert (
        rows[1].split(" | ")[2] == f"{clip:.1f} [{low:.1f}, {high:.1f}]"
        and (tmp_path / "cmp" / "compare.png").stat().st_size > 0
    )
    # Paired differences from the trial scores kept beside each report: a model against itself differs by 0 ...
    paired = json.loads((tmp_path / "cmp" / "compare.json").read_text())["paired"]
    assert [row["set"] for row in paired] == [f"{corpus} test", "real NSynth"]
    for row in paired:
        assert row["EER"]["difference"] == 0.0 and row["EER"]["ci"] == [0.0, 0.0]
    # ... and one that detects every real instrument perfectly is better by its whole EER, beyond the noise.
    better = tmp_path / "better"
    shutil.copytree(out, better)
    with np.load(better / "real_NSynth_scores.npz") as data:
        arrays = {key: data[key] for key in data.files}
    arrays["clip_detection"] = arrays["detection_truth"] + 0.0
    np.savez_compressed(better / "real_NSynth_scores.npz", **arrays)
    reports = [f"--report=a={out / 'polyphonic.json'}", f"--report=perfect={better / 'polyphonic.json'}"]
    proc = subprocess.run([*compare, *reports, f"--output={tmp_path / 'cmp3'}"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (real_row,) = [
        r for r in json.loads((tmp_path / "cmp3" / "compare.json").read_text())["paired"] if r["set"] == "real NSynth"
    ]
    assert real_row["EER"]["difference"] == pytest.approx(-clip) and real_row["EER"]["ci"][1] < 0
    assert "| perfect | real NSynth |" in (tmp_path / "cmp3" / "compare.md").read_text()
    proc = subprocess.run([*compare, f"--report=a={tmp_path / 'none.json'}"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode != 0 and "not a readable polyphonic.json" in proc.stderr
    other = json.loads((out / "polyphonic.json").read_text())
    other["run"]["mixture_seed"] = 7
    (tmp_path / "other.json").write_text(json.dumps(other))
    reports = [f"--report=a={out / 'polyphonic.json'}", f"--report=b={tmp_path / 'other.json'}"]
    proc = subprocess.run(
        [*compare, *reports, f"--output={tmp_path / 'cmp2'}"], capture_output=True, text=True, cwd=REPO
    )
    assert proc.returncode == 0 and "not scored on the same mixtures" in proc.stderr
    assert "not scored on the same mixtures" in (tmp_path / "cmp2" / "compare.md").read_text()
    assert "no scores kept beside the report" in (tmp_path / "cmp2" / "compare.md").read_text()  # none in tmp_path
    assert "not scored on the same mixtures" not in (tmp_path / "cmp" / "compare.md").read_text()
    proc = subprocess.run(
        [*compare, f"--report=a={out / f'{corpus}_test_mixtures.json'}"], capture_output=True, text=True
    )
    assert proc.returncode != 0 and "not a polyphonic.json report" in proc.stderr


def test_baseline_recipe_stops_on_a_missing_model_before_writing(tiny_corpus, tmp_path):
    cmd = [
        sys.executable,
        os.path.join(REPO, "recipes", "Polyphonic", "evaluate.py"),
        os.path.join(REPO, "hparams", "poly_baseline.yaml"),
        f"--model={tmp_path / 'nope'}",
        f"--data_folder={tiny_corpus}",
        f"--output_folder={tmp_path / 'out'}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode != 0 and "no exported model" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_detect_verb_on_a_two_note_mixture(capsys, tiny_model, tiny_corpus, tmp_path):
    notes, folder = notes_of(tiny_corpus, "test")
    enrol, rest = split_enrolment(notes, n_enrol=3, seed=0)
    names = sorted(enrol)
    present, absent = names[0], names[1]
    second = next(r for r in rest if r["instrument"] not in (present, absent))
    first = next(r for r in rest if r["instrument"] == present)
    mixture = {
        "id": "m",
        "n_sources": 2,
        "seconds": 1.5,
        "sources": [
            {**{k: r[k] for k in ("wav", "instrument", "family")}, "note": r["ID"], "onset": o, "gain_db": 0.0}
            for r, o in ((first, 0.0), (second, 0.3))
        ],
    }
    path = tmp_path / "mix.wav"
    sf.write(path, mix_audio(mixture, data_root=folder), 16000)
    files = {n: [r["wav"].replace("$data_root", folder) for r in enrol[n]] for n in (present, absent)}

    def run(*argv):
        return run_cli(capsys, *argv)

    scores = {}
    for name in (present, absent):
        status, out, err = run("detect", path, "--enrol", *files[name], "--model", tiny_model, "--json")
        assert status == 0, err
        record = json.loads(out)
        assert record["mixture"] == str(path) and record["present"] == (record["score"] >= record["threshold"])
        assert record["window_seconds"] == 1.5  # a single-note model's default
        scores[name] = record["score"]
    from timbre_lobes.serving.inference import TimbreEncoder

    model = TimbreEncoder.from_hparams(source=str(tiny_model))
    score, _ = model.detect_files(str(path), files[present])
    assert score == pytest.approx(scores[present], abs=1e-5)
    signal = model.load_full(str(path))
    assert model.mixture_embeddings(signal, 0).shape[0] == 1  # the clip alone
    assert model.mixture_embeddings(signal, 0.5, 0.25).shape[0] == 1 + 5  # and 0.5 s windows every 0.25 s
    # The best window of the mixture holds the enrolled instrument's note alone (before the other's onset).
    assert scores[present] > scores[absent]
    status, out, err = run("detect", path, tmp_path / "missing.wav", "--enrol", *files[present], "--model", tiny_model)
    assert status == 1 and "missing.wav" in err and "score" in out
    status, _, err = run("detect", path, "--enrol", tmp_path / "none.wav", "--model", tiny_model)
    assert status == 1 and "enrolment file(s) not found" in err


# ---------------------------------------------------------------------------
# Training on mixtures
# ---------------------------------------------------------------------------


def _encoders(corpus):
    from speechbrain.dataio.encoder import CategoricalEncoder

    notes, _ = notes_of(corpus, "train")
    labels = {}
    for key, field in (("instrument", "instrument"), ("family", "family")):
        encoder = CategoricalEncoder()
        encoder.update_from_iterable(sorted({row[field] for row in notes}))
        labels[key] = encoder
    return notes, labels


def test_mixture_dataset_targets_and_draws(tiny_corpus):
    from timbre_lobes.polyphonic.training import MixtureDataset

    notes, labels = _encoders(tiny_corpus)
    folder = os.path.join(tiny_corpus, "nsynth-train")
    settings = {**SETTINGS, "max_sources": 4}
    data = MixtureDataset(labels, folder, notes=notes, n_per_epoch=8, settings=settings, seed=5)
    first = list(data.mixtures)
    item = data[2]
    mixture = data.mixtures[2]
    present = {labels["instrument"].ind2lab[i] for i in item["instrument_presence"].nonzero()[:, 0].tolist()}
    assert present == labels_of(mixture)[0] and item["instrument_presence"].sum() == mixture["n_sources"]
    families = {labels["family"].ind2lab[i] for i in item["family_presence"].nonzero()[:, 0].tolist()}
    assert families == labels_of(mixture)[1]
    np.testing.assert_allclose(item["sig"].numpy(), mix_audio(mixture, folder))
    data.draw(1)
    assert data.mixtures != first and len(data) == 8  # a new draw each epoch
    data.draw(0)
    assert data.mixtures == first  # and the same one again for the same epoch (a resumed run)
    unseen = MixtureDataset(
        labels, folder, mixtures=[{**mixture, "sources": [{**s, "instrument": "x"} for s in mixture["sources"]]}]
    )
    assert unseen[0]["instrument_presence"].sum() == 0  # an instrument outside the label space sets no column


def tiny_training_args(tiny_corpus, out):
    """recipes/Polyphonic/train.py and its arguments for a two-epoch run of a tiny model on the tiny corpus."""
    from test_recipe_nsynth import TINY_SIZES

    return [
        os.path.join(REPO, "recipes", "Polyphonic", "train.py"),
        os.path.join(REPO, "hparams", "poly_transMel.yaml"),
        f"--data_folder={tiny_corpus}",
        f"--output_folder={out}",
        "--pretrained_model=",
        "--freeze_frontend=False",
        "--number_of_epochs=2",
        "--batch_size=8",
        *TINY_SIZES,
        "--mixtures_per_epoch=16",
        "--valid_per_count=3",
        "--test_per_count=3",
        "--real_folder=null",
        # partial overrides change those keys of the YAML's mappings, the others stay
        "--train_sampler={max_sources: 3, seconds: 1.0, max_onset_seconds: 0.3}",
        "--sampler={max_sources: 3, seconds: 1.5, max_onset_seconds: 0.4}",
    ]


@pytest.mark.parametrize("objective", ["instrument_head", "distillation"])
def test_training_recipe_end_to_end(objective, tiny_corpus, tiny_model, tmp_path):

    out = tmp_path / "poly"
    # distillation: the tiny single-note model is the frozen teacher (same 32-d embeddings)
    losses = ["--distill_weight=1.0", "--instrument_weight=0", f"--teacher_model={tiny_model}"]
    cmd = [sys.executable, *tiny_training_args(tiny_corpus, out), *(losses if objective == "distillation" else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    valid = json.loads((out / "save" / "valid_mixtures.json").read_text())["options"]
    assert (valid["seconds"], valid["max_sources"], valid["gain_db"], valid["seed"]) == (1.5, 3, [-12.0, 0.0], 0)
    log = (out / "train_log.txt").read_text()
    assert "epoch: 2" in log and "EER" in log and "family_mAP" in log
    from timbre_lobes.serving.inference import TimbreEncoder

    model = TimbreEncoder.from_hparams(source=str(out / "model"))
    assert model.family_output == "sigmoid" and model.detection_threshold is not None
    assert model.detection_window_seconds == 0.0  # its threshold was chosen on whole-clip scores
    card = (out / "model" / "README.md").read_text()  # the model card says how it was trained and served
    assert "mixtures of 1 to 3 notes of distinct training instruments (16 new mixtures per epoch" in card
    assert f"- `detection_threshold: {model.detection_threshold}`: cosine at or above which" in card
    assert "- `family_output: sigmoid`" in card and "two linear heads" in card  # the YAML's head_type
    assert "python -m timbre_lobes detect mixture.wav --enrol" in card and "mixtures/polyphonic.md" in card
    emb = np.random.default_rng(0).normal(size=(2, 32))
    presence = model.family_presence(emb)
    assert presence.shape == (2, len(model.family_labels)) and not np.allclose(presence.sum(axis=1), 1.0)
    record = json.loads((out / "mixtures" / "polyphonic.json").read_text())
    corpus = os.path.basename(tiny_corpus)
    assert list(record["results"]) == [f"{corpus} valid", f"{corpus} test"]
    assert record["run"]["threshold"] == pytest.approx(model.detection_threshold)
    # the exported threshold is the EER point of the validation mixtures as the report (and detect) score them
    valid_clip = record["results"][f"{corpus} valid"]["clip"]["detection"]["all"]
    assert model.detection_threshold == pytest.approx(valid_clip["threshold"])
    assert (out / "mixtures" / "by_sources.png").stat().st_size > 0


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not installed")
def test_training_recipe_under_torchrun_two_cpu_processes(tiny_corpus, tmp_path):

    out = tmp_path / "poly"
    cmd = ["torchrun", "--standalone", "--nproc_per_node=2", *tiny_training_args(tiny_corpus, out)]
    cmd += ["--distributed_backend=gloo", "--device=cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900, env=env)
    # Both ranks once wrote the report (a race on its files); now the main process alone exports and scores.
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (ckpt,) = [d for d in (out / "save").iterdir() if d.name.startswith("CKPT")]
    brain_state = (ckpt / "brain.ckpt").read_text()
    assert "optimizer_step: 2" in brain_state  # 16 mixtures / 2 ranks / batches of 8 = 1 step per epoch
    record = json.loads((out / "mixtures" / "polyphonic.json").read_text())
    corpus = os.path.basename(tiny_corpus)
    assert list(record["results"]) == [f"{corpus} valid", f"{corpus} test"]
    assert (out / "model" / "hyperparams.yaml").exists() and proc.stdout.count("Exported the model to") == 1


def test_set_cross_entropy_shares_the_target_among_present_classes():
    import torch

    from timbre_lobes.polyphonic.training import SetCrossEntropy

    loss = SetCrossEntropy()
    logits = torch.zeros(2, 4, requires_grad=True)
    targets = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])  # the second row names no class
    value = loss(logits, targets)
    assert float(value.detach()) == pytest.approx(np.log(4.0))  # uniform scores: -log(1/4) for each present class
    value.backward()
    grad = logits.grad[0]
    assert grad[0] < 0 and grad[1] < 0 and grad[2] > 0 and grad[3] > 0  # up for present, down for absent
    assert torch.equal(logits.grad[1], torch.zeros(4))  # a row without a class does not count
    best = torch.tensor([[5.0, 5.0, -5.0, -5.0]])
    assert float(loss(best, targets[:1])) < float(loss(torch.tensor([[5.0, -5.0, 5.0, -5.0]]), targets[:1]))


def test_mixture_dataset_parts_are_the_notes_summed(tiny_corpus):
    from timbre_lobes.polyphonic.training import MixtureDataset

    notes, labels = _encoders(tiny_corpus)
    folder = os.path.join(tiny_corpus, "nsynth-train")
    data = MixtureDataset(
        labels, folder, notes=notes, n_per_epoch=6, settings={**SETTINGS, "max_sources": 4}, parts=True
    )
    for index in (1, 3):  # two and four sources
        item, mixture = data[index], data.mixtures[index]
        parts = item["parts"].numpy()
        assert parts.shape == (mixture["n_sources"], int(1.5 * 16000))
        expected = np.zeros(parts.shape[1])
        for part, source in zip(parts, mixture["sources"]):
            audio, _ = sf.read(source["wav"].replace("$data_root", folder))
            np.testing.assert_allclose(part[: len(audio)], audio[: parts.shape[1]], atol=1e-4)  # the note alone
            start = int(round(source["onset"] * 16000))
            expected[start:] += 10 ** (source["gain_db"] / 20) * part[: parts.shape[1] - start]
        expected *= PEAK / np.abs(expected).max()
        np.testing.assert_allclose(item["sig"].numpy(), expected, atol=1e-5)
        names = [labels["instrument"].ind2lab[i] for i in item["part_instruments"].tolist()]
        assert names == [s["instrument"] for s in mixture["sources"]]


def test_distillation_loss_prefers_the_mixtures_own_notes():
    import torch

    from timbre_lobes.polyphonic.training import PolyphonicBrain, SetCrossEntropy

    class Hparams:
        distill_scale = 10.0
        distill_loss = SetCrossEntropy()

    brain = PolyphonicBrain.__new__(PolyphonicBrain)  # the loss alone: no modules needed
    object.__setattr__(brain, "hparams", Hparams())
    notes = torch.eye(3)  # three source notes, of instruments 0, 1, 2
    brain.teacher_out = (notes, torch.tensor([0, 0, 1]), torch.tensor([0, 1, 2]))
    targets = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # mixture 0 = instruments 0 + 1, mixture 1 = 2
    right = brain.distillation_loss(torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), targets)
    wrong = brain.distillation_loss(torch.tensor([[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]), targets)
    assert float(right) < float(wrong)


def test_evaluation_settings_are_checked_before_anything_is_drawn(tiny_corpus, tmp_path):
    from timbre_lobes.polyphonic.evaluate import check_config, mixture_folders

    good = {"sampler": dict(SETTINGS), "valid_per_count": 2, "test_per_count": 2, "n_enrol": 3}
    good.update(window_seconds=1.5, hop_seconds=0.5, ci_resamples=0)
    check_config(good)
    bad = {
        "unknown keys ['max_source']": {"sampler": {**SETTINGS, "max_source": 2}},
        "missing keys ['scale']": {"sampler": {k: v for k, v in SETTINGS.items() if k != "scale"}},
        "sampler must be a mapping": {"sampler": [1, 2]},
        "test_per_count must be a whole number": {"test_per_count": 0},
        "window_seconds must be 0": {"window_seconds": -1},
        "hop_seconds must be positive": {"hop_seconds": 0},
        "ci_resamples must be 0 (no intervals) or at least 100": {"ci_resamples": 1},
        "or at least 100 (fewer resamples make no 95 % interval), got -5": {"ci_resamples": -5},
    }
    for message, change in bad.items():
        with pytest.raises(ValueError, match=re.escape(message)):
            check_config({**good, **change})
    with pytest.raises(ValueError, match="is one note folder"):
        mixture_folders(os.path.join(tiny_corpus, "nsynth-test"))


def test_mixture_sets_are_called_rendered_only_for_the_render_packages_corpora(tiny_corpus, tmp_path):
    """A real (or synthetic) corpus is named after its folder; one the render package wrote is "rendered"."""
    from timbre_lobes.polyphonic.evaluate import mixture_folders, valid_set_name

    real = tmp_path / "my_nsynth"
    for split in ("valid", "test"):
        shutil.copytree(os.path.join(tiny_corpus, f"nsynth-{split}"), real / f"nsynth-{split}")
    folders = mixture_folders(str(real), real_folder=str(real / "nsynth-test"))
    assert list(folders) == ["my_nsynth valid", "my_nsynth test", "real NSynth"]
    assert valid_set_name(folders) == "my_nsynth valid"
    rewrite_examples(str(real), lambda meta: meta.update(source_group="fluidr3"), splits=("valid", "test"))
    assert list(mixture_folders(str(real))) == ["rendered valid", "rendered test"]


def test_every_note_set_has_its_own_random_stream(tiny_corpus, tmp_path):
    draws = [
        mixture_set(os.path.join(tiny_corpus, f"nsynth-{split}"), tmp_path / f"{split}.json", 4, SETTINGS, seed=0)[0]
        for split in ("valid", "test")
    ]
    onsets = [[s["onset"] for m in mixtures for s in m["sources"]] for mixtures in draws]
    assert onsets[0] != onsets[1]


def slot_training_args(tiny_corpus, tiny_model, out):
    """hparams/poly_slots.yaml on the tiny single-note model (its sizes: the transMel.yaml defaults, tiny)."""
    args = tiny_training_args(tiny_corpus, out)
    args[1] = os.path.join(REPO, "hparams", "poly_slots.yaml")
    keep = [a for a in args if not a.startswith(("--pretrained_model=", "--freeze_frontend="))]
    return keep + [
        f"--pretrained_model={tiny_model}",
        "--freq_collapse=flatten",
        "--hop_ms=12",
        "--head_type=cosine",
        "--dynamic_range_db=null",
        "--noise_floor_prob=0.0",
        "--slot_input_size=1280",  # 8 LDE components x 8 channels x 20 frequency rows
    ]


def test_slot_recipe_trains_only_the_slots_and_scores_mixtures_by_their_best_slot(tiny_corpus, tiny_model, tmp_path):
    import torch

    from timbre_lobes.serving.inference import TimbreEncoder

    out = tmp_path / "slots"
    # The run's own eval_seconds (4 s here) must not change the span single notes are embedded over.
    proc = subprocess.run(
        [sys.executable, *slot_training_args(tiny_corpus, tiny_model, out), "--eval_seconds=4.0"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    model = TimbreEncoder.from_hparams(source=str(out / "model"))
    single = TimbreEncoder.from_hparams(source=str(tiny_model))
    # SpeechBrain's count of trainable parameters is the slot head's alone (e.g. "724.1k").
    trainable = re.search(r"Total Number of Trainable Parameters: ([0-9.]+)k", proc.stdout + proc.stderr)
    slot_parameters = sum(p.numel() for p in model.mods["slot_head"].parameters())
    assert trainable and float(trainable.group(1)) == pytest.approx(slot_parameters / 1000, abs=0.1)
    assert model.n_slots == 4 and model.rows_per_view == 5 and single.rows_per_view == 1
    assert model.family_output == "softmax"  # the single-note family head, kept
    # The single-note model is frozen: every module but the slot head is exactly the one it started from.
    for name in ("compute_features", "embedding_model", "family_head", "instrument_head"):
        mine, theirs = model.mods[name].state_dict(), single.mods[name].state_dict()
        assert mine.keys() == theirs.keys()
        assert all(torch.equal(mine[k], theirs[k]) for k in mine), name
    notes, folder = notes_of(tiny_corpus, "test")
    paths = [row["wav"].replace("$data_root", folder) for row in notes[:3]]
    np.testing.assert_allclose(model.embed_files(paths), single.embed_files(paths), atol=1e-5)  # other verbs
    # Over the same span of a sound as the single-note model (its 1 s, not the polyphonic run's 4 s), so
    # longer sounds too (4 s real notes) get exactly the single-note model's embeddings.
    assert (model.max_seconds, model.eval_seconds) == (single.max_seconds, single.eval_seconds) == (1.0, 1.0)
    real = sorted(glob.glob(os.path.join(SHARED_DATA, "nsynth-test-dev", "audio", "*.wav")))[:2]
    np.testing.assert_allclose(model.embed_files(real), single.embed_files(real), atol=1e-5)
    drawn = sample_mixtures(notes, 1, seed=3, **{**SETTINGS, "min_sources": 2})[0]
    mixture = torch.as_tensor(mix_audio(drawn, folder), dtype=torch.float32)
    rows = model.mixture_embeddings(mixture, 0)
    assert rows.shape == (5, 32)  # the clip's embedding, then its four slots
    np.testing.assert_allclose(rows[0], single.mixture_embeddings(mixture, 0)[0], atol=1e-5)
    assert np.linalg.norm(rows[1:] - rows[0], axis=1).min() > 1e-4  # the slots moved away from the embedding
    log = (out / "train_log.txt").read_text()
    assert "epoch: 2" in log and "EER" in log
    record = json.loads((out / "mixtures" / "polyphonic.json").read_text())
    corpus = os.path.basename(tiny_corpus)
    valid_clip = record["results"][f"{corpus} valid"]["clip"]["detection"]["all"]
    assert model.detection_threshold == pytest.approx(valid_clip["threshold"])
    card = (out / "model" / "README.md").read_text()
    assert (
        "a slot head of 4 embeddings per mixture" in card and "a slot head giving mixtures a set of embeddings" in card
    )


def test_slot_recipe_refuses_bad_settings_before_training(tiny_corpus, tiny_model, tmp_path):
    def run(*extra):
        out = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
        given = [e.split("=")[0] + "=" for e in extra]  # these replace the usual ones
        args = [a for a in slot_training_args(tiny_corpus, tiny_model, out) if not a.startswith(tuple(given))]
        return subprocess.run(
            [sys.executable, *args, *extra], capture_output=True, text=True, cwd=REPO, timeout=600
        ), out

    proc, out = run("--slot_input_size=100")
    assert proc.returncode == 1 and "set --slot_input_size=1280" in proc.stderr
    refused = [out]
    proc, out = run("--slot_input_size=1280", "--freeze_encoder=False")
    assert proc.returncode == 1 and "slot_weight needs freeze_encoder: True" in proc.stderr
    refused.append(out)
    # A setting without a tensor (the front end's hop) that differs from the pretrained model's is named.
    proc, out = run("--slot_input_size=1280", "--hop_ms=20")
    assert proc.returncode == 1 and "compute_features.stride: 320 here, 192 there" in proc.stderr, proc.stderr[-2000:]
    refused.append(out)
    for out in refused:  # refused before the corpus is prepared or any mixture drawn
        assert not (out / "save").exists() or not os.listdir(out / "save"), sorted(os.listdir(out / "save"))


def test_nsynth_recipe_refuses_a_pretrained_model_built_with_another_hop_in_one_line(tiny_corpus, tiny_model, tmp_path):
    # Here for the tiny single-note model this file trains; the check is every training recipe's.
    out = tmp_path / "finetune"
    proc = run_recipe("transMel", tiny_corpus, out, f"--pretrained_model={tiny_model}", "--hop_ms=20", expect_fail=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "compute_features.stride: 320 here, 192 there" in proc.stderr
    assert not (out / "save" / "train.csv").exists()  # refused before the corpus was prepared


def test_slot_set_loss_separates_the_slots_onto_the_sources():
    import torch

    from timbre_lobes.polyphonic.training import SlotSetLoss

    generator = torch.Generator().manual_seed(0)
    notes = torch.nn.functional.normalize(torch.randn(5, 16, generator=generator), dim=-1)
    rows = torch.tensor([0, 0, 0, 1, 1])  # mixture 0: notes 0-2; mixture 1: notes 3-4
    instruments = torch.tensor([0, 1, 2, 3, 4])
    # Every slot starts on its mixture's blend (what one embedding of a mixture is), nudged apart.
    blends = torch.stack([notes[:3].mean(0), notes[3:].mean(0)])
    slots = (blends[:, None, :] + 0.01 * torch.randn(2, 4, 16, generator=generator)).requires_grad_(True)
    loss = SlotSetLoss(scale=10.0)
    optimiser = torch.optim.Adam([slots], lr=0.05)
    start = float(loss(slots, notes, rows, instruments).detach())
    before = torch.nn.functional.normalize(slots.detach(), dim=-1) @ notes.t()
    assert before[0, :, :3].min() > 0.3  # a blend is near all of its notes
    for _ in range(300):
        optimiser.zero_grad()
        value = loss(slots, notes, rows, instruments)
        value.backward()
        optimiser.step()
    assert float(value.detach()) < 0.01 * start
    cos = torch.nn.functional.normalize(slots.detach(), dim=-1) @ notes.t()  # [2, 4, 5]
    for n, b in enumerate(rows.tolist()):
        assert cos[b, :, n].max() > 0.75  # every note is found by a slot of its mixture
    for b in range(2):  # every slot sits on one note of its own mixture: not on a blend, nor elsewhere
        own = cos[b][:, rows == b].sort(dim=1, descending=True).values
        assert (own[:, 0] > 0.75).all() and (own[:, 1] < 0.3).all()
        assert (cos[b][:, rows != b] < 0.3).all()
    # A note of an instrument that also plays in the other mixture is a positive there, not a negative.
    shared = loss(slots.detach(), notes, rows, torch.tensor([0, 1, 2, 0, 4]))
    assert float(shared) < float(loss(slots.detach(), notes, rows, instruments))


def test_an_overlay_on_an_overlay_that_is_missing_or_circular_is_refused(tmp_path):
    script = os.path.join(REPO, "recipes", "Polyphonic", "train.py")
    circle = tmp_path / "circle.yaml"
    circle.write_text(f"base_overlay: {circle}\n")
    missing = tmp_path / "missing.yaml"
    missing.write_text(f"base_overlay: {tmp_path / 'none.yaml'}\n")
    for path, message in ((circle, "the overlays name each other in a circle"), (missing, "is not a YAML file")):
        proc = subprocess.run(
            [sys.executable, script, str(path)], capture_output=True, text=True, cwd=REPO, timeout=300
        )
        assert proc.returncode == 1 and message in proc.stderr, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
