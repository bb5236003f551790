"""Data preparation: real NSynth notes, bad input, idempotence, clear errors."""

import csv
import json
import os
import shutil

import numpy as np
import pytest
import soundfile as sf
from conftest import rewrite_examples
from nsynth_prepare import MANIFEST_FIELDS, DataFolderError, prepare_nsynth

from timbre_lobes.data.nsynth_labels import FAMILIES


def read_label_file(path):
    """The labels of a SpeechBrain CategoricalEncoder file, in index order."""
    from speechbrain.dataio.encoder import CategoricalEncoder

    encoder = CategoricalEncoder()
    encoder.load(str(path))
    return [encoder.ind2lab[i] for i in range(len(encoder))]


def read_csv(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_real_nsynth_notes(shared_nsynth, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    os.symlink(shared_nsynth, data / "nsynth-test")
    manifests = prepare_nsynth(str(data), str(tmp_path / "save"), splits=("test",))
    rows = read_csv(manifests["test"])
    with open(os.path.join(shared_nsynth, "examples.json")) as handle:
        meta = json.load(handle)
    assert len(rows) == 400
    assert list(rows[0]) == MANIFEST_FIELDS
    assert len({r["instrument"] for r in rows}) == 25
    assert len({r["family"] for r in rows}) == 10
    for row in rows:
        m = meta[row["ID"]]
        assert row["instrument"] == m["instrument_str"]
        assert row["family"] == m["instrument_family_str"] == FAMILIES[m["instrument_family"]]
        assert row["source"] == m["instrument_source_str"]
        assert (int(row["pitch"]), int(row["velocity"])) == (m["pitch"], m["velocity"])
        assert row["qualities"] == "".join(map(str, m["qualities"]))
        assert float(row["duration"]) == 4.0
        assert row["wav"] == f"$data_root/nsynth-test/audio/{row['ID']}.wav"
    trials = (tmp_path / "save" / "test_trials.txt").read_text().split("\n")
    assert len([t for t in trials if t.startswith("1 ")]) > 1000
    report = (tmp_path / "save" / "prepare_report.txt").read_text()
    assert report.startswith("# 0 notes skipped")
    # The family label space: NSynth's 11 families in NSynth's order (the sample lacks synth_lead).
    families = read_label_file(tmp_path / "save" / "family_encoder.txt")
    assert families == list(FAMILIES)


def test_bad_wavs_are_reported_and_the_rest_kept(tiny_corpus, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_corpus, data)
    audio = data / "nsynth-train" / "audio"
    wavs = sorted(os.listdir(audio))
    missing, truncated, wrong_rate = (w[:-4] for w in wavs[:3])
    os.remove(audio / f"{missing}.wav")
    raw = (audio / f"{truncated}.wav").read_bytes()
    (audio / f"{truncated}.wav").write_bytes(raw[: len(raw) // 2])
    sf.write(audio / f"{wrong_rate}.wav", np.zeros(8000), 8000, subtype="PCM_16")
    manifests = prepare_nsynth(str(data), str(tmp_path / "save"))
    kept = {r["ID"] for r in read_csv(manifests["train"])}
    assert len(kept) == len(wavs) - 3
    assert not kept & {missing, truncated, wrong_rate}
    report = (tmp_path / "save" / "prepare_report.txt").read_text()
    assert report.startswith("# 3 notes skipped")
    assert f"{missing}\t" in report and "missing file" in report
    assert f"{truncated}\t" in report and "truncated" in report
    assert f"{wrong_rate}\t" in report and "8000 Hz" in report


def test_duplicate_ids_across_splits_are_skipped(tiny_corpus, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_corpus, data)
    with open(data / "nsynth-train" / "examples.json") as handle:
        train = json.load(handle)
    dup = next(iter(train))
    with open(data / "nsynth-valid" / "examples.json") as handle:
        valid = json.load(handle)
    valid[dup] = train[dup]
    shutil.copy(data / "nsynth-train" / "audio" / f"{dup}.wav", data / "nsynth-valid" / "audio")
    with open(data / "nsynth-valid" / "examples.json", "w") as handle:
        json.dump(valid, handle)
    manifests = prepare_nsynth(str(data), str(tmp_path / "save"))
    assert dup in {r["ID"] for r in read_csv(manifests["train"])}
    assert dup not in {r["ID"] for r in read_csv(manifests["valid"])}
    assert "duplicate note id" in (tmp_path / "save" / "prepare_report.txt").read_text()


def test_preparation_is_idempotent_and_redone_when_options_change(tiny_corpus, tmp_path):
    save = tmp_path / "save"
    prepare_nsynth(tiny_corpus, str(save))
    stamp = os.stat(save / "train.csv").st_mtime_ns
    prepare_nsynth(tiny_corpus, str(save))
    assert os.stat(save / "train.csv").st_mtime_ns == stamp
    trials_before = (save / "test_trials.txt").read_text()
    prepare_nsynth(tiny_corpus, str(save), protocol={"trial_seed": 99})
    assert (save / "test_trials.txt").read_text() != trials_before


def test_half_written_outputs_are_redone(tiny_corpus, tmp_path):
    save = tmp_path / "save"
    prepare_nsynth(tiny_corpus, str(save))
    full = (save / "train.csv").read_text()
    (save / "train.csv").unlink()  # e.g. a crash between files
    prepare_nsynth(tiny_corpus, str(save))
    assert (save / "train.csv").read_text() == full


def test_skip_prep_touches_nothing(tmp_path):
    prepare_nsynth(str(tmp_path / "nowhere"), str(tmp_path / "save"), skip_prep=True)
    assert not (tmp_path / "save").exists()


@pytest.mark.parametrize("make", ["missing", "empty", "no_split"])
def test_missing_or_empty_data_folder_explains_layout(tmp_path, make):
    folder = tmp_path / "nsynth"
    if make != "missing":
        folder.mkdir()
    if make == "no_split":
        (folder / "nsynth-train").mkdir()
    with pytest.raises(DataFolderError, match="nsynth-train/examples.json"):
        prepare_nsynth(str(folder), str(tmp_path / "save"))


def test_half_written_examples_json_is_a_clear_error(tiny_corpus, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_corpus, data)
    path = data / "nsynth-test" / "examples.json"
    path.write_text(path.read_text()[:100])
    with pytest.raises(DataFolderError, match="not valid JSON"):
        prepare_nsynth(str(data), str(tmp_path / "save"))


def test_interrupted_preparation_with_new_options_is_not_trusted(tiny_corpus, tmp_path, monkeypatch):
    import nsynth_prepare

    save = tmp_path / "save"
    prepare_nsynth(tiny_corpus, str(save))
    calls = {"n": 0}
    real = nsynth_prepare.write_manifest

    def crash_after_first(rows, path):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        real(rows, path)

    monkeypatch.setattr(nsynth_prepare, "write_manifest", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        prepare_nsynth(tiny_corpus, str(save), protocol={"trial_seed": 7})  # killed half way with new options
    monkeypatch.setattr(nsynth_prepare, "write_manifest", real)
    assert not (save / "opt_nsynth_prepare.json").exists()
    stamp = os.stat(save / "train.csv").st_mtime_ns
    prepare_nsynth(tiny_corpus, str(save))  # the original options again: must redo, not trust
    assert os.stat(save / "train.csv").st_mtime_ns != stamp


def test_prepared_files_are_not_private(tiny_corpus, tmp_path):
    prepare_nsynth(tiny_corpus, str(tmp_path / "save"))
    assert os.stat(tmp_path / "save" / "train.csv").st_mode & 0o044 == 0o044


BAD_RECORDS = {
    "family_null": ({"instrument_family": None}, "'instrument_family' is a NoneType"),
    "pitch_string": ({"pitch": "60"}, "'pitch' is a str"),
    "qualities_null": ({"qualities": None}, "'qualities' is a NoneType"),
    "velocity_float": ({"velocity": 100.5}, "'velocity' is a float"),
    "no_instrument": ({"instrument_str": None}, "'instrument_str' is a NoneType"),
    "qualities_bad": ({"qualities": [2] * 10}, "qualities must be a list of 0/1 flags"),
}


def test_bad_metadata_records_are_skipped_and_reported(tiny_corpus, tmp_path):
    """One malformed field skips that note only, with the reason; the rest is prepared."""
    data = tmp_path / "data"
    shutil.copytree(tiny_corpus, data)
    path = data / "nsynth-train" / "examples.json"
    examples = json.loads(path.read_text())
    victims = dict(zip(BAD_RECORDS, list(examples)[: len(BAD_RECORDS)]))
    for case, note_id in victims.items():
        examples[note_id].update(BAD_RECORDS[case][0])
    path.write_text(json.dumps(examples))
    manifests = prepare_nsynth(str(data), str(tmp_path / "save"))
    kept = {r["ID"] for r in read_csv(manifests["train"])}
    assert len(kept) == len(examples) - len(victims) and not kept & set(victims.values())
    report = (tmp_path / "save" / "prepare_report.txt").read_text()
    assert report.startswith(f"# {len(victims)} notes skipped")
    lines = {line.split("\t")[0]: line for line in report.splitlines()[1:]}
    for case, note_id in victims.items():
        assert BAD_RECORDS[case][1] in lines[note_id], case


@pytest.mark.parametrize("note_id", ["../../outside", "/etc/passwd", "sub/dir", "..", "back\\slash"])
def test_note_ids_that_are_paths_are_refused(tiny_corpus, tmp_path, note_id):
    """An id names a file inside audio/: absolute ids, separators and '..' never reach the file system."""
    data = tmp_path / "data"
    shutil.copytree(tiny_corpus, data)
    path = data / "nsynth-train" / "examples.json"
    examples = json.loads(path.read_text())
    first = next(iter(examples))
    # A real wav sits where the path would point, so only the id check can refuse it.
    outside = tmp_path / "outside.wav"
    shutil.copy(data / "nsynth-train" / "audio" / f"{first}.wav", outside)
    examples[note_id] = examples[first]
    path.write_text(json.dumps(examples))
    manifests = prepare_nsynth(str(data), str(tmp_path / "save"))
    assert note_id not in {r["ID"] for r in read_csv(manifests["train"])}
    report = (tmp_path / "save" / "prepare_report.txt").read_text()
    assert "is not a plain file name" in report and report.startswith("# 1 notes skipped")


def test_a_split_with_no_usable_note_names_a_report_that_exists(tiny_corpus, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_corpus, data)
    path = data / "nsynth-valid" / "examples.json"
    examples = {k: {**v, "pitch": "C4"} for k, v in json.loads(path.read_text()).items()}
    path.write_text(json.dumps(examples))
    with pytest.raises(DataFolderError, match="no usable notes") as err:
        prepare_nsynth(str(data), str(tmp_path / "save"))
    report = tmp_path / "save" / "prepare_report.txt"
    assert str(report) in str(err.value) and report.read_text().startswith(f"# {len(examples)} notes skipped")


def test_categories_other_than_nsynth_families_make_their_own_label_space(tiny_corpus, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_corpus, data)
    rename = {"bass": "winds", "brass": "strings", "flute": "percussion", "guitar": "strings"}
    rewrite_examples(data, lambda meta: meta.update(instrument_family_str=rename[meta["instrument_family_str"]]))
    manifests = prepare_nsynth(str(data), str(tmp_path / "save"))
    assert read_label_file(tmp_path / "save" / "family_encoder.txt") == ["percussion", "strings", "winds"]
    assert {r["family"] for r in read_csv(manifests["test"])} <= {"percussion", "strings", "winds"}
    instruments = read_label_file(tmp_path / "save" / "instrument_encoder.txt")
    assert instruments == list(dict.fromkeys(r["instrument"] for r in read_csv(manifests["train"])))


# ---------------------------------------------------------------------------
# The closed set: held-out notes of the training instruments
# ---------------------------------------------------------------------------


def _official_train_split(shared_nsynth, tmp_path):
    """A corpus root whose nsynth-train/ is the 400 real NSynth notes (official examples.json: 25 instruments x 16)."""
    data = tmp_path / "data"
    data.mkdir()
    os.symlink(shared_nsynth, data / "nsynth-train")
    return data


def test_closed_set_of_the_official_train_split_is_disjoint_spread_and_seeded(shared_nsynth, tmp_path):
    data = _official_train_split(shared_nsynth, tmp_path)
    manifests = prepare_nsynth(str(data), str(tmp_path / "a"), splits=("train",), closed_set_share=0.25)
    train, held = read_csv(manifests["train"]), read_csv(manifests["closed_set"])
    assert manifests["closed_set"] == str(tmp_path / "a" / "closed_set.csv")
    assert list(held[0]) == MANIFEST_FIELDS
    with open(os.path.join(shared_nsynth, "examples.json")) as handle:
        meta = json.load(handle)
    # Disjoint, and together every note: the held-out notes are nowhere in train.csv.
    assert not {r["ID"] for r in train} & {r["ID"] for r in held}
    assert sorted(r["ID"] for r in train + held) == sorted(meta)
    # Every instrument (16 notes each) gives floor(0.25 * 16) = 4, one from each quarter of its pitch range.
    for instrument in {m["instrument_str"] for m in meta.values()}:
        notes = sorted((m["pitch"], m["velocity"], k) for k, m in meta.items() if m["instrument_str"] == instrument)
        quarters = [{k for _, _, k in notes[i * 4 : (i + 1) * 4]} for i in range(4)]
        mine = {r["ID"] for r in held if r["instrument"] == instrument}
        assert [len(q & mine) for q in quarters] == [1, 1, 1, 1], instrument
    # The instrument head keeps every training instrument.
    assert len(read_label_file(tmp_path / "a" / "instrument_encoder.txt")) == 25
    report = (tmp_path / "a" / "prepare_report.txt").read_text()
    assert report.startswith("# 0 notes skipped")
    assert "100 notes of 25 training instruments held out" in report and "fewer than" not in report
    # Deterministic for a seed (another folder, same notes); another seed draws others.
    again = prepare_nsynth(str(data), str(tmp_path / "b"), splits=("train",), closed_set_share=0.25)
    assert read_csv(again["closed_set"]) == held
    other = prepare_nsynth(str(data), str(tmp_path / "c"), splits=("train",), closed_set_share=0.25, closed_set_seed=7)
    assert {r["ID"] for r in read_csv(other["closed_set"])} != {r["ID"] for r in held}


def test_instruments_with_too_few_notes_keep_them_all_and_the_report_says_so(tiny_corpus, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_corpus, data)
    path = data / "nsynth-train" / "examples.json"
    examples = json.loads(path.read_text())
    small = next(iter(examples.values()))["instrument_str"]
    for note_id in [k for k, m in examples.items() if m["instrument_str"] == small][:4]:  # 12 -> 8 notes
        del examples[note_id]
    path.write_text(json.dumps(examples))
    manifests = prepare_nsynth(str(data), str(tmp_path / "save"), closed_set_share=0.1)
    train, held = read_csv(manifests["train"]), read_csv(manifests["closed_set"])
    assert sum(r["instrument"] == small for r in train) == 8 and small not in {r["instrument"] for r in held}
    # The five others (12 notes each) give one note each.
    assert len(held) == 5 and len({r["instrument"] for r in held}) == 5
    assert len(train) == len(examples) - 5
    report = (tmp_path / "save" / "prepare_report.txt").read_text()
    assert "1 training instruments have fewer than 10 notes and keep all their notes in training" in report
    assert f"#   {small}\t8 notes" in report


def test_a_changed_closed_set_share_prepares_again(tiny_corpus, tmp_path):
    save = tmp_path / "save"
    prepare_nsynth(tiny_corpus, str(save), closed_set_share=0.1)
    assert len(read_csv(save / "closed_set.csv")) == 6 and len(read_csv(save / "train.csv")) == 66
    stamp = os.stat(save / "train.csv").st_mtime_ns
    prepare_nsynth(tiny_corpus, str(save), closed_set_share=0.1)  # unchanged: skipped
    assert os.stat(save / "train.csv").st_mtime_ns == stamp
    prepare_nsynth(tiny_corpus, str(save), closed_set_share=0.2)  # floor(0.2 * 12) = 2 per instrument
    assert len(read_csv(save / "closed_set.csv")) == 12 and len(read_csv(save / "train.csv")) == 60
    prepare_nsynth(tiny_corpus, str(save), closed_set_share=0)  # off: every note trains, the manifest is empty
    assert read_csv(save / "closed_set.csv") == [] and len(read_csv(save / "train.csv")) == 72
    assert "closed set: off" in (save / "prepare_report.txt").read_text()


@pytest.mark.parametrize("share", [1.0, -0.1, "0.1"])
def test_a_closed_set_share_outside_0_1_is_refused(tiny_corpus, tmp_path, share):
    with pytest.raises(ValueError, match=r"closed_set_share must be a number in \[0, 1\)"):
        prepare_nsynth(tiny_corpus, str(tmp_path / "save"), closed_set_share=share)
    assert not (tmp_path / "save").exists()
