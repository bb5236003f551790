"""The ``render`` command: ``python -m timbre_lobes render --out DIR [options]``.

    python -m timbre_lobes render --out corpus --programs 0 40 --pitch-step 12 --velocities 100

renders the given SoundFonts (default: ``DEFAULT_SOUNDFONTS``) into an
NSynth-format corpus with :func:`timbre_lobes.render.runner.render_corpus`; an
interrupted render is resumed by running the same command again.
"""

from timbre_lobes.render.plan import (
    DEFAULT_FRACTIONS,
    DEFAULT_SEED,
    HIGHEST_PITCH,
    LOWEST_PITCH,
    SYNTHETIC_SOUNDFONTS,
)
from timbre_lobes.render.runner import DEFAULT_SOUNDFONTS, NSYNTH_VELOCITIES, default_soundfonts, render_corpus
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
        help="render SoundFont presets into an NSynth-format corpus",
        description="Renders SoundFont presets into a corpus in NSynth's json/wav layout. Each melodic preset is "
        "one instrument; notes are 4 s, 16 kHz mono 16-bit, the key held 3 s; splits are instrument-disjoint. An "
        "interrupted render is resumed by running the same command again.",
    )
    parser.add_argument(
        "--soundfont",
        action="append",
        metavar="PATH",
        help="a .sf2/.sf3 SoundFont to render; repeat for several (their order "
        "fixes the instrument numbers). Default: " + ", ".join(path for path, _ in DEFAULT_SOUNDFONTS),
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="corpus folder")
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
        metavar="SOUNDFONT_NAME",
        help="file name or stem of a SoundFont whose instruments all go to the "
        "test split (the others to train and valid); repeatable",
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
        type=int,
        default=None,
        help="parallel processes (default: the CPU cores available)",
    )
    parser.add_argument(
        "--gain",
        type=float,
        default=DEFAULT_GAIN,
        help="FluidSynth master gain (default: %(default)s)",
    )
    parser.set_defaults(func=_render_command)


def _render_command(args):
    render_corpus(
        args.soundfont or default_soundfonts(),
        args.out,
        programs=args.programs,
        pitch_step=args.pitch_step,
        velocities=args.velocities,
        pitch_range=tuple(args.pitch_range),
        seed=args.seed,
        fractions=tuple(args.fractions),
        workers=args.workers,
        leave_out_soundfonts=args.leave_out,
        synthetic_soundfonts=args.synthetic or SYNTHETIC_SOUNDFONTS,
        gain=args.gain,
    )
