#!/usr/bin/env python3
"""An RWC-style stand-in corpus rendered from General MIDI sound banks, for when RWC is not at hand.

    python recipes/RWC/standin.py corpora/rwc-standin [--pitch-step 4]

It is laid out and named like RWC-MDB-I (``RWC_I_0<V>/<NN><V>/<NN><V><cc>NO<D>.wav``), so that
``rwc_prepare`` reads it exactly as it reads RWC, note splitting included:

* categories: the General MIDI programs matching RWC's pitched instruments
  (:data:`STANDIN_CATEGORIES`: RWC number, code, category, GM program, pitch range);
* variations: independent source groups of the render catalogue
  (:data:`STANDIN_VARIATIONS`, :mod:`timbre_lobes.render.catalog`): 1 FluidR3_GM, 2 TimGM6mb,
  3 OPL-3 FM, 4 Airfont 320 and 5 GeneralUser GS. Per category, a variation whose program is a
  near-copy of another's (the render package's independence check,
  :func:`timbre_lobes.render.independence.find_copies`: spectral fingerprints at three pitches of
  the range, and shared SoundFont samples) is left out, GeneralUser's being checked first so that it
  stays;
* the test variation: ``rwc_prepare`` holds out each category's highest-numbered variation, here
  GeneralUser GS (:data:`TEST_VARIATION`) wherever it plays. Fine-tune from an NSynth model that
  never heard GeneralUser (the benchmark's ``leave_one_source_out`` model, or any model trained on
  a corpus rendered with ``--leave-out generaluser``), or the transfer is to a source it knows
  (``compare.py`` checks and says so);
* dynamics: two velocity layers, F (velocity 110) and P (40); one playing style, NO;
* each file: the program's notes every ``pitch_step`` semitones through its range, ascending,
  each ``note_seconds`` long (the key held, then a 0.2 s fade: a stand-in release) and followed by
  ``gap_seconds`` of digital silence; silent notes are left out. ``pitch_ranges.csv`` gives each
  complete file's range, so the preparation knows every note's pitch.

16 kHz mono 16-bit wavs (RWC is 44.1 kHz; the preparation resamples whatever it reads).
"""

import argparse
import csv
import os

import numpy as np

from timbre_lobes.atomic import atomic_open, write_json
from timbre_lobes.render import loudest_frame_dbfs, open_source
from timbre_lobes.render.independence import COPY_THRESHOLD_DB, find_copies, preset_fingerprint
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
#: ``(variation, catalogue source)``: General MIDI banks, one source group each. The highest
#: number is every category's test variation (``rwc_prepare`` holds it out).
STANDIN_VARIATIONS = ((1, "fluidr3"), (2, "timgm6mb"), (3, "opl3"), (4, "airfont"), (5, "generaluser"))
TEST_VARIATION = max(v for v, _ in STANDIN_VARIATIONS)
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


def independent_variations(sources, program, lowest, highest, samples=None):
    """The variations whose ``program`` is no near-copy of another's, the test variation checked first.

    Arguments
    ---------
    sources : dict
        ``{variation: open SoundSource}``.
    program : int
        General MIDI program (0-based, bank 0).
    lowest, highest : int
        The category's range (MIDI): the fingerprint's three pitches lie inside it.
    samples : dict, optional
        ``{variation: {(bank, program): set of sample digests}}`` (SoundFonts; see
        ``SoundFontSynth.preset_samples``): a shared sample makes a copy.

    Returns
    -------
    kept : list of int
        Variations kept, ascending.
    copies : list of list
        ``[variation, variation it copies, distance dB]`` of those left out.
    """
    pitches = tuple(int(p) for p in np.linspace(lowest, highest, 5)[1:-1].round())
    order = sorted(sources, key=lambda v: (v != max(sources), v))  # the highest (test) variation first
    fingerprints = [preset_fingerprint(sources[v], (0, program), pitches=pitches) for v in order]
    digests = [set((samples or {}).get(v, {}).get((0, program), ())) for v in order]
    groups = [sources[v].group for v in order]
    found = find_copies(fingerprints, COPY_THRESHOLD_DB, samples=digests, groups=groups)
    kept = sorted(v for v, copy in zip(order, found) if copy is None)
    copies = [[v, order[copy[0]], copy[1]] for v, copy in zip(order, found) if copy is not None]
    return kept, copies


def render_standin(
    folder,
    variations=STANDIN_VARIATIONS,
    categories=STANDIN_CATEGORIES,
    pitch_step=4,
    note_seconds=2.0,
    gap_seconds=0.5,
):
    """Renders the stand-in corpus into ``folder`` (files already there are kept).

    Arguments
    ---------
    folder : str
        Output folder.
    variations : sequence of (int, str)
        ``(variation number, catalogue source name)``.
    categories : sequence of tuple
        Rows like :data:`STANDIN_CATEGORIES`.
    pitch_step : int
        Semitones between a file's notes.
    note_seconds, gap_seconds : float
        Length of each note and of the silence after it.

    Returns
    -------
    dict
        ``files`` written; ``copies`` (``{category: [[variation, copied variation, dB], ...]}``,
        the variations left out as near-copies); ``test_variation`` (``{category: [variation,
        source]}``, the variation ``rwc_prepare`` will hold out); ``sources`` (``{variation:
        [source, source group]}``).

    Raises
    ------
    FileNotFoundError
        A source is not installed (the message names its package).
    """
    sources = {}
    try:
        for variation, name in variations:
            sources[variation] = open_source(name)
        samples = {v: s.preset_samples() for v, s in sources.items() if hasattr(s, "preset_samples")}
        ranges, copies, test_variation, files = [], {}, {}, 0
        for number, code, category, program, lowest, highest in categories:
            pitches = list(range(lowest, highest + 1, pitch_step))
            kept, found = independent_variations(sources, program, lowest, highest, samples)
            if found:
                copies[category] = found
            for variation in kept:
                for dynamics, velocity in DYNAMICS:
                    stem = f"{number:02d}{variation}{code}NO{dynamics}"
                    path = os.path.join(folder, f"RWC_I_0{variation}", f"{number:02d}{variation}", f"{stem}.wav")
                    audio, sounding = render_file(
                        sources[variation], program, pitches, velocity, note_seconds, gap_seconds
                    )
                    if not sounding:
                        continue
                    _write_wav(path, audio)
                    files += 1
                    test_variation[category] = [variation, sources[variation].name]
                    if sounding == pitches:
                        ranges.append((f"{stem}.wav", lowest, pitches[-1], pitch_step))
    finally:
        for source in sources.values():
            source.close()
    with atomic_open(os.path.join(folder, "pitch_ranges.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "lowest", "highest", "step"])
        writer.writerows(ranges)
    return {
        "files": files,
        "copies": copies,
        "test_variation": test_variation,
        "sources": {v: [s.name, s.group] for v, s in sources.items()},
    }


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
        "variations": [list(v) for v in STANDIN_VARIATIONS],
        "copy_threshold_db": COPY_THRESHOLD_DB,
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
    names = dict(STANDIN_VARIATIONS)
    unheld = sorted(c for c, (v, _) in summary["test_variation"].items() if v != TEST_VARIATION)
    print(
        f"Stand-in corpus: {summary['files']} files; {sum(map(len, summary['copies'].values()))} variations left "
        f"out as near-copies; test variation {names[TEST_VARIATION]} in "
        f"{len(summary['test_variation']) - len(unheld)} of {len(summary['test_variation'])} categories"
        + (f" (not in: {', '.join(unheld)})" if unheld else "")
        + "."
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
