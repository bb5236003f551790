"""The ``render`` command: ``python -m timbre_lobes render --out DIR [options]``.

    python -m timbre_lobes render --out corpus --source generaluser --source stk --pitch-step 12
    python -m timbre_lobes render --list-sources

renders the given sound sources (default: ``DEFAULT_SOURCES``) into an
NSynth-format corpus with :func:`timbre_lobes.render.runner.render_corpus`; an
interrupted render is resumed by running the same command again.
"""

import sys

from timbre_lobes.argtypes import non_negative_float, positive_float, positive_int
from timbre_lobes.render.catalog import CATALOG, DEFAULT_SOURCES, missing
from timbre_lobes.render.independence import COPY_THRESHOLD_DB
from timbre_lobes.render.plan import (
    DEFAULT_FRACTIONS,
    DEFAULT_SEED,
    HIGHEST_PITCH,
    LOWEST_PITCH,
    SYNTHETIC_SOUNDFONTS,
)
from timbre_lobes.render.runner import NSYNTH_VELOCITIES, default_sources, render_corpus
from timbre_lobes.render.sources import DEFAULT_GAIN


def add_render_parser(subparsers):
    """Adds the ``render`` command to an ``argparse`` subparsers object.

    Example
    -------
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_render_parser(parser.add_subparsers())
    >>> parser.parse_args(["render", "--out", "corpus"]).pitch_step
    1
    """
    parser = subparsers.add_parser(
        "render",
        help="render installed sound sources into an NSynth-format corpus",
        description="Renders the presets of sound sources (SoundFonts, Gravis patches, STK models, DX7 voices) into "
        "a corpus in NSynth's json/wav layout. Each melodic preset is one instrument, unless it is silent or a "
        "near-copy of an earlier one; notes are 4 s, 16 kHz mono 16-bit, the key held 3 s; splits are "
        "instrument-disjoint. An interrupted render is resumed by running the same command again. "
        "The defaults render every pitch at five velocities (many GB for all sources); the default corpus of "
        "the recipes is `--pitch-step 12 --stagger-pitches --velocities 50 100` of the default sources.",
    )
    parser.add_argument(
        "--source",
        "--soundfont",
        dest="sources",
        action="append",
        metavar="NAME_OR_PATH",
        help="a sound source: a catalogue name (see --list-sources), a .sf2/.sf3 SoundFont or a TiMidity++ .cfg; "
        "repeat for several (their order fixes the instrument numbers; a near-copy is dropped from the later "
        "source). Default: " + " ".join(DEFAULT_SOURCES),
    )
    parser.add_argument("--list-sources", action="store_true", help="print the catalogue of sources and exit")
    parser.add_argument("--out", metavar="DIR", help="corpus folder (required unless --list-sources)")
    parser.add_argument(
        "--programs",
        nargs="+",
        type=int,
        metavar="P",
        help="only presets of these General MIDI programs (0-127); default: every program with an NSynth family",
    )
    parser.add_argument(
        "--pitch-step",
        type=int,
        default=1,
        metavar="N",
        help="semitones between rendered pitches, on a grid through MIDI 60 (default: %(default)s, every pitch)",
    )
    parser.add_argument(
        "--stagger-pitches",
        action="store_true",
        help="shift each instrument's pitch grid a fifth from the previous one's, so that a coarse "
        "--pitch-step still covers every pitch class across the corpus (the default corpus does)",
    )
    parser.add_argument(
        "--pitch-range",
        nargs=2,
        type=int,
        default=(LOWEST_PITCH, HIGHEST_PITCH),
        metavar=("LOWEST", "HIGHEST"),
        help=f"MIDI pitch range; notes silent for a preset are skipped (default: {LOWEST_PITCH} {HIGHEST_PITCH})",
    )
    parser.add_argument(
        "--velocities",
        nargs="+",
        type=int,
        default=NSYNTH_VELOCITIES,
        metavar="V",
        help="MIDI velocities (1-127) of every pitch (default: " + " ".join(map(str, NSYNTH_VELOCITIES)) + ")",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help="seed of the split draw (default: %(default)s)",
    )
    parser.add_argument(
        "--fractions",
        nargs=3,
        type=float,
        default=DEFAULT_FRACTIONS,
        metavar=("TRAIN", "VALID", "TEST"),
        help="fractions of each family's instruments per split (default: "
        + " ".join(map(str, DEFAULT_FRACTIONS))
        + ")",
    )
    parser.add_argument(
        "--leave-out",
        action="append",
        metavar="SOURCE",
        help="a source (catalogue name, file name or stem, or group) whose instruments all go to the "
        "test split (the others to train and valid); repeatable",
    )
    parser.add_argument(
        "--copy-threshold-db",
        type=non_negative_float,
        default=COPY_THRESHOLD_DB,
        metavar="DB",
        help="a preset whose spectral fingerprint lies within this distance of an earlier one is a copy and is "
        "left out (default: %(default)s)",
    )
    parser.add_argument(
        "--synthetic",
        action="append",
        default=None,
        metavar="SOUNDFONT_NAME",
        help="file name or stem of a SoundFont whose presets are all synthesized "
        f"(source 'synthetic'); repeatable. Default: {' '.join(SYNTHETIC_SOUNDFONTS)}",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="parallel processes (default: the CPU cores available)",
    )
    parser.add_argument(
        "--gain",
        type=positive_float,
        default=DEFAULT_GAIN,
        help="FluidSynth master gain (default: %(default)s)",
    )
    parser.set_defaults(func=_render_command)


def list_sources():
    """The catalogue as a table: name, whether installed, group, recorded or synthesized, licence, packages."""
    lines = [f"{'name':12} {'installed':9} {'group':12} {'kind':11} {'packages':28} licence"]
    for info in CATALOG.values():
        installed = "no" if missing(info) else "yes"
        kind = "recordings" if info.recorded else "synthesis"
        lines.append(f"{info.name:12} {installed:9} {info.group:12} {kind:11} {info.packages:28} {info.licence}")
    return "\n".join(lines)


def _render_command(args):
    if args.list_sources:
        print(list_sources())
        return
    if not args.out:
        raise SystemExit("render: --out DIR is required (or --list-sources)")
    try:
        render_corpus(
            args.sources or default_sources(),
            args.out,
            programs=args.programs,
            pitch_step=args.pitch_step,
            stagger_pitches=args.stagger_pitches,
            velocities=args.velocities,
            pitch_range=tuple(args.pitch_range),
            seed=args.seed,
            fractions=tuple(args.fractions),
            workers=args.workers,
            leave_out=args.leave_out,
            synthetic_soundfonts=args.synthetic or SYNTHETIC_SOUNDFONTS,
            gain=args.gain,
            copy_threshold_db=args.copy_threshold_db,
        )
    except KeyboardInterrupt:
        sys.stderr.write(f"\nrender: interrupted; run the same command again to resume into {args.out}\n")
        raise SystemExit(130) from None
