"""Command-line use of an exported model: ``embed``, ``verify``, ``classify``, ``similar``.

    python -m timbre_lobes embed sounds/ --out embeddings/
    python -m timbre_lobes verify a.wav b.flac
    python -m timbre_lobes classify sounds/ [--json]
    python -m timbre_lobes similar query.wav --library sounds/ --top 5

Each subcommand maps onto a method of :class:`timbre_lobes.serving.inference.TimbreEncoder`
(``embed_files``, ``verify_files``, ``classify_family_files``, nearest neighbours
of ``embed_files``). ``--model`` defaults to the model ``make demo`` exports.
Folders are searched recursively for audio files (hidden folders skipped).
Unusable files are skipped and listed at the end, the others still processed,
and the exit status is then 1.
"""

import csv
import hashlib
import json
import os
import sys

import numpy as np

from timbre_lobes.argtypes import positive_float, positive_int  # noqa: F401  (re-exported)
from timbre_lobes.atomic import atomic_open

#: Where ``make demo`` (DEMO_OUT = results/demo) exports its model.
DEFAULT_MODEL = os.path.join("results", "demo", "model")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INDEX_VERSION = 1


# ---------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------


def default_model_folder():
    """``results/demo/model`` under the current folder, else under the repository; None if neither."""
    for candidate in (DEFAULT_MODEL, os.path.join(REPO_ROOT, DEFAULT_MODEL)):
        if os.path.isfile(os.path.join(candidate, "hyperparams.yaml")):
            return candidate
    return None


def check_device(name):
    """``name`` if this machine has that torch device, else a ValueError that says what it has.

    Args:
        name (str): a torch device string (``cpu``, ``cuda``, ``cuda:1``, ``mps``).

    Returns:
        str: ``name`` unchanged.

    Raises:
        ValueError: the string is no torch device, the machine has no such accelerator
            (e.g. ``--device cuda`` with a CPU-only build of torch or no visible GPU), or the
            device is of a kind the models are not run on (``xpu``, ``meta``, ...).
    """
    import torch

    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"--device {name}: not a torch device ({error})") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            built = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA"
            raise ValueError(
                f"--device {name}: this machine has no CUDA device (torch {torch.__version__}, built with "
                f"{built}); use --device cpu"
            )
        if device.index is not None and device.index >= count:
            raise ValueError(f"--device {name}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {name}: the MPS backend is not available here; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {name}: timbre-lobes runs on cpu, cuda or mps, not {device.type}")
    return name


def load_model(args):
    """The TimbreEncoder named by ``--model`` (or the demo's), with a clear message if absent."""
    folder = args.model or default_model_folder()
    if folder is None:
        raise FileNotFoundError(f"no trained model at {DEFAULT_MODEL}: run `make demo` or pass --model")
    if not os.path.isfile(os.path.join(folder, "hyperparams.yaml")):
        raise FileNotFoundError(f"no trained model at {folder}: run `make demo` or pass --model")
    from timbre_lobes.serving.inference import TimbreEncoder  # torch and speechbrain: slow imports

    run_opts = {"device": check_device(args.device or "cpu")}
    model = TimbreEncoder.from_hparams(source=folder, run_opts=run_opts)
    if getattr(args, "max_seconds", None) is not None:
        model.max_seconds = args.max_seconds
    if getattr(args, "long_audio", None) is not None:
        model.long_audio = args.long_audio
    return model


def add_model_folder_arguments(parser):
    """``--model DIR`` (alias ``--source``) and ``--device``, as every verb that loads a model takes them."""
    parser.add_argument(
        "--model",
        "--source",
        dest="model",
        default=None,
        metavar="DIR",
        help=f"exported model folder (default: {DEFAULT_MODEL}, made by `make demo`)",
    )
    parser.add_argument("--device", default=None, help="torch device (default: cpu)")


def _add_model_arguments(parser, batch=True):
    add_model_folder_arguments(parser)
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        metavar="S",
        help="length of the excerpt (or of each window) embedded (default: the model's, 4 s)",
    )
    parser.add_argument(
        "--long-audio",
        choices=("excerpt", "average"),
        default=None,
        help="long sounds: embed the first --max-seconds (excerpt, default), or "
        "average the embeddings of windows over the whole sound (its first 10 minutes)",
    )
    if batch:
        parser.add_argument(
            "--batch-size", type=positive_int, default=16, metavar="N", help="sounds embedded at once (default: 16)"
        )


def find_audio_files(inputs):
    """Audio files named or found (recursively, hidden folders skipped) in ``inputs``, sorted per folder.

    Returns ``(files, missing)``: files as given or joined to their folder; paths that do not exist.
    """
    from timbre_lobes.data.audio import is_audio_name

    files, missing = [], []
    for item in inputs:
        if os.path.isdir(item):
            found = []
            for root, dirs, names in os.walk(item):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found += [os.path.join(root, n) for n in names if is_audio_name(n) and not n.startswith(".")]
            files += sorted(found)
        elif os.path.exists(item):
            files.append(item)  # named explicitly: tried whatever its extension
        else:
            missing.append(item)
    return files, missing


def _progress(total, desc):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="file", file=sys.stderr, disable=None, leave=False)


def _embedded(model, files, batch_size, desc, failures):
    """Embeds ``files`` with a progress bar; yields the good results, appends the errors to ``failures``.

    Files shorter than the model's ``min_seconds`` are used (padded with silence) and named
    in one warning on stderr once all are embedded (:func:`warn_short`).
    """
    bar = _progress(len(files), desc)
    short = []
    for result in model.iter_embed_files(files, batch_size):
        bar.update(1)
        if result.error is not None:
            failures.append(result.error)
            continue
        if result.duration is not None and result.duration < model.min_seconds:
            short.append(result)
        yield result
    bar.close()
    warn_short(short, model.min_seconds)


def _embed_each(model, paths):
    """[n, emb] embeddings of the files a command names (verify's two, similar's query).

    As ``TimbreEncoder.embed_files`` (the first unusable file raises its ``AudioError``), with
    the warning of :func:`warn_short` for files shorter than the model's ``min_seconds``.
    """
    results = list(model.iter_embed_files(paths))
    for result in results:
        if result.error is not None:
            raise result.error
    warn_short([r for r in results if r.duration < model.min_seconds], model.min_seconds)
    return np.stack([r.embedding for r in results])


#: Files named in full by :func:`warn_short`; more are counted.
SHORT_LISTED = 5


def warn_short(results, min_seconds):
    """One warning on stderr for files shorter than ``min_seconds``: padded with silence, judged unreliably.

    Measured with the benchmark's transMel model on 40 real NSynth notes (README, "Short sounds"):
    a note's first 0.25 s is judged the same instrument as the whole note 15 % of the time, its
    first 1 s 97 %.
    """
    if not results:
        return
    named = ", ".join(f"{r.path} ({r.duration:.2f} s)" for r in results[:SHORT_LISTED])
    more = f" and {len(results) - SHORT_LISTED} more" if len(results) > SHORT_LISTED else ""
    print(
        f"warning: {len(results)} file(s) shorter than the model's min_seconds ({min_seconds:g} s) were padded "
        f"with silence; their embeddings and verdicts are unreliable: {named}{more}",
        file=sys.stderr,
    )


def report_failures(failures, total):
    """Lists the skipped files on stderr; returns the exit status (1 if any)."""
    if not failures:
        return 0
    print(f"{len(failures)} of {total} file(s) could not be used and were skipped:", file=sys.stderr)
    for error in failures:
        print(f"  {error}", file=sys.stderr)
    return 1


def _missing_errors(missing):
    from timbre_lobes.data.audio import AudioError

    return [AudioError(path, "missing file") for path in missing]


def _exit(status):
    if status:
        sys.exit(status)


# ---------------------------------------------------------------------------
# embed
# ---------------------------------------------------------------------------


def add_embed_parser(subparsers):
    """``embed FILES_OR_DIRS --out DIR``: one ``.npy`` per sound and an ``index.csv``."""
    parser = subparsers.add_parser(
        "embed",
        help="embed sounds: one .npy per file and an index.csv",
        description="Embeds audio files (folders searched recursively). Writes <out>/<path>.npy per "
        "file (path relative to the inputs' common folder, extension kept) and "
        "<out>/index.csv: file, embedding, duration, family, family_confidence.",
    )
    parser.add_argument("inputs", nargs="+", metavar="FILES_OR_DIRS")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    _add_model_arguments(parser)
    parser.set_defaults(func=run_embed)


def output_names(inputs):
    """Audio files of ``inputs`` with the relative name of each one's ``.npy``, and the missing inputs.

    One folder given: names relative to it. Otherwise each folder's files go
    under the folder's own name and each named file under its file name. The
    audio extension is kept (``a.wav`` -> ``a.wav.npy``), so ``a.wav`` and
    ``a.flac`` do not collide; any other clash gets a ``~N`` suffix.

    Example
    -------
    >>> output_names(["/nonexistent.wav"])
    ([], ['/nonexistent.wav'])
    """
    pairs, missing = [], []
    single_folder = len(inputs) == 1 and os.path.isdir(inputs[0])
    for item in inputs:
        files, absent = find_audio_files([item])
        missing += absent
        if os.path.isdir(item):
            prefix = "" if single_folder else os.path.basename(os.path.abspath(item))
            pairs += [(f, os.path.join(prefix, os.path.relpath(f, item))) for f in files]
        else:
            pairs += [(f, os.path.basename(f)) for f in files]
    used, named = set(), []
    for path, rel in pairs:
        name, n = rel, 1
        while name in used:
            n += 1
            name = f"{rel}~{n}"
        used.add(name)
        named.append((path, name + ".npy"))
    return named, missing


def run_embed(args):
    named, missing = output_names(args.inputs)
    files = [path for path, _ in named]
    npy_name = dict(named)
    failures = _missing_errors(missing)
    if not files and not failures:
        raise ValueError(f"no audio files in {' '.join(args.inputs)}")
    model = load_model(args)
    rows, embeddings = [], []
    for result in _embedded(model, files, args.batch_size, "embed", failures):
        npy = os.path.join(args.out, npy_name[result.path])
        with atomic_open(npy, "wb") as handle:
            np.save(handle, result.embedding.astype(np.float32))
        rows.append([result.path, npy_name[result.path], f"{result.duration:.3f}"])
        embeddings.append(result.embedding)
    if rows:
        probs = model.family_probabilities(np.stack(embeddings))
        with atomic_open(os.path.join(args.out, "index.csv"), "w", newline="", errors="surrogateescape") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file", "embedding", "duration", "family", "family_confidence"])
            for row, p in zip(rows, probs):
                writer.writerow(row + [model.family_labels[int(p.argmax())], f"{p.max():.4f}"])
    if rows:
        print(f"Embedded {len(rows)} file(s) into {args.out}")
    else:
        print(f"Nothing embedded (every input failed, below); {args.out} was not written")
    _exit(report_failures(failures, len(files) + len(missing)))


# ---------------------------------------------------------------------------
# verify
# ---------------------------------------------------------------------------


def add_verify_parser(subparsers):
    """``verify A B``: cosine score and same/different instrument."""
    parser = subparsers.add_parser(
        "verify",
        help="are two sounds the same instrument?",
        description="Scores two sounds (cosine of their embeddings) and decides same/different "
        "instrument with the model's verification threshold.",
    )
    parser.add_argument("a", metavar="A")
    parser.add_argument("b", metavar="B")
    parser.add_argument(
        "--threshold", type=float, default=None, help="decision threshold (default: the model's, see its README)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    _add_model_arguments(parser, batch=False)
    parser.set_defaults(func=run_verify)


def run_verify(args):
    model = load_model(args)
    threshold = model.threshold if args.threshold is None else args.threshold
    a, b = _embed_each(model, [args.a, args.b])  # as model.verify_files, with the short-file warning
    score = float(model.similarity(a, b))
    same = score >= threshold
    if args.json:
        print(json.dumps({"a": args.a, "b": args.b, "score": score, "threshold": threshold, "same": same}))
    else:
        verdict = "same instrument" if same else "different instruments"
        print(f"score {score:.4f} (threshold {threshold:.4f}): {verdict}")


# ---------------------------------------------------------------------------
# classify
# ---------------------------------------------------------------------------


def add_classify_parser(subparsers):
    """``classify FILES [--json]``: instrument family and its probability per file."""
    parser = subparsers.add_parser(
        "classify",
        help="instrument family of each sound",
        description="Predicts each sound's instrument family (one of the model's families) with its probability.",
    )
    parser.add_argument("inputs", nargs="+", metavar="FILES_OR_DIRS")
    parser.add_argument("--json", action="store_true", help="print JSON: file, family, confidence, all probabilities")
    parser.add_argument(
        "--instrument",
        action="store_true",
        help="also give the closest training instrument, with its probability among the "
        "training instruments (from the instrument head)",
    )
    _add_model_arguments(parser)
    parser.set_defaults(func=run_classify)


def run_classify(args):
    files, missing = find_audio_files(args.inputs)
    failures = _missing_errors(missing)
    if not files and not failures:
        raise ValueError(f"no audio files in {' '.join(args.inputs)}")
    model = load_model(args)
    kept, embeddings = [], []
    for result in _embedded(model, files, args.batch_size, "classify", failures):
        kept.append(result.path)
        embeddings.append(result.embedding)
    records = []
    if kept:
        embeddings = np.stack(embeddings)
        probs = model.family_probabilities(embeddings)
        instrument_probs = model.instrument_probabilities(embeddings) if args.instrument else None
        for i, (path, p) in enumerate(zip(kept, probs)):
            record = {"file": path, "family": model.family_labels[int(p.argmax())], "confidence": float(p.max())}
            if instrument_probs is not None:
                best = int(instrument_probs[i].argmax())
                record["closest_instrument"] = model.instrument_labels[best]
                record["instrument_probability"] = float(instrument_probs[i, best])
            record["probabilities"] = {f: float(v) for f, v in zip(model.family_labels, p)}
            records.append(record)
    if args.json:
        print(json.dumps(records, indent=2))
    elif records:
        width = max(len("file"), *(len(r["file"]) for r in records))
        head = f"{'file':<{width}}  {'family':<10}  confidence"
        print(head + ("  closest training instrument" if args.instrument else ""))
        for r in records:
            line = f"{r['file']:<{width}}  {r['family']:<10}  {r['confidence']:10.3f}"
            if args.instrument:
                line += f"  {r['closest_instrument']} (p = {r['instrument_probability']:.3f})"
            print(line)
    _exit(report_failures(failures, len(files) + len(missing)))


# ---------------------------------------------------------------------------
# similar
# ---------------------------------------------------------------------------


def add_similar_parser(subparsers):
    """``similar QUERY --library DIR --top K``: nearest sounds of a library."""
    parser = subparsers.add_parser(
        "similar",
        help="the sounds of a library most similar to a query",
        description="Ranks a library's sounds by cosine similarity to the query. The library's "
        "embeddings are cached (by path, modification time and size, per model) and "
        "only new or changed files are embedded again.",
    )
    parser.add_argument("query", metavar="QUERY")
    parser.add_argument("--library", required=True, metavar="DIR", help="folder of sounds (recursive)")
    parser.add_argument("--top", type=positive_int, default=5, metavar="K", help="how many (default: 5)")
    parser.add_argument(
        "--cache",
        default=None,
        metavar="DIR",
        help="index folder (default: <library>/.timbre-lobes if writable, else ~/.cache/timbre-lobes/...)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    _add_model_arguments(parser)
    parser.set_defaults(func=run_similar)


def default_cache_folder(library):
    """``<library>/.timbre-lobes`` if the library is writable, else a per-library user cache folder."""
    library = os.path.abspath(library)
    if os.access(library, os.W_OK):
        return os.path.join(library, ".timbre-lobes")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    digest = hashlib.sha1(library.encode()).hexdigest()[:16]
    return os.path.join(base, "timbre-lobes", "libraries", digest)


class EmbeddingIndex:
    """A library's embeddings, cached in one ``.npz`` and updated incrementally.

    Each file is keyed by its path relative to the library, its modification
    time (ns) and its size: unchanged files are reused, new and changed ones
    embedded, removed ones dropped. Unusable files are remembered too (not
    retried until they change). The cache file is per model (its ``model_id``)
    and is rebuilt if the audio settings differ.

    Arguments
    ---------
    library : str
        Folder of sounds.
    cache_folder : str, optional
        Where the index lives; see :func:`default_cache_folder`.
    """

    def __init__(self, library, cache_folder=None):
        if not os.path.isdir(library):
            raise FileNotFoundError(f"library folder not found: {library}")
        self.library = os.path.abspath(library)
        self.cache_folder = cache_folder or default_cache_folder(library)
        self.paths, self.embeddings, self.durations, self.failures = [], None, [], []

    def _settings(self, model):
        return {
            "version": INDEX_VERSION,
            "model_id": model.model_id,
            "sample_rate": model.sample_rate,
            "max_seconds": model.max_seconds,
            "min_seconds": model.min_seconds,
            "trim_db": model.trim_db,
            "long_audio": model.long_audio,
            "window_hop_seconds": model.window_hop_seconds,
            "max_windows": model.max_windows,
            "max_read_seconds": model.max_read_seconds,
        }

    def file_for(self, model):
        """The cache file of this model."""
        return os.path.join(self.cache_folder, f"index-{model.model_id or 'unnamed'}.npz")

    def scan(self):
        """{relative path: (mtime_ns, size)} of the library's audio files (the cache folder skipped)."""
        files, _ = find_audio_files([self.library])
        cache = os.path.abspath(self.cache_folder)
        found = {}
        for path in files:
            if os.path.abspath(path).startswith(cache + os.sep):
                continue
            st = os.stat(path)
            found[os.path.relpath(path, self.library)] = (st.st_mtime_ns, st.st_size)
        return found

    def _load(self, path, settings):
        """The cached entries {rel: (key, duration, embedding)} and failures {rel: (key, reason)}."""
        if not os.path.isfile(path):
            return {}, {}
        try:
            with np.load(path, allow_pickle=False) as data:
                if json.loads(str(data["meta"])) != settings:
                    return {}, {}
                entries = {
                    str(r): ((int(m), int(s)), float(d), e)
                    for r, m, s, d, e in zip(data["rel"], data["mtime"], data["size"], data["duration"], data["emb"])
                }
                failed = {
                    str(r): ((int(m), int(s)), str(why))
                    for r, m, s, why in zip(
                        data["fail_rel"], data["fail_mtime"], data["fail_size"], data["fail_reason"]
                    )
                }
            return entries, failed
        except Exception as err:  # a damaged cache is rebuilt, never trusted
            print(f"warning: ignoring unreadable index {path} ({err})", file=sys.stderr)
            return {}, {}

    def update(self, model, batch_size=16, progress=True):
        """Brings the index up to date with the library; returns counts of what changed.

        Returns
        -------
        dict
            ``reused``, ``added``, ``changed``, ``removed`` (numbers of files) and
            ``failed`` (AudioErrors of the unusable files).
        """
        from timbre_lobes.data.audio import AudioError

        settings = self._settings(model)
        path = self.file_for(model)
        entries, failed = self._load(path, settings)
        found = self.scan()
        stats = {"reused": 0, "added": 0, "changed": 0, "removed": 0}
        stats["removed"] = len([r for r in set(entries) | set(failed) if r not in found])
        keep, keep_failed, todo = {}, {}, []
        for rel, key in sorted(found.items()):
            if rel in entries and entries[rel][0] == key:
                keep[rel] = entries[rel]
                stats["reused"] += 1
            elif rel in failed and failed[rel][0] == key:
                keep_failed[rel] = failed[rel]
            else:
                todo.append(rel)
                stats["changed" if rel in entries or rel in failed else "added"] += 1
        if todo:
            bar = _progress(len(todo), "index") if progress else None
            absolute = [os.path.join(self.library, rel) for rel in todo]
            for rel, result in zip(todo, model.iter_embed_files(absolute, batch_size)):
                if bar is not None:
                    bar.update(1)
                if result.error is not None:
                    keep_failed[rel] = (found[rel], result.error.reason)
                else:
                    keep[rel] = (found[rel], result.duration, result.embedding)
            if bar is not None:
                bar.close()
        if todo or stats["removed"] or not os.path.isfile(path):
            self._save(path, settings, keep, keep_failed, model)
        self.paths = sorted(keep)
        emb_dim = model._emb_dim()
        self.embeddings = (
            np.stack([keep[r][2] for r in self.paths]).astype(np.float32)
            if self.paths
            else np.zeros((0, emb_dim), dtype=np.float32)
        )
        self.durations = [keep[r][1] for r in self.paths]
        self.failures = [AudioError(os.path.join(self.library, r), why) for r, (_, why) in sorted(keep_failed.items())]
        stats["failed"] = self.failures
        return stats

    def _save(self, path, settings, entries, failed, model):
        rels = sorted(entries)
        frels = sorted(failed)
        emb_dim = model._emb_dim()
        with atomic_open(path, "wb") as handle:
            np.savez(
                handle,
                meta=np.array(json.dumps(settings)),
                rel=np.array(rels, dtype=str),
                mtime=np.array([entries[r][0][0] for r in rels], dtype=np.int64),
                size=np.array([entries[r][0][1] for r in rels], dtype=np.int64),
                duration=np.array([entries[r][1] for r in rels], dtype=np.float64),
                emb=(
                    np.stack([entries[r][2] for r in rels]).astype(np.float32)
                    if rels
                    else np.zeros((0, emb_dim), dtype=np.float32)
                ),
                fail_rel=np.array(frels, dtype=str),
                fail_mtime=np.array([failed[r][0][0] for r in frels], dtype=np.int64),
                fail_size=np.array([failed[r][0][1] for r in frels], dtype=np.int64),
                fail_reason=np.array([failed[r][1] for r in frels], dtype=str),
            )

    def nearest(self, embedding, top_k=5, exclude=None):
        """``top_k`` ``(path, cosine)`` most similar to ``embedding``, best first; ``exclude``: a file to leave out."""
        if not self.paths:
            return []
        emb = self.embeddings / np.maximum(np.linalg.norm(self.embeddings, axis=1, keepdims=True), 1e-12)
        query = np.asarray(embedding, dtype=np.float32)
        scores = emb @ (query / max(float(np.linalg.norm(query)), 1e-12))
        skip = os.path.realpath(exclude) if exclude else None
        ranked = []
        for i in np.argsort(-scores, kind="stable"):
            full = os.path.join(self.library, self.paths[i])
            if skip is not None and os.path.realpath(full) == skip:
                continue
            ranked.append((full, float(scores[i])))
            if len(ranked) == top_k:
                break
        return ranked


def run_similar(args):
    index = EmbeddingIndex(args.library, args.cache)
    if not index.scan():  # as embed and classify: nothing to search is an error, and nothing is written
        raise ValueError(f"no audio files in {args.library}")
    model = load_model(args)
    query = _embed_each(model, [args.query])[0]
    stats = index.update(model, args.batch_size)
    ranked = index.nearest(query, args.top, exclude=args.query)
    if args.json:
        print(json.dumps({"query": args.query, "results": [{"file": f, "score": s} for f, s in ranked]}, indent=2))
    else:
        print(
            f"Library {args.library}: {len(index.paths)} sound(s) indexed "
            f"({stats['added']} new, {stats['changed']} changed, {stats['removed']} removed, "
            f"{stats['reused']} from the cache)"
        )
        for rank, (path, score) in enumerate(ranked, 1):
            print(f"{rank:3d}  {score:.4f}  {path}")
    _exit(report_failures(index.failures, len(index.paths) + len(index.failures)))
