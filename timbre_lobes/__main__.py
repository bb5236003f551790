"""The command line: ``python -m timbre_lobes COMMAND [options]``.

Each command lives in its own module, which provides an
``add_<command>_parser(subparsers)`` function that adds the command's
sub-parser and sets its ``func`` default, the function called with the parsed
arguments. To add a command, append its function to ``COMMANDS``.
"""

import argparse
import sys

from timbre_lobes.polyphonic.cli import add_detect_parser
from timbre_lobes.probing.cli import add_map_parser
from timbre_lobes.render.cli import add_render_parser
from timbre_lobes.serving.cli import add_classify_parser, add_embed_parser, add_similar_parser, add_verify_parser
from timbre_lobes.serving.extract import add_extract_parser

COMMANDS = [
    add_render_parser,
    add_embed_parser,
    add_verify_parser,
    add_classify_parser,
    add_similar_parser,
    add_extract_parser,
    add_map_parser,
    add_detect_parser,
]


def build_parser():
    """Returns the parser of all commands.

    Example
    -------
    >>> build_parser().parse_args(["render", "--out", "corpus"]).out
    'corpus'
    """
    parser = argparse.ArgumentParser(
        prog="python -m timbre_lobes",
        description="timbre-lobes: musical-instrument timbre embeddings.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_parser in COMMANDS:
        add_parser(subparsers)
    return parser


def main(argv=None):
    """Parses ``argv`` (default: ``sys.argv``) and runs the chosen command.

    Missing files and invalid options end the program with their message.
    """
    # File names that are not valid UTF-8 reach Python as surrogates: print them escaped, never crash.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (FileNotFoundError, NotADirectoryError, ImportError, ValueError) as error:
        parser.exit(1, f"{parser.prog} {args.command}: error: {error}\n")


if __name__ == "__main__":
    main()
