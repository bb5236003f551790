#!/usr/bin/env python3
"""An RWC-style stand-in corpus rendered from SoundFonts, for when RWC is not at hand.

    python recipes/RWC/standin.py corpora/rwc-standin [--pitch-step 4] [--soundfont PATH ...]

It is laid out and named like RWC-MDB-I (``RWC_I_0<V>/<NN><V>/<NN><V><cc>NO<D>.wav``), so that
``rwc_prepare`` reads it exactly as it reads RWC, note splitting included:

* categories: the General MIDI programs matching RWC's pitched instruments
  (:data:`STANDIN_CATEGORIES`: RWC number, code, category, GM program, pitch range);
* variations: independent source groups, one SoundFont each (:data:`DEFAULT_SOUNDFONTS`):
  1 FluidR3_GM, 2 TimGM6mb, 3 OPL-3 FM, and 4 MuseScore_General only for the programs where it is
  not a near-copy of FluidR3_GM (:func:`is_near_copy`: MuseScore_General reuses many FluidR3
  samples);
* dynamics: two velocity layers, F (velocity 110) and P (40); one playing style, NO;
* each file: the program's notes every ``pitch_step`` semitones through its range, ascending,
  each ``note_seconds`` long (the key held, then a 0.2 s fade: a stand-in release) and followed by
  ``gap_seconds`` of digital silence; silent notes are left out. ``pitch_ranges.csv`` gives each
  complete file's range, so the preparation knows every note's pitch.

16 kHz mono 16-bit wavs (RWC is 44.1 kHz; the preparation resamples whatever it reads). The NSynth
demo model is trained on FluidR3_GM, TimGM6mb and OPL-3 FM: this corpus cannot show transfer to
sources the pretrained model has never heard (see the recipe README).
"""

import argparse
import csv
import os

import numpy as np

from timbre_lobes.atomic import atomic_open, write_json
from timbre_lobes.render import SoundFontSynth, loudest_frame_dbfs
from timbre_lobes.serving.cli import positive_float, positive_int

#: ``(number, code, category, GM program (0-based), lowest, highest MIDI note)``. RWC's ukulele,
#: mandolin and sho have no General MIDI program and are left out; codes of the numbers whose RWC
#: code is not checked (06, 35, 37: see rwc_prepare.CATEGORY_TABLE) are this corpus's own.
STANDIN_CATEGORIES = (
    (1, "PF", "piano", 0, 21, 108),
    (2, "EP", "electric_piano", 4, 28, 103),
    (3, "HC", "harpsichord", 6, 29, 89),
    (4, "GL", "glockenspiel", 9, 79, 108),
    (5, "XY", "xylophone", 13, 65, 108),
    (6, "PO", "pipe_organ", 19, 36, 96),
    (7, "AC", "accordion", 21, 41, 89),
    (8, "HA", "harmonica", 22, 60, 96),
    (9, "CG", "classical_guitar", 24, 40, 83),
    (11, "AG", "acoustic_guitar", 25, 40, 83),
    (13, "EG", "electric_guitar", 27, 40, 86),
    (14, "EB", "electric_bass", 33, 28, 67),
    (15, "VN", "violin", 40, 55, 100),
    (16, "VL", "viola", 41, 48, 88),
    (17, "VC", "cello", 42, 36, 76),
    (18, "CB", "contrabass", 43, 28, 67),
    (19, "HP", "harp", 46, 24, 103),
    (20, "TI", "timpani", 47, 40, 57),
    (21, "TR", "trumpet", 56, 54, 86),
    (22, "TB", "trombone", 57, 40, 72),
    (23, "TU", "tuba", 58, 28, 58),
    (24, "HR", "horn", 60, 34, 77),
    (25, "SS", "soprano_sax", 64, 56, 88),
    (26, "AS", "alto_sax", 65, 49, 81),
    (27, "TS", "tenor_sax", 66, 44, 76),
    (28, "BS", "baritone_sax", 67, 36, 69),
    (29, "OB", "oboe", 68, 58, 91),
    (29, "EH", "english_horn", 69, 52, 81),
    (30, "FG", "bassoon", 70, 34, 75),
    (31, "CL", "clarinet", 71, 50, 91),
    (32, "PC", "piccolo", 72, 74, 108),
    (33, "FL", "flute", 73, 60, 96),
    (33, "PN", "pan_flute", 75, 60, 96),
    (34, "RC", "recorder", 74, 60, 96),
    (35, "SK", "shakuhachi", 77, 55, 84),
    (36, "BJ", "banjo", 105, 48, 84),
    (37, "SM", "shamisen", 106, 50, 84),
    (38, "KT", "koto", 107, 48, 84),
)
#: ``(variation, SoundFont path, Debian package)``; the last is used only where it is no near-copy.
DEFAULT_SOUNDFONTS = (
    (1, "/usr/share/sounds/sf2/FluidR3_GM.sf2", "fluid-soundfont-gm"),
    (2, "/usr/share/sounds/sf2/TimGM6mb.sf2", "timgm6mb-soundfont"),
    (3, "/usr/share/sounds/sf2/OPL-3_FM_128M.sf2", "opl3-soundfont"),
    (4, "/usr/share/sounds/sf3/MuseScore_General.sf3", "musescore-general-soundfont"),
)
#: Variation whose programs are checked against FluidR3_GM (variation 1) for near-copies.
CHECKED_VARIATION = 4
#: Median |difference| of mean log-mel spectra (dB) below which two renders count as one source.
#: Measured (docs/experiments, 103 programs): FluidR3-MuseScore 2.85 dB, FluidR3-TimGM6mb 6.02 dB.
NEAR_COPY_DB = 4.0
DYNAMICS = (("F", 110), ("P", 40))
SAMPLE_RATE = 16000
SILENCE_DBFS = -70.0
OPTIONS_FILE = "standin.json"


def render_file(synth, program, pitches, velocity, note_seconds, gap_seconds):
    """One RWC-style recording: the notes that sound, each followed by digital silence.

    Returns
    -------
    audio : numpy.ndarray
        ``int16`` [samples] at the synthesizer's rate.
    sounding : list of int
        The pitches written, in order.
    """
    sr = synth.sample_rate
    keep, fade = round(note_seconds * sr), round(0.2 * sr)
    ramp = np.ones(keep)
    ramp[-fade:] = 0.5 * (1 + np.cos(np.linspace(0, np.pi, fade)))
    parts, sounding = [np.zeros(round(gap_seconds * sr), dtype=np.int16)], []
    for pitch in pitches:
        note = synth.render_note(0, program, pitch, velocity)
        if loudest_frame_dbfs(note, sr) < SILENCE_DBFS:
            continue
        parts += [np.round(note[:keep] * ramp).astype(np.int16), np.zeros(round(gap_seconds * sr), dtype=np.int16)]
        sounding.append(pitch)
    return np.concatenate(parts), sounding


def mean_log_mel(audio, sr=SAMPLE_RATE):
    """[64] mean log-mel spectrum (dB) of ``int16`` audio."""
    import librosa

    mel = librosa.feature.melspectrogram(y=audio.astype(np.float32) / 32768, sr=sr, n_mels=64)
    return librosa.power_to_db(mel + 1e-10).mean(axis=1)


def is_near_copy(synth_a, synth_b, program, lowest, highest):
    """Whether ``program`` sounds the same in two SoundFonts (median spectral difference < NEAR_COPY_DB).

    Three probe notes (velocity 100) through the range; a program silent in either is no copy.
    """
    diffs = []
    for pitch in np.linspace(lowest, highest, 5)[1:-1].round().astype(int):
        a, b = synth_a.render_note(0, program, int(pitch), 100), synth_b.render_note(0, program, int(pitch), 100)
        if min(loudest_frame_dbfs(a), loudest_frame_dbfs(b)) < SILENCE_DBFS:
            return False
        diffs.append(np.median(np.abs(mean_log_mel(a) - mean_log_mel(b))))
    return bool(np.mean(diffs) < NEAR_COPY_DB)


def render_standin(
    folder,
    soundfonts=DEFAULT_SOUNDFONTS,
    categories=STANDIN_CATEGORIES,
    pitch_step=4,
    note_seconds=2.0,
    gap_seconds=0.5,
):
    """Renders the stand-in corpus into ``folder`` (files already there are kept).

    Returns
    -------
    dict
        ``files`` written, ``near_copies`` (``[category, ...]`` left out of the checked variation).

    Raises
    ------
    FileNotFoundError
        A SoundFont is missing (the message names its Debian package).
    """
    for _, path, package in soundfonts:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"SoundFont {path} not found; install it with `apt-get install {package}`")
    synths = {variation: SoundFontSynth(path, sample_rate=SAMPLE_RATE) for variation, path, _ in soundfonts}
    ranges, near_copies, files = [], [], 0
    try:
        for number, code, category, program, lowest, highest in categories:
            pitches = list(range(lowest, highest + 1, pitch_step))
            for variation, synth in synths.items():
                checked = variation == CHECKED_VARIATION and 1 in synths
                if checked and is_near_copy(synths[1], synth, program, lowest, highest):
                    near_copies.append(category)
                    continue
                for dynamics, velocity in DYNAMICS:
                    stem = f"{number:02d}{variation}{code}NO{dynamics}"
                    path = os.path.join(folder, f"RWC_I_0{variation}", f"{number:02d}{variation}", f"{stem}.wav")
                    audio, sounding = render_file(synth, program, pitches, velocity, note_seconds, gap_seconds)
                    if not sounding:
                        continue
                    _write_wav(path, audio)
                    files += 1
                    if sounding == pitches:
                        ranges.append((f"{stem}.wav", lowest, pitches[-1], pitch_step))
    finally:
        for synth in synths.values():
            synth.close()
    with atomic_open(os.path.join(folder, "pitch_ranges.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "lowest", "highest", "step"])
        writer.writerows(ranges)
    return {"files": files, "near_copies": near_copies}


def _write_wav(path, audio):
    import soundfile as sf

    with atomic_open(path, "wb") as handle:
        sf.write(handle, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")


def ensure_standin_corpus(folder, **options):
    """Renders the stand-in corpus into ``folder`` unless it is there with the same options."""
    settings = {"pitch_step": 4, "note_seconds": 2.0, "gap_seconds": 0.5, **options}
    wanted = {
        "settings": settings,
        "categories": [list(c) for c in STANDIN_CATEGORIES],
        "soundfonts": [list(s) for s in DEFAULT_SOUNDFONTS],
        "near_copy_db": NEAR_COPY_DB,
    }
    marker = os.path.join(folder, OPTIONS_FILE)
    if os.path.isfile(marker):
        import json

        with open(marker) as handle:
            if json.load(handle).get("wanted") == wanted:
                return folder
    print(f"Rendering the RWC-style stand-in corpus into {folder} ...", flush=True)
    summary = render_standin(folder, **settings)
    write_json(marker, {"wanted": wanted, **summary})  # last: marks the corpus complete
    print(
        f"Stand-in corpus: {summary['files']} files; MuseScore_General left out as a FluidR3 near-copy for "
        f"{len(summary['near_copies'])} categories."
    )
    return folder


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder")
    parser.add_argument("--pitch-step", type=positive_int, default=4)
    parser.add_argument("--note-seconds", type=positive_float, default=2.0)
    parser.add_argument("--gap-seconds", type=positive_float, default=0.5)
    args = parser.parse_args(argv)
    if os.path.exists(args.folder) and not os.path.isdir(args.folder):
        parser.error(f"{args.folder} is a file, not a folder: give a folder for the stand-in corpus")
    ensure_standin_corpus(
        args.folder, pitch_step=args.pitch_step, note_seconds=args.note_seconds, gap_seconds=args.gap_seconds
    )


if __name__ == "__main__":
    main()
