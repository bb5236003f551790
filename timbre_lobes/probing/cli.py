"""The ``map`` command: an interactive HTML map of a folder of sounds, embedded by a model.

    python -m timbre_lobes map FOLDER --model M --out map.html

Every audio file the loader reads under ``FOLDER`` (searched recursively) is
embedded as the ``embed`` command embeds it, the embeddings are laid out in 2-D
by t-SNE, and :func:`timbre_lobes.probing.html_map.write_map` writes one
self-contained page: hover a point for the file's id and labels, click it to hear
it. The labels are the file's sub-folder, the model's predicted family and its
confidence, and, for an NSynth-format folder (``examples.json`` beside
``audio/``), the notes' own family, source, instrument, pitch and velocity.

This module imports nothing heavy at import time, so ``python -m timbre_lobes --help``
stays fast.
"""

import json
import os

COLOUR_CHOICES = ("auto", "family", "source", "instrument", "folder", "predicted_family", "pitch", "velocity")


def add_map_parser(subparsers):
    """Adds the ``map`` command to an ``argparse`` subparsers object.

    Example
    -------
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> _ = add_map_parser(parser.add_subparsers())
    >>> args = parser.parse_args(["map", "sounds/", "--out", "map.html"])
    >>> args.audio, args.colour_by
    ('auto', 'auto')
    """
    from timbre_lobes.serving.cli import add_model_folder_arguments

    parser = subparsers.add_parser(
        "map",
        help="interactive HTML map of a folder of sounds (hover: labels, click: play)",
        description="Embeds every sound of FOLDER, lays the embeddings out by t-SNE and writes one "
        "self-contained HTML page (no server, no network): hover a point for the file's id and labels, "
        "click it to play the sound.",
    )
    parser.add_argument("folder", metavar="FOLDER", help="folder of audio files (searched recursively)")
    add_model_folder_arguments(parser)
    parser.add_argument("--out", required=True, metavar="HTML", help="page written (e.g. map.html)")
    parser.add_argument(
        "--audio",
        choices=("auto", "embed", "link"),
        default="auto",
        help="embed the sounds in the page, or link them by paths relative to it "
        "(auto: embed when they add up to at most --max-embedded-mb)",
    )
    parser.add_argument("--max-embedded-mb", type=float, default=16.0, metavar="MB", help="limit of --audio auto")
    parser.add_argument(
        "--colour-by",
        "--color-by",
        dest="colour_by",
        choices=COLOUR_CHOICES,
        default="auto",
        help="label giving the colours (auto: the notes' family in an NSynth folder, else the sub-folder "
        "when there are several, else the predicted family)",
    )
    parser.add_argument("--batch-size", type=int, default=16, metavar="N", help="sounds embedded at once")
    parser.add_argument("--seed", type=int, default=0, help="seed of the t-SNE layout")
    parser.add_argument("--title", default=None, help="title of the page")
    parser.set_defaults(func=run_map)
    return parser


def nsynth_labels_of(folder):
    """``{note id: labels}`` from ``folder/examples.json`` (or the folder above ``audio/``), else ``{}``."""
    from timbre_lobes.data.nsynth import family_name, metadata_problem, source_name

    for candidate in (folder, os.path.dirname(os.path.normpath(folder))):
        path = os.path.join(candidate, "examples.json")
        if os.path.isfile(path):
            try:
                with open(path) as handle:
                    examples = json.load(handle)
            except (OSError, ValueError):
                return {}
            if not isinstance(examples, dict):
                return {}
            return {
                note_id: {
                    "family": family_name(meta),
                    "source": source_name(meta),
                    "instrument": meta["instrument_str"],
                    "pitch": int(meta["pitch"]),
                    "velocity": int(meta["velocity"]),
                }
                for note_id, meta in examples.items()
                if isinstance(meta, dict) and not metadata_problem(meta)
            }
    return {}


def map_labels(files, folder, predicted=None):
    """One label row per file: ``id`` (its path under ``folder``, no extension), ``folder``, NSynth's labels.

    Arguments
    ---------
    files : list of str
        Audio files under ``folder``.
    folder : str
        The folder searched.
    predicted : list of (str, float), optional
        The model's family and confidence for each file.

    Example
    -------
    >>> rows = map_labels(["/s/winds/flute a.wav", "/s/b.flac"], "/s", [("flute", 0.91), ("bass", 0.5)])
    >>> rows[0]
    {'id': 'winds/flute a', 'folder': 'winds', 'predicted_family': 'flute', 'confidence': '0.91'}
    >>> rows[1]["folder"]
    '.'
    """
    nsynth = nsynth_labels_of(folder)
    rows = []
    for i, path in enumerate(files):
        rel = os.path.relpath(path, folder).replace(os.sep, "/")
        stem = os.path.splitext(os.path.basename(path))[0]
        row = {"id": os.path.splitext(rel)[0], "folder": os.path.dirname(rel) or "."}
        row.update(nsynth.get(stem, {}))
        if predicted is not None:
            row["predicted_family"], row["confidence"] = predicted[i][0], f"{predicted[i][1]:.2f}"
        rows.append(row)
    return rows


def choose_colour(rows, requested="auto"):
    """The label the map is coloured by: ``requested``, or for ``auto`` the best one the rows have.

    Example
    -------
    >>> choose_colour([{"folder": "a"}, {"folder": "b", "predicted_family": "bass"}])
    'folder'
    """
    if requested != "auto":
        return requested
    if all("family" in row for row in rows):
        return "family"
    if len({row.get("folder") for row in rows}) > 1:
        return "folder"
    return "predicted_family" if all("predicted_family" in row for row in rows) else None


def run_map(args):
    """The ``map`` command: embeds the folder's sounds and writes the page."""
    import numpy as np

    from timbre_lobes.probing.html_map import write_map
    from timbre_lobes.probing.plots import tsne_coordinates
    from timbre_lobes.serving.cli import default_model_folder, find_audio_files, load_model, report_failures

    if not os.path.isdir(args.folder):
        raise FileNotFoundError(f"no folder {args.folder}")
    files, _ = find_audio_files([args.folder])
    if not files:
        raise ValueError(f"no audio files in {args.folder}")
    model = load_model(args)
    failures, kept, embeddings = [], [], []
    for result in model.iter_embed_files(files, batch_size=args.batch_size):
        if result.error is not None:
            failures.append(result.error)
            continue
        kept.append(result.path)
        embeddings.append(result.embedding)
    if not kept:
        report_failures(failures, len(files))
        raise ValueError(f"no sound of {args.folder} could be embedded")
    embeddings = np.stack(embeddings)
    predicted = None
    if getattr(model, "family_labels", None):
        probs = model.family_probabilities(embeddings)
        predicted = [(model.family_labels[int(p.argmax())], float(p.max())) for p in probs]
    rows = map_labels(kept, args.folder, predicted)
    colour_by = choose_colour(rows, args.colour_by)
    marker_by = "source" if all("source" in row for row in rows) else None
    written = write_map(
        args.out,
        tsne_coordinates(embeddings, seed=args.seed),
        rows,
        kept,
        colour_by=colour_by,
        marker_by=marker_by,
        audio=args.audio,
        max_embedded_mb=args.max_embedded_mb,
        title=args.title or f"Timbre map of {os.path.basename(os.path.normpath(args.folder))}",
        caption=f"{len(kept)} sounds of {args.folder}, embedded by the model {args.model or default_model_folder()}, "
        f"laid out by t-SNE; colour: {colour_by or 'none'}.",
    )
    how = "embedded in the page" if written["audio"] == "embed" else "linked by paths relative to the page"
    print(f"Wrote a map of {written['n_points']} sounds to {args.out} (audio {how})")
    status = report_failures(failures, len(files))
    if status:
        raise SystemExit(status)
