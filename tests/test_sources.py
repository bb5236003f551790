"""Tests of the sound sources beyond FluidSynth, the catalogue and the independence check.

They need the Debian packages of the README's set-up (freepats, timidity, stk,
hexter, minuet-data, denemo-data, the SoundFonts) and PyPI's dexed-py and
sf2utils.
"""

import numpy as np
import pytest

from timbre_lobes.__main__ import main
from timbre_lobes.data.nsynth_labels import FAMILIES, NOTE_SECONDS, SAMPLE_RATE, SOURCES, SPLITS
from timbre_lobes.render import CATALOG, DEFAULT_SOURCES, open_source, plan_corpus
from timbre_lobes.render.independence import distances, find_copies, note_fingerprint, preset_fingerprint
from timbre_lobes.render.runner import SILENCE_DBFS, loudest_frame_dbfs
from timbre_lobes.render.synths import dx7_family, one_note_midi, read_timidity_config

NOTE_SAMPLES = round(NOTE_SECONDS * SAMPLE_RATE)


def check_note(audio):
    assert audio.dtype == np.int16 and audio.shape == (NOTE_SAMPLES,)
    assert loudest_frame_dbfs(audio) > SILENCE_DBFS + 20
    # The key is released after HOLD_SECONDS: the last 50 ms are far quieter than the loudest.
    assert np.abs(audio[-800:]).max() < np.abs(audio).max() / 4


@pytest.mark.parametrize("name", ["freepats", "stk", "dx7", "generaluser", "airfont"])
def test_each_new_source_renders_notes_with_metadata(name):
    info = CATALOG[name]
    with open_source(name) as source:
        assert (source.name, source.spec, source.group) == (name, name, info.group)
        assert (source.licence, source.recorded, source.sample_rate) == (info.licence, info.recorded, SAMPLE_RATE)
        presets = source.presets()
        assert len(presets) > 30
        quieter = []
        for preset in presets[:2]:
            *fields, preset_name = preset
            note = source.render_note(*fields, 60, 100)
            check_note(note)
            # Deterministic (SoundFonts up to FluidSynth's +-1 LSB dither), and velocity matters.
            again = source.render_note(*fields, 60, 100)
            assert np.abs(note.astype(int) - again).max() <= 2
            soft = source.render_note(*fields, 60, 30)
            assert np.abs(soft).max() <= np.abs(note).max()
            quieter.append(np.abs(soft).max() < np.abs(note).max())
            family, nsynth_source, rule = source.classify(*preset)
            assert family in FAMILIES and nsynth_source in SOURCES and rule
            assert (nsynth_source != "synthetic") == info.recorded or name in ("generaluser", "airfont")
        # Some DX7 voices ignore velocity, as on the instrument; the first does not.
        assert quieter[0]
        unknown = [999 if isinstance(field, int) else "no such preset" for field in fields]
        with pytest.raises(ValueError):
            source.render_note(*unknown, 60, 100)


def test_stk_notes_are_bit_identical_render_after_render():
    """STK's breath noise is seeded from the clock: faketime must freeze it, not start it running.

    With a running fake clock about one render in 40 was seeded a second later (a different
    note); 40 renders of a wind model then differ with probability about 0.6.
    """
    with open_source("stk") as source:
        first = source.render_note(0, 60, 100)
        for _ in range(40):
            assert np.array_equal(source.render_note(0, 60, 100), first)


def test_timidity_plays_only_the_programs_its_patch_set_defines(tmp_path):
    """An undefined program would fall back to the system's FluidR3 set: such programs are not presets."""
    programs = read_timidity_config(CATALOG["freepats"].path)
    with open_source("freepats") as source:
        listed = {program for _, program, _ in source.presets()}
    assert listed == set(programs) - {p for p in programs if p >= 128} and 0 < len(listed) < 128
    assert 0 in listed
    midi = one_note_midi(40, 60, 100)
    assert midi[:4] == b"MThd" and b"MTrk" in midi and bytes([0xC0, 40]) in midi and bytes([0x90, 60, 100]) in midi


def test_dx7_family_from_the_voice_name():
    assert dx7_family("E.PIANO 1")[0] == "keyboard"
    assert dx7_family("BRASS   1")[0] == "brass"
    assert dx7_family("STRINGS 2")[0] == "string"
    assert dx7_family("FLUTE  1")[0] == "flute"
    assert dx7_family("LASERGUN") is None  # a sound effect: no NSynth family
    with open_source("dx7") as source:
        presets = source.presets()
    assert len(presets) == 432 and len({(stem, index) for stem, index, _ in presets}) == 432
    assert sum(source.classify(*p) is not None for p in presets) > 300


def test_independence_check_on_known_copies_and_independent_banks():
    """A preset rendered twice is a copy; MuseScore_General plays FluidR3's samples; GeneralUser is its own bank."""
    with open_source("fluidr3") as fluid, open_source("musescore") as musescore, open_source("generaluser") as gu:
        for program in (24, 56):  # nylon guitar, trumpet
            original = preset_fingerprint(fluid, (0, program))
            again = preset_fingerprint(fluid, (0, program))
            copy = preset_fingerprint(musescore, (0, program))
            independent = preset_fingerprint(gu, (0, program))
            d_again, d_copy, d_independent = distances(original, np.stack([again, copy, independent]))
            assert d_again < 0.1
            assert d_copy < 4.0 < d_independent, (program, d_copy, d_independent)
            assert find_copies([original, again, copy, independent]) == [
                None,
                (0, round(d_again, 2)),
                (0, round(d_copy, 2)),
                None,
            ]
    # A level change is not a difference; silence gives no fingerprint.
    tone = (20000 * np.sin(2 * np.pi * 440 * np.arange(NOTE_SAMPLES) / SAMPLE_RATE)).astype(np.int16)
    assert np.abs(note_fingerprint(tone) - note_fingerprint(tone // 4)).mean() < 0.2
    assert note_fingerprint(np.zeros(NOTE_SAMPLES, np.int16)) is None


def test_shared_samples_between_soundfonts_are_found():
    """Airfont 320 reuses TimGM6mb samples byte for byte: those presets are copies whatever they measure."""
    with open_source("airfont") as airfont, open_source("timgm6mb") as timgm:
        air, tim = airfont.preset_samples(), timgm.preset_samples()
    tim_samples = set().union(*tim.values())
    sharing = [preset for preset, digests in air.items() if digests & tim_samples]
    assert 30 < len(sharing) < len(air)
    preset = sharing[0]
    owner = next(p for p, digests in tim.items() if digests & air[preset])
    far = np.zeros((3, 64)), np.full((3, 64), 30.0)
    copies = find_copies(list(far), samples=[tim[owner], air[preset]], groups=["timgm6mb", "airfont"])
    assert copies == [None, (0, 30.0)]
    # Within one bank, shared samples are by design and left to the spectral test.
    assert find_copies(list(far), samples=[tim[owner], tim[owner]], groups=["timgm6mb"] * 2) == [None, None]


def test_leave_one_source_out_holds_out_a_whole_group():
    """Left out by group name, MuseScore_General goes to test with FluidR3 (one group): no leak through a copy."""
    sources = ["fluidr3", "musescore", "timgm6mb", "stk"]
    plan = plan_corpus(sources, leave_out=["fluidr3"], seed=3)
    groups = {split: {i["source_group"] for i in plan if i["split"] == split} for split in SPLITS}
    assert groups["test"] == {"fluidr3"} | (groups["test"] & {"timgm6mb", "stk"})
    assert "fluidr3" not in groups["train"] | groups["valid"]
    assert {i["sound_source"] for i in plan if i["source_group"] == "fluidr3"} == {"fluidr3", "musescore"}
    assert all(i["split"] == "test" for i in plan if i["source_group"] == "fluidr3")
    assert groups["train"] == {"timgm6mb", "stk"}
    for instrument in plan:
        assert instrument["licence"] == CATALOG[instrument["sound_source"]].licence
        assert instrument["family_rule"] and instrument["preset_name"]


def test_list_sources_names_every_source_with_its_licence(capsys):
    main(["render", "--list-sources"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + len(CATALOG)
    for info, line in zip(CATALOG.values(), lines[1:]):
        assert line.split()[:3] == [info.name, "yes", info.group] and line.endswith(info.licence)
    assert set(DEFAULT_SOURCES) <= set(CATALOG) and "musescore" not in DEFAULT_SOURCES


def test_an_unknown_or_missing_source_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown sound source 'nosuch'.*catalogue name"):
        open_source("nosuch")
    with pytest.raises(FileNotFoundError, match="not found"):
        open_source(str(tmp_path / "missing.sf2"))
    out = tmp_path / "corpus"
    with pytest.raises(SystemExit) as exit_info:
        main(["render", "--out", str(out), "--source", "nosuch"])
    assert exit_info.value.code != 0 and "nosuch" in capsys.readouterr().err
    assert not out.exists()
    for option, value, message in (
        ("--gain", "-3", "must be a positive number"),
        ("--workers", "0", "must be a positive integer"),
        ("--copy-threshold-db", "-1", "must be a number of 0 or more"),
    ):
        with pytest.raises(SystemExit):
            main(["render", "--out", str(out), option, value])
        assert message in capsys.readouterr().err and not out.exists()


def test_leaving_out_one_source_holds_out_its_group():
    """--leave-out musescore also holds out FluidR3_GM (one group); holding out everything is refused."""
    plan = plan_corpus(["fluidr3", "musescore", "timgm6mb"], programs=[0, 40, 73], leave_out=["musescore"])
    assert {i["sound_source"] for i in plan if i["split"] == "test"} >= {"fluidr3", "musescore"}
    assert all(i["split"] == "test" for i in plan if i["source_group"] == "fluidr3")
    assert {i["sound_source"] for i in plan if i["split"] == "train"} == {"timgm6mb"}
    with pytest.raises(ValueError, match="holds out every instrument"):
        plan_corpus(["fluidr3", "musescore"], programs=[0, 73], leave_out=["fluidr3"])


def test_programs_and_sources_without_general_midi_programs():
    with pytest.raises(ValueError, match="stk have no General MIDI programs"):
        plan_corpus(["stk"], programs=[0])
    with pytest.warns(UserWarning, match="stk have no General MIDI programs"):
        plan = plan_corpus(["stk", "timgm6mb"], programs=[0])
    assert {i["sound_source"] for i in plan} == {"timgm6mb"}


def test_a_file_as_output_folder_and_a_catalogue_file_by_path(tmp_path, capsys):
    a_file = tmp_path / "corpus.txt"
    a_file.write_text("not a folder")
    with pytest.raises(SystemExit):
        main(["render", "--out", str(a_file), "--source", "timgm6mb", "--programs", "0"])
    assert "is a file, not a folder" in capsys.readouterr().err and a_file.read_text() == "not a folder"
    # A catalogue SoundFont given by its path is that source: the corpus resumes under either spelling.
    from timbre_lobes.render import render_corpus

    options = dict(programs=[0], pitch_step=48, velocities=[100], workers=1, progress=False)
    first = render_corpus([CATALOG["timgm6mb"].path], tmp_path / "c", **options)
    again = render_corpus(["timgm6mb"], tmp_path / "c", **options)
    assert first["rendered_notes"] > 0 and again["rendered_notes"] == 0
    # Other options are refused before the survey renders anything.
    from timbre_lobes.render import runner

    def no_survey(*args, **kwargs):
        raise AssertionError("surveyed before the options were checked")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "Survey", no_survey)
        with pytest.raises(ValueError, match="other options.*velocities"):
            render_corpus(["timgm6mb"], tmp_path / "c", **dict(options, velocities=[50]))


def test_an_interrupted_render_says_how_to_resume(tmp_path, monkeypatch, capsys):
    from timbre_lobes.render import cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "render_corpus", interrupted)
    with pytest.raises(SystemExit) as exit_info:
        main(["render", "--out", str(tmp_path / "c"), "--source", "stk"])
    assert exit_info.value.code == 130
    assert "interrupted; run the same command again to resume" in capsys.readouterr().err


def test_a_missing_player_or_module_is_named_with_its_package(monkeypatch):
    """No stk-demo, no timidity, no dexed: --list-sources says 'no' and opening says what to install."""
    from timbre_lobes.render import catalog
    from timbre_lobes.render.cli import list_sources

    monkeypatch.setattr(catalog.shutil, "which", lambda program: None)
    monkeypatch.setattr(catalog.importlib.util, "find_spec", lambda module: None)
    assert "apt-get install stk" in catalog.missing(CATALOG["stk"])
    monkeypatch.setattr(catalog.shutil, "which", lambda program: None if program == "faketime" else program)
    assert "faketime not found; install it with `apt-get install faketime`" in catalog.missing(CATALOG["stk"])
    monkeypatch.setattr(catalog.shutil, "which", lambda program: None)
    assert "apt-get install timidity" in catalog.missing(CATALOG["freepats"])
    assert "pip install dexed-py" in catalog.missing(CATALOG["dx7"])
    assert catalog.missing(CATALOG["timgm6mb"]) is None
    installed = {line.split()[0]: line.split()[1] for line in list_sources().splitlines()[1:]}
    assert [name for name, flag in installed.items() if flag == "no"] == ["freepats", "stk", "dx7"]
    with pytest.raises(FileNotFoundError, match="pip install dexed-py"):
        plan_corpus(["dx7"])


def test_stk_wind_notes_are_the_same_whenever_they_are_rendered():
    """stk-demo seeds its breath noise from the clock: a frozen clock makes a re-render a second later identical."""
    import time

    from timbre_lobes.render.synths import STK_PRESETS, StkSynth

    number = next(i for i, (_, instrument, _, _) in enumerate(STK_PRESETS) if instrument == "Saxofony")
    synth = StkSynth()
    note = synth.render_note(number, 60, 100)
    time.sleep(1.1)
    assert np.array_equal(note, synth.render_note(number, 60, 100))
