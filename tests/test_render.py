"""Tests of the SoundFont renderer, the corpus writer and the GM program table.

They need the Debian SoundFonts (fluid-soundfont-gm, timgm6mb-soundfont,
opl3-soundfont), libfluidsynth3 and pyfluidsynth. The other sound sources are
tested in test_sources.py.
"""

import json
import os
import re
import signal
import subprocess
import sys
import wave

import numpy as np
import pytest

from timbre_lobes.__main__ import main
from timbre_lobes.data.nsynth_labels import (
    FAMILIES,
    NOTE_SECONDS,
    QUALITIES,
    SAMPLE_RATE,
    SOURCES,
    SPLITS,
)
from timbre_lobes.render import (
    HOLD_SECONDS,
    SILENCE_DBFS,
    SoundFontSynth,
    SoundSource,
    assign_splits,
    loudest_frame_dbfs,
    pitch_grid,
    plan_corpus,
    render_corpus,
)
from timbre_lobes.render.catalog import CATALOG
from timbre_lobes.render.gm_programs import (
    EXCLUDED_PROGRAMS,
    GM_PROGRAM_NAMES,
    gm_family_source,
)

FLUID, TIMGM, OPL = (CATALOG[name].path for name in ("fluidr3", "timgm6mb", "opl3"))
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NSYNTH_FIELDS = {
    "note",
    "note_str",
    "instrument",
    "instrument_str",
    "instrument_family",
    "instrument_family_str",
    "instrument_source",
    "instrument_source_str",
    "pitch",
    "velocity",
    "sample_rate",
    "qualities",
    "qualities_str",
}
NOTE_STR = re.compile(
    r"^(?P<instrument>(?P<family>\w+?)_(?P<source>[a-z]+)_\d{3})"
    r"-(?P<pitch>\d{3})-(?P<velocity>\d{3})$"
)
# Three keyboards (one per split), two strings and a flute, at pitches 36, 60, 84
# and 108. TimGM6mb's whistle (78) is silent at MIDI 83-101: its pitch 84 is skipped.
# The copy check is off (threshold 0 dB): TimGM6mb's two pianos and its violin and viola are
# near-copies of each other by its measure (test_sources.py tests it).
SMALL = dict(programs=[0, 1, 3, 40, 41, 78], pitch_step=24, velocities=[50, 127], copy_threshold_db=0.0)
NOTE_SAMPLES = round(NOTE_SECONDS * SAMPLE_RATE)
# FluidSynth dithers each channel by +-1 LSB: renders of a note may differ by 2.
DITHER_LSB = 2


def read_wav(path):
    with wave.open(str(path)) as f:
        assert f.getnchannels() == 1 and f.getsampwidth() == 2
        assert f.getframerate() == SAMPLE_RATE
        return np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")


def load_corpus(out_dir):
    """Returns {split: examples} after checking that audio/ holds exactly their wavs."""
    corpus = {}
    for split in SPLITS:
        folder = os.path.join(out_dir, f"nsynth-{split}")
        with open(os.path.join(folder, "examples.json")) as f:
            corpus[split] = json.load(f)
        wavs = set(os.listdir(os.path.join(folder, "audio")))
        assert wavs == {f"{name}.wav" for name in corpus[split]}
    return corpus


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("corpus")
    summary = render_corpus([TIMGM], out_dir, workers=2, progress=False, **SMALL)
    return out_dir, summary


def test_layout_and_metadata(small_corpus):
    out_dir, summary = small_corpus
    corpus = load_corpus(out_dir)
    extra_fields = {"soundfont", "bank", "program", "preset_name", "sound_source", "source_group"}
    extra_fields |= {"licence", "recorded", "family_rule", "preset"}
    instruments = {}
    for split, examples in corpus.items():
        assert examples, f"empty {split}"
        for name, meta in examples.items():
            assert set(meta) == NSYNTH_FIELDS | extra_fields
            parsed = NOTE_STR.match(name)
            assert meta["note_str"] == name
            assert meta["instrument_str"] == parsed["instrument"]
            assert meta["pitch"] == int(parsed["pitch"])
            assert meta["velocity"] == int(parsed["velocity"])
            family = meta["instrument_family_str"]
            source = meta["instrument_source_str"]
            assert family == parsed["family"] == FAMILIES[meta["instrument_family"]]
            assert source == parsed["source"] == SOURCES[meta["instrument_source"]]
            assert (family, source) == gm_family_source(meta["program"])
            assert meta["qualities"] == [0] * len(QUALITIES)
            assert meta["qualities_str"] == []
            assert meta["sample_rate"] == SAMPLE_RATE
            assert meta["soundfont"] == "TimGM6mb.sf2"
            assert meta["sound_source"] == meta["source_group"] == "timgm6mb"
            assert meta["recorded"] is True and meta["licence"] == CATALOG["timgm6mb"].licence
            assert meta["preset"] == [meta["bank"], meta["program"]]
            audio = read_wav(out_dir / f"nsynth-{split}" / "audio" / f"{name}.wav")
            assert len(audio) == NOTE_SAMPLES
            assert loudest_frame_dbfs(audio) > SILENCE_DBFS
            key = (split, meta["instrument"])
            instruments.setdefault(meta["instrument_str"], set()).add(key)
    # One split and one instrument number per instrument_str, and vice versa.
    assert all(len(keys) == 1 for keys in instruments.values())
    numbers = {number for keys in instruments.values() for _, number in keys}
    assert len(numbers) == len(instruments) == len(SMALL["programs"])
    assert summary["notes"] == {split: len(corpus[split]) for split in SPLITS}
    assert summary["silent_notes"] == len(SMALL["velocities"])
    metas = [meta for examples in corpus.values() for meta in examples.values()]
    assert len({m["note"] for m in metas}) == len(metas)
    assert {m["pitch"] for m in metas if m["program"] == 78} == {36, 60, 108}


def test_note_is_held_then_released():
    synth = SoundFontSynth(TIMGM)
    church_organ = synth.render_note(0, 19, 60, 100)
    held = round(HOLD_SECONDS * SAMPLE_RATE)
    assert church_organ.shape == (NOTE_SAMPLES,) and church_organ.dtype == np.int16
    sustain = loudest_frame_dbfs(church_organ[held // 2 : held])
    assert sustain > -40
    assert loudest_frame_dbfs(church_organ[held + SAMPLE_RATE // 2 :]) < sustain - 40
    # No trace of earlier notes (here a loud saw lead, cut off while still
    # releasing) beyond FluidSynth's dither.
    synth.render_note(0, 81, 36, 127)
    again = synth.render_note(0, 19, 60, 100)
    synth.close()
    assert np.abs(church_organ.astype(int) - again).max() <= DITHER_LSB


def test_soundfont_synth_is_a_sound_source():
    """The generic contract: ``render_note(*preset, pitch, velocity)`` for each ``(*preset, name)`` of ``presets()``."""
    with SoundFontSynth(TIMGM) as synth:
        assert isinstance(synth, SoundSource)
        assert (synth.name, synth.licence, synth.sample_rate) == ("TimGM6mb.sf2", None, SAMPLE_RATE)
        *preset, name = synth.presets()[19]
        assert (preset, name) == ([0, 19], "Church Organ")
        organ = synth.render_note(*preset, 60, 100)
        assert organ.shape == (NOTE_SAMPLES,) and loudest_frame_dbfs(organ) > -40
        with pytest.raises(ValueError, match="no preset bank 3 program 19"):
            synth.render_note(3, 19, 60, 100)
    synth.close()  # already closed on leaving the block: nothing to do
    with pytest.raises(NotImplementedError):
        SoundSource().presets()


def test_gm_table():
    assert len(GM_PROGRAM_NAMES) == 128
    documented_exclusions = {55, *range(96, 104), *range(112, 128)}
    assert documented_exclusions == EXCLUDED_PROGRAMS
    for program in range(128):
        family_source = gm_family_source(program)
        if program in documented_exclusions:
            assert family_source is None and gm_family_source(program, synthetic=True) is None
        else:
            family, source = family_source
            assert family in FAMILIES and source in SOURCES
            assert gm_family_source(program, synthetic=True) == (family, "synthetic")
    assert {gm_family_source(p)[0] for p in set(range(128)) - documented_exclusions} == set(FAMILIES)
    assert gm_family_source(4) == ("keyboard", "electronic")
    assert gm_family_source(47) == ("mallet", "acoustic")
    assert gm_family_source(38) == ("bass", "synthetic")
    assert gm_family_source(53) == ("vocal", "acoustic")
    assert gm_family_source(88) == ("synth_lead", "synthetic")
    for bad in (-1, 128, 3.0):
        with pytest.raises(ValueError, match="0-127"):
            gm_family_source(bad)


def test_splits():
    plan = plan_corpus([FLUID, TIMGM, OPL], seed=7)
    assert plan == plan_corpus([FLUID, TIMGM, OPL], seed=7)
    assert [i["split"] for i in plan] != [i["split"] for i in plan_corpus([FLUID, TIMGM, OPL], seed=8)]
    assert len({i["instrument_str"] for i in plan}) == len({i["instrument"] for i in plan}) == len(plan)
    for family in FAMILIES:
        splits = [i["split"] for i in plan if i["instrument_family_str"] == family]
        assert set(splits) == set(SPLITS), family
    # Variant banks are instruments of their program's family.
    mandolin = [i for i in plan if (i["soundfont"], i["bank"], i["program"]) == ("FluidR3_GM.sf2", 16, 25)]
    assert [i["instrument_family_str"] for i in mandolin] == ["guitar"]
    assert all(i["instrument_source_str"] == "synthetic" for i in plan if i["soundfont"] == "OPL-3_FM_128M.sf2")
    assert not any(i["bank"] == 128 or i["program"] in EXCLUDED_PROGRAMS for i in plan)
    sizes = [[assign_splits(["a"] * n, seed=0).count(s) for s in SPLITS] for n in (1, 2, 3, 10)]
    assert sizes == [[1, 0, 0], [1, 0, 1], [1, 1, 1], [8, 1, 1]]


def test_leave_one_soundfont_out(tmp_path):
    # TimGM6mb's pianos 0 and 1 are near-copies by the copy check: it is off here.
    options = "--programs 0 1 40 --pitch-step 48 --velocities 100 --workers 1 --copy-threshold-db 0"
    main(
        ["render", "--soundfont", TIMGM, "--soundfont", OPL, "--out", str(tmp_path)]
        + options.split()
        + ["--leave-out", "OPL-3_FM_128M"]
    )
    corpus = load_corpus(tmp_path)
    soundfonts = {s: {m["soundfont"] for m in corpus[s].values()} for s in SPLITS}
    assert soundfonts["test"] == {"OPL-3_FM_128M.sf2"}
    assert "OPL-3_FM_128M.sf2" not in soundfonts["train"] | soundfonts["valid"]
    assert len({m["instrument"] for m in corpus["test"].values()}) == 3
    with pytest.raises(ValueError, match="cannot leave out"):
        plan_corpus([TIMGM], leave_out=["FluidR3_GM"])


def test_interrupted_render_resumes(tmp_path, small_corpus):
    """A render killed after some notes, resumed, equals an uninterrupted one."""
    killed_after = 11  # mid-way through the second instrument
    out_dir = tmp_path / "resumed"
    script = f"""
import os, signal
from timbre_lobes.render import render_corpus
written = []
def kill_after(note):
    written.append(note)
    if len(written) == {killed_after}:
        os.kill(os.getpid(), signal.SIGKILL)
render_corpus([{TIMGM!r}], {str(out_dir)!r}, workers=1, on_note=kill_after,
              progress=False, **{SMALL!r})
"""
    env = dict(os.environ, PYTHONPATH=REPO)
    process = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True)
    assert process.returncode == -signal.SIGKILL, process.stderr.decode()
    assert not any((out_dir / f"nsynth-{s}" / "examples.json").exists() for s in SPLITS)
    wavs = list(out_dir.glob("nsynth-*/audio/*.wav"))
    assert len(wavs) == killed_after
    # A write cut short leaves only a temporary file, which must not survive.
    leftover = wavs[0].parent / ".keyboard_acoustic_002-060-050.wav.k1ll3d.tmp"
    leftover.write_bytes(b"RIFF")

    summary = render_corpus([TIMGM], out_dir, workers=2, progress=False, **SMALL)
    clean_dir, clean_summary = small_corpus
    assert summary["rendered_notes"] == sum(clean_summary["notes"].values()) - killed_after
    resumed, clean = load_corpus(out_dir), load_corpus(clean_dir)
    assert resumed == clean
    assert not list(out_dir.glob("**/.*.tmp"))
    for split, examples in clean.items():
        for name in examples:
            a = read_wav(out_dir / f"nsynth-{split}" / "audio" / f"{name}.wav")
            b = read_wav(clean_dir / f"nsynth-{split}" / "audio" / f"{name}.wav")
            assert np.abs(a.astype(int) - b).max() <= DITHER_LSB, name
    again = render_corpus([TIMGM], out_dir, workers=1, progress=False, **SMALL)
    assert again["rendered_notes"] == 0
    with pytest.raises(ValueError, match="other options"):
        render_corpus([TIMGM], out_dir, progress=False, **dict(SMALL, velocities=[50]))


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no/such.sf2"):
        render_corpus([tmp_path / "no/such.sf2"], tmp_path / "out")
    not_a_soundfont = tmp_path / "broken.sf2"
    not_a_soundfont.write_bytes(b"not a SoundFont")
    with pytest.raises(ValueError, match="could not load SoundFont"):
        render_corpus([not_a_soundfont], tmp_path / "out")
    with pytest.raises(SystemExit) as exit_info:
        main(["render", "--soundfont", str(tmp_path / "x.sf2"), "--out", str(tmp_path)])
    assert exit_info.value.code == 1
    with pytest.raises(ValueError, match="pitch_step"):
        pitch_grid(21, 108, 0)
    with pytest.raises(ValueError, match="velocities"):
        render_corpus([TIMGM], tmp_path / "out", velocities=[0])
    with pytest.raises(ValueError, match="Orchestra Hit"):
        plan_corpus([TIMGM], programs=[0, 55])
    with pytest.raises(ValueError, match="fractions"):
        assign_splits(["reed"], fractions=(0.5, 0.5, 0.5))


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["render", "--help"])
    help_text = capsys.readouterr().out
    options = "--source --soundfont --list-sources --out --programs --pitch-step --pitch-range --velocities "
    options += "--stagger-pitches --seed --fractions --leave-out --copy-threshold-db --synthetic --workers --gain"
    for option in options.split():
        assert option in help_text


def test_a_soundfont_with_no_melodic_preset_is_a_clear_error(tmp_path, monkeypatch, capsys):
    """A drum-kit-only SoundFont lists no preset outside the drum bank: render stops, writes nothing, says why."""
    from timbre_lobes.render import plan

    monkeypatch.setattr(plan.SoundFontSynth, "presets", lambda self: [])
    out = tmp_path / "corpus"
    with pytest.raises(SystemExit) as exit_info:
        main(["render", "--out", str(out), "--soundfont", "/usr/share/sounds/sf2/TimGM6mb.sf2"])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert "no melodic presets to render in timgm6mb (0 presets outside" in err
    assert not (out / "nsynth-train" / "examples.json").exists()


MUSESCORE = "/usr/share/sounds/sf3/MuseScore_General.sf3"


def test_breath_controlled_presets_sound():
    """MuseScore_General's bank-17 'Expr.' presets read the breath controller (CC 2): every note sets it."""
    from timbre_lobes.render.runner import SILENCE_DBFS, loudest_frame_dbfs
    from timbre_lobes.render.sources import SoundFontSynth

    with SoundFontSynth(MUSESCORE) as synth:
        expr = [(b, p, n) for b, p, n in synth.presets() if b == 17 and "Expr" in n]
        assert len(expr) > 20
        for bank, program, name in expr[:3]:
            assert loudest_frame_dbfs(synth.render_note(bank, program, 60, 100)) > SILENCE_DBFS + 20, name


def test_splits_are_drawn_over_the_presets_that_sound(tmp_path):
    """The case of the bug report: MuseScore_General, three programs; silent presets never take a split's place."""
    from timbre_lobes.render import plan

    calls = []

    def survey(candidates):
        calls.extend((c["bank"], c["program"]) for c in candidates)
        # Pretend every bank-0 preset is silent; no fingerprints, so no copy check.
        return [(c["bank"] != 0, None) for c in candidates]

    kept = plan.plan_corpus([MUSESCORE], programs=[0, 40, 73], survey=survey)
    assert calls and all(i["bank"] != 0 for i in kept) and len(kept) == sum(b != 0 for b, _ in calls)
    summary = render_corpus(
        [MUSESCORE],
        str(tmp_path / "c"),
        programs=[0, 40, 73],
        pitch_step=12,
        pitch_range=(48, 72),
        velocities=[100],
        copy_threshold_db=0.0,  # its variant banks are near-copies of bank 0: the check would leave 3
    )
    assert all(summary["instruments"][split] > 0 for split in ("train", "valid", "test")), summary
    assert summary["silent_instruments"] == 0


def test_staggered_pitches_cover_every_pitch_class(tmp_path):
    """With --stagger-pitches each instrument keeps its octave step, shifted a fifth from the previous one's."""
    from timbre_lobes.render.plan import instrument_pitches

    grids = [instrument_pitches(n, 21, 108, 12, stagger=True) for n in range(12)]
    assert {p % 12 for grid in grids for p in grid} == set(range(12))
    assert all(set(np.diff(grid)) == {12} for grid in grids)
    assert instrument_pitches(5, 21, 108, 12) == instrument_pitches(0, 21, 108, 12) == list(range(24, 109, 12))
    out = tmp_path / "staggered"
    options = dict(programs=[0, 40], pitch_step=24, pitch_range=(36, 84), velocities=[100], workers=1, progress=False)
    render_corpus([TIMGM], out, stagger_pitches=True, copy_threshold_db=0.0, **options)
    corpus = load_corpus(out)
    pitches = {}
    for examples in corpus.values():
        for meta in examples.values():
            pitches.setdefault(meta["instrument"], set()).add(meta["pitch"])
    assert pitches == {n: set(instrument_pitches(n, 36, 84, 24, stagger=True)) for n in pitches}
    assert len(set(map(frozenset, pitches.values()))) == 2
    with pytest.raises(ValueError, match="other options.*stagger_pitches"):
        render_corpus([TIMGM], out, stagger_pitches=False, copy_threshold_db=0.0, **options)
