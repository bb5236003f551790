"""Embedding extraction: an exported model + an NSynth-format folder -> ``embeddings.npy`` + ``labels.csv``.

    python -m timbre_lobes extract ../shared/data/nsynth-test-dev --model results/demo/model --out emb/

or from Python::

    from timbre_lobes.serving.extract import extract_embeddings
    extraction = extract_embeddings("results/demo/model", "../shared/data/nsynth-test-dev", "emb/")
    extraction.embeddings      # np.ndarray [n, emb], float32
    extraction.labels          # [n] dicts: id, path, instrument, family, source, pitch, velocity, qualities

Every usable note is embedded whole, as ``train.py`` evaluates its test split (no
silence trimming, no crop). The output folder gets:

* ``embeddings.npy``: [n, emb] float32, row i = ``labels.csv``'s row i;
* ``labels.csv``: ``id, path, instrument, family, source, pitch, velocity,
  qualities, duration`` (qualities as NSynth's 10 0/1 flags);
* ``skipped.txt``: notes left out (bad metadata, unreadable audio ...) and why;
* ``extraction.json``: the model id, the input's signature and the settings.
  A second call with the same model, input and settings reads the files back
  instead of embedding again.

Files are written atomically; ``extraction.json`` last, so a run cut short is
simply redone.
"""

import collections
import csv
import json
import os
import sys

import numpy as np

from timbre_lobes.atomic import atomic_open, write_json
from timbre_lobes.data.nsynth_labels import SAMPLE_RATE
from timbre_lobes.serving.cli import add_model_folder_arguments

#: Columns of ``labels.csv``.
LABEL_FIELDS = ["id", "path", "instrument", "family", "source", "pitch", "velocity", "qualities", "duration"]
EMBEDDINGS_FILE = "embeddings.npy"
LABELS_FILE = "labels.csv"
SKIPPED_FILE = "skipped.txt"
INFO_FILE = "extraction.json"
#: Bumped whenever the files' meaning changes, so older caches are redone.
EXTRACTION_VERSION = 1

#: What :func:`extract_embeddings` returns.
Extraction = collections.namedtuple("Extraction", ["embeddings", "labels", "skipped", "folder", "reused"])


def extract_embeddings(model, data_folder, output_folder, batch_size=32, device="cpu", progress=None, reuse=True):
    """Embeds every usable note of an NSynth-format folder with an exported model, cached on disk.

    Arguments
    ---------
    model : str or timbre_lobes.serving.inference.TimbreEncoder
        An export folder (``train.py`` writes ``<output_folder>/model``) or a loaded model.
    data_folder : str
        ``examples.json`` + ``audio/`` (one split), or a corpus root, whose ``nsynth-test/`` is read.
    output_folder : str
        Where the files go (created).
    batch_size : int
        Notes embedded at once (the embeddings do not depend on it: NSynth notes have one length).
    device : str
        Torch device, when ``model`` is a folder.
    progress : bool, optional
        Show a progress bar; default: when standard error is a terminal.
    reuse : bool
        Read back an earlier extraction with the same model, input and settings.

    Returns
    -------
    Extraction
        ``embeddings`` [n, emb] float32, ``labels`` (n dicts with :data:`LABEL_FIELDS`),
        ``skipped`` ([(note id, path, reason)]), ``folder``, ``reused`` (True if read back).

    Raises
    ------
    DataFolderError
        The folder holds no ``examples.json``, or no note of it is usable.
    FileNotFoundError
        The model folder is missing or incomplete.
    """
    # Heavy imports (torch, speechbrain) only here: the command line's --help stays fast.
    from timbre_lobes.data.nsynth import DataFolderError, read_nsynth_folder, resolve_note_folder, write_report
    from timbre_lobes.serving.inference import TimbreEncoder

    note_folder = resolve_note_folder(data_folder)
    if isinstance(model, (str, os.PathLike)):
        model = TimbreEncoder.from_hparams(source=os.fspath(model), run_opts={"device": device})
    meta_path = os.path.join(note_folder, "examples.json")
    stat = os.stat(meta_path)
    settings = {
        "version": EXTRACTION_VERSION,
        "model_id": model.model_id,
        "data_folder": os.path.abspath(note_folder),
        "examples_json": [stat.st_size, int(stat.st_mtime)],
        "audio_files": audio_signature(os.path.join(note_folder, "audio")),
        "audio": "whole notes" if model.eval_seconds is None else f"first {model.eval_seconds} s of each note",
    }
    if reuse:
        cached = _read_cache(output_folder, settings)
        if cached is not None:
            return cached

    problems = []
    rows = read_nsynth_folder(note_folder, note_folder, SAMPLE_RATE, problems)
    if not rows and not problems:  # nothing to report: nothing is written
        raise DataFolderError(f"{meta_path} lists no notes: give a folder whose examples.json lists its notes")
    if not rows:  # the report (the folder's only file) says why each note was skipped
        write_report(problems, os.path.join(output_folder, SKIPPED_FILE))
        raise DataFolderError(f"no usable notes in {note_folder}; see {os.path.join(output_folder, SKIPPED_FILE)}")
    by_path = {os.path.join(note_folder, "audio", f"{row['ID']}.wav"): row for row in rows}
    labels, embeddings = [], []
    saved = (model.max_seconds, model.trim_db, model.long_audio)
    # As train.py's evaluation reads notes: no leading-silence trim, the first eval_seconds (None: whole notes).
    model.max_seconds, model.trim_db, model.long_audio = model.eval_seconds, None, "excerpt"
    try:
        from tqdm import tqdm

        show = sys.stderr.isatty() if progress is None else progress
        results = model.iter_embed_files(list(by_path), batch_size=batch_size)
        for result in tqdm(results, total=len(by_path), desc="embedding", unit="note", disable=not show):
            row = by_path[result.path]
            if result.error is not None:
                problems.append((row["ID"], result.path, str(result.error)))
                continue
            embeddings.append(result.embedding.astype(np.float32))
            labels.append(
                {
                    "id": row["ID"],
                    "path": result.path,
                    **{k: row[k] for k in ("instrument", "family", "source", "pitch", "velocity", "qualities")},
                    "duration": row["duration"],
                }
            )
    finally:
        model.max_seconds, model.trim_db, model.long_audio = saved
    if not embeddings:
        write_report(problems, os.path.join(output_folder, SKIPPED_FILE))
        raise DataFolderError(
            f"no note of {note_folder} could be embedded; see {os.path.join(output_folder, SKIPPED_FILE)}"
        )
    matrix = np.stack(embeddings)
    _write(output_folder, matrix, labels, problems, settings)
    return Extraction(matrix, labels, problems, os.path.abspath(output_folder), False)


def audio_signature(folder):
    """A digest of every file's name, size and modification time in ``folder``: changes when any audio does.

    Costs one ``stat`` a file (no audio is read), so a cached extraction is
    trusted only while the notes it embedded are the ones on disk.
    """
    import hashlib

    sha = hashlib.sha256()
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return None
    for entry in entries:
        try:
            info = entry.stat()
        except OSError:
            continue
        sha.update(f"{entry.name}\0{info.st_size}\0{info.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return sha.hexdigest()[:16]


def read_labels(path):
    """``labels.csv`` as a list of dicts (pitch and velocity as ints, duration as float)."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["pitch"], row["velocity"] = int(row["pitch"]), int(row["velocity"])
        row["duration"] = float(row["duration"])
    return rows


def _write(folder, matrix, labels, problems, settings):
    from timbre_lobes.data.nsynth import write_report

    info_path = os.path.join(folder, INFO_FILE)
    if os.path.exists(info_path):  # the files are about to change: no reader may trust them meanwhile
        os.remove(info_path)
    with atomic_open(os.path.join(folder, EMBEDDINGS_FILE), "wb") as handle:
        np.save(handle, matrix)
    with atomic_open(os.path.join(folder, LABELS_FILE), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LABEL_FIELDS)
        writer.writeheader()
        writer.writerows(labels)
    write_report(problems, os.path.join(folder, SKIPPED_FILE))
    write_json(info_path, {**settings, "n_notes": len(labels), "emb_dim": int(matrix.shape[1])})


def _read_cache(folder, settings):
    """The earlier extraction in ``folder`` if it was made with ``settings``, else None."""
    try:
        with open(os.path.join(folder, INFO_FILE)) as handle:
            info = json.load(handle)
        if {k: info.get(k) for k in settings} != settings:
            return None
        matrix = np.load(os.path.join(folder, EMBEDDINGS_FILE))
        labels = read_labels(os.path.join(folder, LABELS_FILE))
        skipped = _read_skipped(os.path.join(folder, SKIPPED_FILE))
    except (OSError, ValueError, KeyError):
        return None
    if matrix.shape[0] != len(labels) or len(labels) != info.get("n_notes"):
        return None
    return Extraction(matrix, labels, skipped, os.path.abspath(folder), True)


def _read_skipped(path):
    with open(path, encoding="utf-8") as handle:
        return [tuple(line.rstrip("\n").split("\t", 2)) for line in handle if not line.startswith("#")]


def add_extract_parser(subparsers):
    """Adds the ``extract`` command to an ``argparse`` subparsers object.

    Example
    -------
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> _ = add_extract_parser(parser.add_subparsers())
    >>> parser.parse_args(["extract", "notes/", "--out", "emb"]).batch_size
    32
    """
    parser = subparsers.add_parser(
        "extract",
        help="embed an NSynth-format folder: embeddings.npy + labels.csv (cached)",
        description=__doc__.split("\n")[0],
    )
    parser.add_argument("data_folder", help="examples.json + audio/ (or a corpus root: its nsynth-test/)")
    add_model_folder_arguments(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--batch-size", type=int, default=32, help="notes embedded at once (default 32)")
    parser.add_argument("--no-reuse", action="store_true", help="embed again even if --out holds this result")
    parser.set_defaults(func=run_extract)
    return parser


def run_extract(args):
    """The ``extract`` command: writes the files and says what it wrote."""
    from timbre_lobes.serving.cli import load_model

    extraction = extract_embeddings(
        load_model(args), args.data_folder, args.out, batch_size=args.batch_size, reuse=not args.no_reuse
    )
    verb = "Read back" if extraction.reused else "Wrote"
    print(
        f"{verb} {extraction.embeddings.shape[0]} embeddings of size {extraction.embeddings.shape[1]} "
        f"({len(extraction.skipped)} notes skipped) in {extraction.folder}"
    )
    if extraction.skipped:  # as the other batch commands: skipped files make the exit status 1
        report = os.path.join(extraction.folder, SKIPPED_FILE)
        print(f"{len(extraction.skipped)} note(s) skipped, with the reasons in {report}", file=sys.stderr)
        sys.exit(1)
