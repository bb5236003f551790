"""The RWC transfer recipe: file names, note splitting on the real samples, manifests, label spaces, training."""

import csv
import importlib.util
import json
import os
import sys

import numpy as np
import pytest
import soundfile as sf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RWC_RECIPE = os.path.join(REPO, "recipes", "RWC")
RWC_SAMPLE = os.path.join(os.path.dirname(REPO), "shared", "data", "rwc-sample")
CELLO = os.path.join(RWC_SAMPLE, "RWC_I_05", "172", "172VCSPP.flac")
BASSOON = os.path.join(RWC_SAMPLE, "RWC_I_08", "303", "303FGSTF.flac")


def _load(name):
    """Imports a recipe module by path, as ``python recipes/RWC/<name>.py`` would find it."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(RWC_RECIPE, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


rwc = _load("rwc_prepare")


# ---------------------------------------------------------------------------
# File names
# ---------------------------------------------------------------------------

# Every name in the shared sample, with what it must read as.
SAMPLE_NAMES = {
    "RWC_I_05/172/172VCSPP.flac": ("cello", "172VC", 17, 2, "VC", "SP", "P", None),
    "RWC_I_08/303/303FGSTF.flac": ("bassoon", "303FG", 30, 3, "FG", "ST", "F", None),
    "notes/091CGAFM_11.flac": ("classical_guitar", "091CG", 9, 1, "CG", "AF", "M", 11),
    "notes/093CGRFP_44.flac": ("classical_guitar", "093CG", 9, 3, "CG", "RF", "P", 44),
    "notes/111AGRPP_66.flac": ("acoustic_guitar", "111AG", 11, 1, "AG", "RP", "P", 66),
    "notes/151VNSPP_26.flac": ("violin", "151VN", 15, 1, "VN", "SP", "P", 26),
    "notes/152VNNOF_26.flac": ("violin", "152VN", 15, 2, "VN", "NO", "F", 26),
    "notes/171VCNOP_1.flac": ("cello", "171VC", 17, 1, "VC", "NO", "P", 1),
    "notes/212TRC2F_24.flac": ("trumpet", "212TR", 21, 2, "TR", "C2", "F", 24),
    "notes/231TUNOM_29.flac": ("tuba", "231TU", 23, 1, "TU", "NO", "M", 29),
    "notes/241HRSTM_28.flac": ("horn", "241HR", 24, 1, "HR", "ST", "M", 28),
    "notes/291OBSTF_27.flac": ("oboe", "291OB", 29, 1, "OB", "ST", "F", 27),
    "notes/302FGSTM_2.flac": ("bassoon", "302FG", 30, 2, "FG", "ST", "M", 2),
    "notes/311CLNOP_28.flac": ("clarinet", "311CL", 31, 1, "CL", "NO", "P", 28),
    "notes/331FLSTF_10.flac": ("flute", "331FL", 33, 1, "FL", "ST", "F", 10),
}


def test_every_sample_name_is_listed_and_parses():
    assert sorted(rwc.find_audio_files(RWC_SAMPLE)) == sorted(SAMPLE_NAMES)
    for rel, expected in SAMPLE_NAMES.items():
        name = rwc.parse_rwc_name(rel)
        got = tuple(
            name[k]
            for k in ("category", "instrument", "number", "variation", "code", "style", "dynamics", "note_index")
        )
        assert got == expected, rel
        assert name["stem"] == os.path.basename(rel)[:8]


def test_two_instruments_under_one_number_are_told_apart_by_their_code():
    assert rwc.parse_rwc_name("293EHNOF.wav")["category"] == "english_horn"
    assert rwc.parse_rwc_name("291OBNOF.aiff")["category"] == "oboe"
    assert rwc.parse_rwc_name("333PNNOM.flac")["category"] == "pan_flute"
    # A number whose code is not checked accepts the code the file gives.
    assert rwc.parse_rwc_name("061POOPF.wav")["category"] == "pipe_organ"


@pytest.mark.parametrize(
    "name, message",
    [
        ("readme.txt", "not an RWC name"),
        ("172VCSP.flac", "not an RWC name"),  # 7 characters
        ("172vcspp.flac", "not an RWC name"),  # lower case
        ("17AVCSPP.flac", "not an RWC name"),  # variation not a digit
        ("172VCSPP_x.flac", "not an RWC name"),  # note index not a number
        ("170VCSPP.flac", "variation 0"),
        ("172VCSPX.flac", "dynamics 'X'"),
        ("172FGSPP.flac", "instrument number 17 is cello (code VC)"),
        ("451D1NOF.flac", "instrument number 45 is not in the category table"),
        ("293XXNOF.flac", "oboe (code OB), english_horn (code EH)"),
    ],
)
def test_malformed_or_unknown_names_are_refused_with_the_reason(name, message):
    with pytest.raises(rwc.RWCNameError, match=message.replace("(", r"\(").replace(")", r"\)")):
        rwc.parse_rwc_name(name)


def test_a_category_table_file_replaces_the_built_in_one(tmp_path):
    table = tmp_path / "table.csv"
    table.write_text("number,code,category\n45,D1,drums\n17,,bowed\n")
    rows = rwc.load_category_table(str(table))
    assert rows == ((45, "D1", "drums"), (17, None, "bowed"))
    assert rwc.parse_rwc_name("451D1NOF.flac", rows)["category"] == "drums"
    assert rwc.parse_rwc_name("172XXSPP.flac", rows)["category"] == "bowed"
    table.write_text("number,code,category\nseventeen,VC,cello\n")
    with pytest.raises(ValueError, match="'number' must be an integer"):
        rwc.load_category_table(str(table))


# ---------------------------------------------------------------------------
# Note splitting on the real recordings
# ---------------------------------------------------------------------------

# Counted independently of the splitter, three ways that agree:
# * the energy envelope (20 ms RMS, 10 ms hop) plotted in four rows and the note attacks counted
#   by eye: cello 15 + 15 + 15 + 18, bassoon 11 + 10 + 10 + 10;
# * a pYIN pitch track (librosa.pyin, 16 kHz): the bassoon plays one chromatic ascending run from
#   MIDI 35 to 75 (41 semitones); the cello plays four runs, one per string, C 36-48, G 43-55,
#   D 50-62, A 57-80 (13 + 13 + 13 + 24);
# * the editing of these files: every note sits between runs of digital silence (exact zeros)
#   of about 1 s, 63 and 41 such segments.
EXPECTED_NOTES = {CELLO: 63, BASSOON: 41}


def _segments(y, sr):
    """Runs of non-zero samples separated by at least 10 ms of exact zeros, longer than 50 ms."""
    nonzero = np.concatenate([[0], (y != 0).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(nonzero))
    segments = []
    for a, b in zip(edges[::2], edges[1::2]):
        if segments and a - segments[-1][1] < 0.01 * sr:
            segments[-1][1] = b
        else:
            segments.append([a, b])
    return [(a, b) for a, b in segments if b - a > 0.05 * sr]


def _reference_notes(y, sr):
    """Per silence-delimited segment: (onset, release end, segment start, segment end) in seconds.

    The segment's noise floor is the 10th percentile of its 5 ms RMS levels (1 ms hop); the onset
    is the first time the level, as a 20 ms running median, is 10 dB above that floor, and the
    release ends the last time it is. Written apart from the splitter (other framing, other
    floor estimate, per segment), which never sees the segments.
    """
    hop, frame = int(0.001 * sr), int(0.005 * sr)
    power = np.convolve(y.astype(np.float64) ** 2, np.ones(frame) / frame, mode="valid")
    refs = []
    for a, b in _segments(y, sr):
        level = 10 * np.log10(power[a : b - frame : hop] + 1e-20)
        floor = np.percentile(level[level > -120], 10)
        median = np.array([np.median(level[k : k + 20]) for k in range(len(level))])
        audible = np.flatnonzero(median >= floor + 10)
        centre = frame / 2
        refs.append(((a + audible[0] * hop + centre) / sr, (a + audible[-1] * hop + centre) / sr, a / sr, b / sr))
    return np.array(refs)


@pytest.fixture(scope="module")
def real_recordings():
    out = {}
    for path in EXPECTED_NOTES:
        y, sr = sf.read(path, dtype="float32")
        out[path] = (y, sr, _reference_notes(y, sr))
    return out


@pytest.mark.parametrize("path", list(EXPECTED_NOTES), ids=["cello", "bassoon"])
def test_splitter_finds_every_note_of_a_real_recording(path, real_recordings):
    y, sr, refs = real_recordings[path]
    assert len(refs) == EXPECTED_NOTES[path]  # the reference agrees with the independent count
    cuts = np.array(rwc.split_notes(y, sr)) / sr
    assert len(cuts) == EXPECTED_NOTES[path]
    onset, release_end, seg_start, seg_end = refs.T
    # Each cut starts within 30 ms of its note's onset ...
    assert np.abs(cuts[:, 0] - onset).max() <= 0.030, np.round((cuts[:, 0] - onset) * 1000)
    # ... keeps its release until the level is back in the noise floor (5 ms = framing) ...
    assert (cuts[:, 1] >= release_end - 0.005).all(), np.round((cuts[:, 1] - release_end) * 1000)
    # ... and holds nothing of the next note.
    assert (cuts[:-1, 1] <= seg_start[1:]).all() and (cuts[:, 1] <= seg_end + 0.005).all()


@pytest.mark.parametrize("path", list(EXPECTED_NOTES), ids=["cello", "bassoon"])
def test_splitter_needs_no_digital_silence(path, real_recordings):
    """White noise at -75 dBFS fills the silences, as in a recording that was not edited."""
    y, sr, refs = real_recordings[path]
    noisy = y + np.float32(10 ** (-75 / 20)) * np.random.default_rng(0).standard_normal(len(y)).astype(np.float32)
    cuts = np.array(rwc.split_notes(noisy, sr)) / sr
    assert len(cuts) == EXPECTED_NOTES[path]
    onset, release_end, seg_start, _ = refs.T
    # The recording's own pre-roll noise (10 dB over the added noise) now counts as sound: a cut
    # may start up to 150 ms early, but never after the attack.
    assert ((cuts[:, 0] - onset) <= 0.030).all() and ((cuts[:, 0] - onset) >= -0.150).all()
    assert (cuts[:, 1] >= release_end - 0.005).all()
    assert (cuts[:-1, 1] <= seg_start[1:]).all()


def _tone(sr, f0, attack, t60, level_db, seconds):
    """A harmonic tone: linear attack over ``attack`` s, then an exponential decay of reverberation time ``t60``."""
    t = np.arange(int(seconds * sr)) / sr
    wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    envelope = np.minimum(1.0, t / attack) * np.exp(-6.91 * np.maximum(0.0, t - attack) / t60)
    return 10 ** (level_db / 20) * wave * envelope / np.abs(wave).max()


def test_splitter_copes_with_reverberant_tails_soft_notes_and_slow_attacks():
    sr = 16000
    # onset (s), f0 (Hz), attack (s), reverberation time (s), level (dBFS)
    notes = [
        (0.5, 220, 0.005, 0.6, -6),
        (2.0, 247, 0.15, 0.8, -36),  # soft and slow
        (3.5, 262, 0.005, 3.0, -12),  # long reverberant tail ...
        (4.4, 294, 0.25, 1.0, -6),  # ... into which a slow attack starts, no silence between
        (5.6, 330, 0.01, 4.0, -6),
        (7.5, 349, 0.01, 1.0, -12),  # starts in the previous tail, 22 dB above it
        (11.0, 392, 0.005, 1.0, -45),  # 35 dB below the loudest note
        (12.5, 440, 0.3, 1.5, -30),  # soft, 300 ms attack
    ]
    total = 15.0
    y = np.zeros(int(total * sr))
    for onset, f0, attack, t60, level in notes:
        tone = _tone(sr, f0, attack, t60, level, total - onset)
        y[int(onset * sr) : int(onset * sr) + len(tone)] += tone
    y += 10 ** (-80 / 20) * np.random.default_rng(1).standard_normal(len(y))
    cuts = np.array(rwc.split_notes(y, sr)) / sr
    assert len(cuts) == len(notes)
    error = cuts[:, 0] - np.array([n[0] for n in notes])
    # A slow attack inside the previous note's tail is masked until it rises above that tail.
    masked = np.array([i == 3 for i in range(len(notes))])
    assert np.abs(error[~masked]).max() <= 0.030, np.round(error * 1000)
    assert 0 <= error[masked][0] <= 0.060
    assert (cuts[:-1, 1] <= cuts[1:, 0]).all()


def test_splitter_on_sustained_notes_between_digital_silences():
    """Organ-like notes (constant level, no noise at all): the quietest live frames are the notes."""
    sr = 16000
    t = np.arange(int(1.8 * sr)) / sr
    parts = [np.zeros(sr // 2)]
    for k, level in enumerate((-6, -20, -8, -30)):
        wave = np.sin(2 * np.pi * 220 * 2 ** (k / 12) * t) * np.minimum(1.0, (len(t) - np.arange(len(t))) / (0.2 * sr))
        parts += [10 ** (level / 20) * wave, np.zeros(sr // 2)]
    cuts = np.array(rwc.split_notes(np.concatenate(parts), sr)) / sr
    np.testing.assert_allclose(cuts, [[0.5 + 2.3 * k, 2.3 + 2.3 * k] for k in range(4)], atol=0.01)


def test_splitter_finds_nothing_in_silence_and_refuses_unknown_options():
    assert rwc.split_notes(np.zeros(16000), 16000) == []
    with pytest.raises(ValueError, match="unknown note-splitting options"):
        rwc.split_notes(np.zeros(16000), 16000, threshold_db=3)


# ---------------------------------------------------------------------------
# Manifests on the real sample
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_notes(tmp_path_factory):
    notes_folder = str(tmp_path_factory.mktemp("rwc_notes"))
    problems = []
    rows = rwc.read_rwc_notes(RWC_SAMPLE, notes_folder, sample_rate=16000, problems=problems)
    return rows, notes_folder, problems


def test_real_sample_notes_are_cut_resampled_and_described(sample_notes):
    rows, notes_folder, problems = sample_notes
    assert problems == []
    assert len(rows) == 63 + 41 + 13
    by_file = {}
    for row in rows:
        by_file.setdefault(row["file"], []).append(row)
    assert len(by_file["RWC_I_05/172/172VCSPP.flac"]) == 63
    assert [r["note_index"] for r in by_file["RWC_I_08/303/303FGSTF.flac"]] == list(range(41))
    assert len({r["ID"] for r in rows}) == len(rows)
    clip = by_file["notes/212TRC2F_24.flac"][0]
    assert (clip["ID"], clip["note_index"], clip["start"], clip["instrument"]) == ("212TRC2F_024", 24, 0.0, "212TR")
    assert abs(clip["stop"] - sf.info(os.path.join(RWC_SAMPLE, "notes", "212TRC2F_24.flac")).duration) < 1e-3
    for row in rows:
        wav = os.path.join(notes_folder, f"{row['ID']}.wav")
        info = sf.info(wav)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert abs(info.duration - row["duration"]) < 1e-3
        assert abs(row["duration"] - (row["stop"] - row["start"])) < 2e-3  # the cut, resampled
        assert row["wav"] == f"$data_root/{row['ID']}.wav"
        assert row["family"] == row["category"] == rwc.parse_rwc_name(row["file"])["category"]
        assert row["pitch"] == ""  # no pitch range given
    cello = by_file["RWC_I_05/172/172VCSPP.flac"]
    assert all(a["stop"] <= b["start"] for a, b in zip(cello, cello[1:]))
    # The cut holds the source's samples: the first cello note, resampled back, matches the source.
    y, sr = sf.read(CELLO, dtype="float32")
    first = cello[0]
    source = y[round(first["start"] * sr) : round(first["stop"] * sr)]
    written, _ = sf.read(os.path.join(notes_folder, f"{first['ID']}.wav"), dtype="float32")
    assert abs(np.sqrt(np.mean(written**2)) / np.sqrt(np.mean(source**2)) - 1) < 0.02


def test_the_honest_split_of_the_real_sample(sample_notes):
    rows = [dict(r) for r in sample_notes[0]]
    plan = rwc.assign_splits(rows, valid_share=0.1, test_share=0.2, seed=1)
    # Two variations: the higher one is the test variation, held out whole.
    assert {c: plan[c]["test_variation"] for c in ("cello", "bassoon", "violin", "classical_guitar")} == {
        "cello": 2,
        "bassoon": 3,
        "violin": 2,
        "classical_guitar": 3,
    }
    for row in rows:
        if plan[row["category"]]["test_variation"] == row["variation"]:
            assert (row["split"], row["held_out"]) == ("test", "variation")
        else:
            assert row["split"] in ("train", "valid") and row["held_out"] in ("", "notes")
    # Single-variation categories (one clip each here) keep their only note in training.
    assert plan["trumpet"]["test_variation"] is None
    assert [r["split"] for r in rows if r["category"] == "trumpet"] == ["train"]
    train = {r["instrument"] for r in rows if r["split"] == "train"}
    assert not train & {r["instrument"] for r in rows if r["held_out"] == "variation"}


def test_note_level_split_of_a_single_variation_category_is_labelled():
    rows = [{"ID": f"n{k:02d}", "category": "tuba", "variation": 1, "instrument": "231TU"} for k in range(20)]
    plan = rwc.assign_splits(rows, valid_share=0.1, test_share=0.2, seed=3)
    assert plan["tuba"]["test_variation"] is None
    splits = [r["split"] for r in rows]
    assert (splits.count("test"), splits.count("valid"), splits.count("train")) == (4, 2, 14)
    assert all(r["held_out"] == "notes" for r in rows if r["split"] != "train")
    again = [dict(r) for r in rows]
    rwc.assign_splits(again, valid_share=0.1, test_share=0.2, seed=3)
    assert [r["split"] for r in again] == splits  # the same seed, the same split


def test_category_label_space_keeps_the_table_order_and_never_becomes_nsynth_families():
    assert rwc.category_label_space(["flute", "cello", "piano", "flute"]) == ["piano", "cello", "flute"]
    # NSynth's family_label_space would turn this subset into NSynth's 11 families.
    assert rwc.category_label_space(["flute", "pipe_organ"]) == ["pipe_organ", "flute"]


# ---------------------------------------------------------------------------
# prepare_rwc on a small RWC-layout corpus made here
# ---------------------------------------------------------------------------

# (number, code, partials' amplitude slope: the timbre) for each category, and its variations.
CORPUS = {(17, "VC", 1.0): (1, 2), (30, "FG", 0.5): (1, 2, 3), (33, "FL", 3.0): (1,)}
CORPUS_NOTES = 6  # per file; two files (F, P) per variation


def make_rwc_corpus(root, notes=CORPUS_NOTES, sr=22050):
    """Writes RWC-named recordings of ``notes`` ascending harmonic notes (0.5 s, 0.4 s of silence)."""
    for (number, code, slope), variations in CORPUS.items():
        for variation in variations:
            for dynamics, gain in (("F", 0.5), ("P", 0.05)):
                t = np.arange(int(0.5 * sr)) / sr
                parts = [np.zeros(int(0.3 * sr))]
                for k in range(notes):
                    f0 = 110 * 2 ** ((k * 2 + variation) / 12)
                    wave = sum(np.sin(2 * np.pi * f0 * h * t) / h**slope for h in range(1, 8))
                    parts += [gain * wave / np.abs(wave).max() * np.exp(-4 * t), np.zeros(int(0.4 * sr))]
                folder = os.path.join(root, f"RWC_I_0{variation}", f"{number:02d}{variation}")
                os.makedirs(folder, exist_ok=True)
                name = f"{number:02d}{variation}{code}NO{dynamics}.wav"
                sf.write(os.path.join(folder, name), np.concatenate(parts).astype(np.float32), sr)
    sf.write(os.path.join(root, "notes.wav"), np.zeros(100, dtype=np.float32), sr)  # not an RWC name
    sf.write(os.path.join(root, "451D1NOF.wav"), np.zeros(100, dtype=np.float32), sr)  # not in the table
    return root


SMALL_PROTOCOL = {"enrol_notes": 2, "enrolments_per_instrument": 3, "targets_per_note": 3, "nontargets_per_note": 3}


@pytest.fixture(scope="module")
def rwc_corpus(tmp_path_factory):
    return make_rwc_corpus(str(tmp_path_factory.mktemp("rwc_corpus")))


def _read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_prepare_rwc_writes_manifests_labels_trials_and_a_report(rwc_corpus, tmp_path):
    save = str(tmp_path / "save")
    manifests = rwc.prepare_rwc(rwc_corpus, save, protocol=SMALL_PROTOCOL, valid_share=0.25, seed=7)
    rows = {split: _read_csv(path) for split, path in manifests.items()}
    assert set(rows["train"][0]) == set(rwc.MANIFEST_FIELDS)
    everything = [r for split_rows in rows.values() for r in split_rows]
    assert len(everything) == (2 + 3 + 1) * 2 * CORPUS_NOTES  # every note of every file, once
    assert len({r["ID"] for r in everything}) == len(everything)
    # Held-out variations are in test only; the flute (one variation) is split by notes, labelled.
    assert {r["instrument"] for r in rows["test"] if r["held_out"] == "variation"} == {"172VC", "303FG"}
    assert {r["instrument"] for r in rows["test"] if r["held_out"] == "notes"} == {"331FL"}
    assert {r["instrument"] for r in rows["train"]} == {"171VC", "301FG", "302FG", "331FL"}
    assert all(r["held_out"] == "notes" for r in rows["valid"])
    assert {r["instrument"] for r in rows["valid"]} <= {r["instrument"] for r in rows["train"]}
    # Label files: the categories (table order) and the training instruments.
    from speechbrain.dataio.encoder import CategoricalEncoder

    families = CategoricalEncoder()
    families.load(os.path.join(save, "family_encoder.txt"))
    assert [families.ind2lab[i] for i in range(len(families))] == ["cello", "bassoon", "flute"]
    instruments = CategoricalEncoder()
    instruments.load(os.path.join(save, "instrument_encoder.txt"))
    assert sorted(instruments.lab2ind) == ["171VC", "301FG", "302FG", "331FL"]
    # Each wav exists under the notes folder that stands for $data_root.
    notes_root = rwc.notes_folder_for(rwc_corpus, os.path.join(save, "notes"))
    for row in everything:
        assert os.path.isfile(row["wav"].replace("$data_root", notes_root))
        assert row["family"] == row["category"] and row["start"] < row["stop"]
    trials = (tmp_path / "save" / "test_trials.txt").read_text().split("\n")
    assert any(line.startswith("1 ") for line in trials) and any(line.startswith("0 ") for line in trials)
    report = (tmp_path / "save" / "prepare_report.txt").read_text()
    assert "# 2 files or notes skipped" in report
    assert "notes.wav\tnotes.wav: not an RWC name" in report
    assert "451D1NOF.wav\t451D1NOF.wav: instrument number 45 is not in the category table" in report
    split = ", ".join(f"{k} {sum(r['category'] == 'flute' for r in rows[k])}" for k in ("train", "valid", "test"))
    assert f"# flute\tvariations 1\ttest: notes (single variation)\t{split}" in report
    assert f"# {len(everything)} notes from {len({r['file'] for r in everything})} files" in report
    for file in {r["file"] for r in everything}:
        assert f"# {file}\t{sum(r['file'] == file for r in everything)} notes" in report


def test_prepare_rwc_is_skippable_and_idempotent(rwc_corpus, tmp_path):
    save = str(tmp_path / "save")
    rwc.prepare_rwc(rwc_corpus, save, protocol=SMALL_PROTOCOL, valid_share=0.25)
    outputs = sorted(p for p in os.listdir(save) if os.path.isfile(os.path.join(save, p)))
    stamps = {p: os.stat(os.path.join(save, p)).st_mtime_ns for p in outputs}
    notes = os.path.join(rwc.notes_folder_for(rwc_corpus, os.path.join(save, "notes")), "172VCNOF_000.wav")
    note_stamp = os.stat(notes).st_mtime_ns
    rwc.prepare_rwc(rwc_corpus, save, protocol=SMALL_PROTOCOL, valid_share=0.25)
    assert {p: os.stat(os.path.join(save, p)).st_mtime_ns for p in outputs} == stamps  # nothing redone
    # Other options redo the manifests, but reuse the cut notes.
    rwc.prepare_rwc(rwc_corpus, save, protocol=SMALL_PROTOCOL, valid_share=0.25, seed=99)
    assert os.stat(os.path.join(save, "train.csv")).st_mtime_ns != stamps["train.csv"]
    assert os.stat(notes).st_mtime_ns == note_stamp
    # skip_prep touches nothing, even where nothing exists.
    empty = str(tmp_path / "none")
    assert rwc.prepare_rwc("/nonexistent", empty, skip_prep=True)["train"] == os.path.join(empty, "train.csv")
    assert not os.path.exists(empty)


def test_prepare_rwc_errors_name_the_problem(tmp_path):
    with pytest.raises(rwc.DataFolderError, match="does not exist"):
        rwc.prepare_rwc(str(tmp_path / "missing"), str(tmp_path / "save"))
    (tmp_path / "flat").mkdir()
    sf.write(str(tmp_path / "flat" / "notes.wav"), np.zeros(100, dtype=np.float32), 16000)
    with pytest.raises(rwc.DataFolderError, match="0 usable notes leave no notes for train, valid, test"):
        rwc.prepare_rwc(str(tmp_path / "flat"), str(tmp_path / "save"))
    assert "not an RWC name" in (tmp_path / "save" / "prepare_report.txt").read_text()


def test_pitch_from_a_known_range_and_a_range_that_does_not_fit(rwc_corpus, tmp_path):
    ranges = tmp_path / "ranges.csv"
    ranges.write_text("file,lowest,highest,step\n171VCNOF.wav,46,56,2\n171VCNOP.wav,40,50,1\n")
    problems = []
    rows = rwc.read_rwc_notes(
        rwc_corpus, str(tmp_path / "notes"), ranges=rwc.read_pitch_ranges(str(ranges)), problems=problems
    )
    assert [r["pitch"] for r in rows if r["file"].endswith("171VCNOF.wav")] == [46, 48, 50, 52, 54, 56]
    assert {r["pitch"] for r in rows if r["file"].endswith("171VCNOP.wav")} == {""}
    assert ("RWC_I_01/171/171VCNOP.wav", "6 notes found but its pitch range lists 11: pitch empty") in problems
    assert {r["pitch"] for r in rows if r["instrument"] != "171VC"} == {""}


# ---------------------------------------------------------------------------
# The rendered stand-in corpus
# ---------------------------------------------------------------------------

standin = _load("standin")


def test_standin_corpus_reads_as_rwc_with_pitches(tmp_path):
    folder = str(tmp_path / "standin")
    categories = [(17, "VC", "cello", 42, 48, 60), (30, "FG", "bassoon", 70, 48, 60)]
    summary = standin.render_standin(
        folder, variations=[(1, "fluidr3"), (2, "timgm6mb")], categories=categories, pitch_step=6, note_seconds=1.0
    )
    assert summary["files"] == 8 and summary["copies"] == {}  # 2 categories x 2 SoundFonts x 2 dynamics
    assert summary["test_variation"] == {"cello": [2, "timgm6mb"], "bassoon": [2, "timgm6mb"]}
    assert summary["sources"] == {1: ["fluidr3", "fluidr3"], 2: ["timgm6mb", "timgm6mb"]}
    assert os.path.isfile(os.path.join(folder, "RWC_I_02", "302", "302FGNOP.wav"))
    problems = []
    ranges = rwc.read_pitch_ranges(os.path.join(folder, "pitch_ranges.csv"))
    rows = rwc.read_rwc_notes(folder, str(tmp_path / "notes"), ranges=ranges, problems=problems)
    assert problems == []
    by_file = {}
    for row in rows:
        by_file.setdefault(row["file"], []).append(row)
    assert len(by_file) == 8
    for file_rows in by_file.values():  # the splitter finds the 3 rendered notes, in pitch order
        assert [r["pitch"] for r in file_rows] == [48, 54, 60]
        # Rendered at 0.5, 2.0 and 3.5 s (0.5 s of silence, 1 s notes); FluidR3's slow cello attack,
        # with no noise at all before it, may be cut up to 80 ms late (the splitter's docstring).
        late = np.array([r["start"] for r in file_rows]) - np.array([0.5, 2.0, 3.5])
        assert ((late >= -0.01) & (late <= 0.085)).all(), late
        assert all(abs(r["stop"] - s) < 0.01 for r, s in zip(file_rows, (1.5, 3.0, 4.5)))
    assert {(r["category"], r["variation"], r["dynamics"]) for r in rows} == {
        (c, v, d) for c in ("cello", "bassoon") for v in (1, 2) for d in ("F", "P")
    }


def test_near_copy_check_keeps_the_test_variation_and_drops_a_copy():
    """MuseScore_General's trumpet is FluidR3_GM's (1.6 dB apart; one group); OPL-3 FM's is another instrument."""
    from timbre_lobes.render import open_source

    sources = {1: open_source("fluidr3"), 2: open_source("opl3"), 3: open_source("musescore")}
    try:
        kept, copies = standin.independent_variations(sources, 56, 54, 86)
        assert kept == [2, 3]  # the highest (test) variation is checked first, so FluidR3's trumpet is the copy
        assert [c[:2] for c in copies] == [[1, 3]] and copies[0][2] < 4.0
        kept, copies = standin.independent_variations({1: sources[1], 2: sources[2]}, 56, 54, 86)
        assert (kept, copies) == ([1, 2], [])
    finally:
        for source in sources.values():
            source.close()


# ---------------------------------------------------------------------------
# Scratch vs fine-tuned, end to end
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nsynth_export(tmp_path_factory):
    """A tiny transMel trained on a tiny NSynth-format corpus and exported, as `make demo` exports its model."""
    import subprocess

    from test_recipe_nsynth import TINY

    from timbre_lobes.data.synthetic import make_nsynth_corpus

    root = tmp_path_factory.mktemp("nsynth_export")
    corpus = make_nsynth_corpus(str(root / "corpus"))
    out = root / "run"
    cmd = [
        sys.executable,
        os.path.join(REPO, "recipes", "NSynth", "train.py"),
        os.path.join(REPO, "hparams", "transMel.yaml"),
    ]
    cmd += [f"--data_folder={corpus}", f"--output_folder={out}", *TINY]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out / "model"


def test_scratch_and_finetune_write_the_f1_table_and_figure(nsynth_export, rwc_corpus, tmp_path):
    import subprocess

    import torch

    out = tmp_path / "compare"
    small = [f"--{key}={value}" for key, value in SMALL_PROTOCOL.items()]
    cmd = [sys.executable, os.path.join(RWC_RECIPE, "compare.py"), f"--pretrained=transMel={nsynth_export}"]
    cmd += [f"--data_folder={rwc_corpus}", "--epochs=2", f"--out={out}", "--"]
    cmd += ["--batch_size=8", "--eval_batch_size=16", "--num_workers=0", "--crop_seconds=0.5", "--crop_max_start=0.5"]
    cmd += [*small, f"--notes_folder={tmp_path / 'notes'}", "--rwc_valid_share=0.25", "--pretrained_lr_scale=0.5"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = _read_csv(out / "test_f1.csv")
    assert [(r["system"], r["transfer"], r["epoch"]) for r in rows] == [
        ("transMel", transfer, epoch) for transfer in ("scratch", "finetune") for epoch in ("1", "2")
    ]
    test_notes = len(_read_csv(out / "transMel" / "scratch" / "save" / "test.csv"))
    for row in rows:
        assert 0 <= float(row["family_micro_f1"]) <= 1 and 0 <= float(row["family_macro_f1"]) <= 1
        assert 0 <= float(row["unseen_variation_micro_f1"]) <= 1  # the cello and bassoon test variations
        assert int(row["n_test_notes"]) == test_notes
    png = (out / "figure2.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    # The fine-tuned run started from the export: its frozen front end is the export's, exactly;
    # the scratch run's is not (and both ran at the export's sizes, read from its run's YAML).
    exported = torch.load(nsynth_export / "compute_features.ckpt")
    for transfer, same in (("finetune", True), ("scratch", False)):
        model = out / "transMel" / transfer / "model"
        mine = torch.load(model / "compute_features.ckpt")
        assert all(torch.equal(exported[k], mine[k]) for k in exported) == same, transfer
        assert (
            torch.load(model / "embedding_model.ckpt").keys()
            == torch.load(nsynth_export / "embedding_model.ckpt").keys()
        )
    assert "Initialised compute_features, mean_var_norm, embedding_model from" in proc.stdout
    # The heads are sized by the RWC label space: 3 categories, 4 training instruments.
    finetuned = out / "transMel" / "finetune" / "model"
    for head, rows_expected in (("family_head", 3), ("instrument_head", 4)):
        weights = [tuple(v.shape) for v in torch.load(finetuned / f"{head}.ckpt").values() if v.dim() == 2]
        assert weights == [(rows_expected, 32)], head  # 32 = TINY's emb_dim
    results = json.loads((out / "transMel" / "finetune" / "results.json").read_text())
    assert results["transfer"] == "finetune" and results["family_labels"] == ["cello", "bassoon", "flute"]
    # The selected checkpoints' F1 difference, from the two runs' own results.
    final = json.loads((out / "final_f1.json").read_text())["transMel"]
    scratch = json.loads((out / "transMel" / "scratch" / "results.json").read_text())
    assert final["finetune"] == pytest.approx(results["family_micro_f1"])
    assert final["difference"] == pytest.approx(results["family_micro_f1"] - scratch["family_micro_f1"])
    assert "| transMel |" in (out / "final_f1.md").read_text() and "| transMel |" in proc.stdout
    # --plot-only redraws from the runs there, finding their systems itself.
    (out / "figure2.png").unlink()
    cmd = [sys.executable, os.path.join(RWC_RECIPE, "compare.py"), f"--out={out}", "--plot-only"]
    redraw = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert redraw.returncode == 0 and "| transMel |" in redraw.stdout, redraw.stderr[-2000:]
    assert (out / "figure2.png").stat().st_size > 10_000


def test_final_difference_is_paired_over_the_test_categories(tmp_path):
    """Equal runs differ by 0; a better run's gain lies inside its interval, wider with fewer categories."""
    _load("transfer")
    compare = _load("compare")

    def write_run(transfer, diagonal, per_category=10, system="transMel"):
        folder = tmp_path / system / transfer
        folder.mkdir(parents=True, exist_ok=True)
        matrix = np.zeros((len(diagonal), len(diagonal)), dtype=int)
        for i, right in enumerate(diagonal):
            matrix[i, i], matrix[i, (i + 1) % len(diagonal)] = right, per_category - right
        labels = [f"c{i}" for i in range(len(diagonal))]
        (folder / "results.json").write_text(json.dumps({"family_confusion": matrix.tolist(), "family_labels": labels}))

    rng = np.random.default_rng(0)
    scratch = rng.integers(2, 7, size=30)
    write_run("scratch", scratch)
    write_run("finetune", scratch)
    same = compare.final_difference(str(tmp_path), ["transMel"], n_resamples=200)["transMel"]
    assert same["difference"] == 0.0 and same["difference_ci"] == [0.0, 0.0]
    gained = np.minimum(scratch + rng.integers(0, 4, size=30), 10)
    write_run("finetune", gained)
    better = compare.final_difference(str(tmp_path), ["transMel"], n_resamples=500)["transMel"]
    low, high = better["difference_ci"]
    assert better["difference"] == pytest.approx(better["finetune"] - better["scratch"])
    assert low < better["difference"] < high
    assert better["n_categories"] == 30 and better["n_notes"] == 300
    write_run("scratch", scratch[:5], system="small")
    write_run("finetune", gained[:5], system="small")
    small = compare.final_difference(str(tmp_path), ["small"], n_resamples=500)["small"]
    assert small["difference_ci"][1] - small["difference_ci"][0] > high - low
    (tmp_path / "small" / "finetune" / "results.json").unlink()
    with pytest.raises(FileNotFoundError, match="did not finish"):
        compare.final_difference(str(tmp_path), ["small"])


def test_transfer_check_says_whether_the_pretrained_model_heard_the_test_variations(tmp_path):
    _load("transfer")  # compare's sibling imports, as `python recipes/RWC/compare.py` finds them
    compare = _load("compare")
    standin_folder = tmp_path / "standin"
    standin_folder.mkdir()
    summary = {
        "test_variation": {"cello": [5, "generaluser"], "harp": [4, "airfont"]},
        "sources": {"4": ["airfont", "airfont"], "5": ["generaluser", "generaluser"]},
    }
    (standin_folder / "standin.json").write_text(json.dumps({"wanted": {}, **summary}))

    def model_trained_on(name, groups):
        corpus = tmp_path / f"{name}_corpus"
        for split in ("train", "valid"):
            (corpus / f"nsynth-{split}").mkdir(parents=True)
            notes = {f"{g}_{split}": {"source_group": g} for g in groups}
            (corpus / f"nsynth-{split}" / "examples.json").write_text(json.dumps(notes))
        model = tmp_path / name
        model.mkdir()
        (model / "model_info.json").write_text(json.dumps({"data_folder": str(corpus)}))
        return str(model)

    demo = model_trained_on("demo", ["fluidr3", "generaluser", "dx7"])
    loso = model_trained_on("loso", ["fluidr3", "dx7"])
    lost = tmp_path / "lost"
    lost.mkdir()
    (lost / "model_info.json").write_text(json.dumps({"data_folder": str(tmp_path / "gone")}))
    check = compare.transfer_check([("transMel", demo), ("melspec", loso)], str(standin_folder))
    assert check["transMel"]["test_variation_groups"] == {"airfont": ["harp"], "generaluser": ["cello"]}
    assert check["transMel"]["heard_test_groups"] == ["generaluser"]
    assert check["melspec"]["heard_test_groups"] == [] and "dx7" in check["melspec"]["pretrained_heard_groups"]
    assert "HEARD in pre-training by transMel" in compare.check_title(check)
    assert compare.check_title({"melspec": check["melspec"]}).endswith("never heard in pre-training")
    unknown = compare.transfer_check([("leaf", str(lost))], str(standin_folder))
    assert unknown["leaf"]["heard_test_groups"] is None and "unknown" in compare.check_title(unknown)


def test_compare_refuses_an_unknown_or_mismatched_system_before_any_run(tmp_path, capsys):
    _load("transfer")
    compare = _load("compare")
    model = tmp_path / "model"
    model.mkdir()
    (model / "model_info.json").write_text(json.dumps({"system": "transMel"}))
    compare.check_system("transMel", str(model))  # the export's own system: fine
    with pytest.raises(ValueError, match="that model is a transMel model"):
        compare.check_system("melspec", str(model))
    with pytest.raises(FileNotFoundError, match=r"no hparams/foo.yaml \(systems: .*transMel"):
        compare.check_system("foo", str(model))
    with pytest.raises(SystemExit):  # no --pretrained and no --plot-only: a usage error
        compare.main(["--out", str(tmp_path / "out")])
    assert "give at least one --pretrained" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit, match="no test_f1.csv of any system under"):  # --plot-only finds the systems
        compare.main(["--out", str(tmp_path / "out"), "--plot-only"])
