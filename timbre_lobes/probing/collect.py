"""The feature sets probed: each model's embeddings (the extraction step) and the reference features.

:func:`collect_feature_sets` embeds a folder with every model through
:func:`timbre_lobes.serving.extract.extract_embeddings` (cached: a second run
reads the embeddings back), computes the reference features of the same notes
(:mod:`timbre_lobes.probing.reference`, cached too) and returns them on the same
rows: the notes every model could embed, in the first model's order.
"""

import json
import os
import re

import numpy as np

#: Sub-folders of the output folder holding the caches.
EMBEDDINGS_FOLDER = "embeddings"
REFERENCE_FOLDER = "reference"
#: Where the probing recipe's output folders go by default.
DEFAULT_ROOT = os.path.join("results", "probing")


def folder_name(data_folder):
    """A data folder's short name for its output folder: the last part of its path, ``nsynth-test`` kept.

    Example
    -------
    >>> folder_name("../shared/data/nsynth-test-dev/"), folder_name("corpora/rendered-default/nsynth-test")
    ('nsynth-test-dev', 'rendered-default-nsynth-test')
    """
    path = os.path.normpath(os.path.abspath(os.fspath(data_folder)))
    base = os.path.basename(path)
    if base.startswith("nsynth-") and base[len("nsynth-") :] in ("train", "valid", "test"):
        return f"{os.path.basename(os.path.dirname(path))}-{base}"
    return base


def default_output_folder(data_folder, root=DEFAULT_ROOT):
    """``results/probing/<folder_name(data_folder)>``, the probing recipe's default output folder.

    Example
    -------
    >>> default_output_folder("../shared/data/nsynth-test-dev").replace(os.sep, "/")
    'results/probing/nsynth-test-dev'
    """
    return os.path.join(root, folder_name(data_folder))


def model_name(folder):
    """A short name for an exported model: its ``system`` (``model_info.json``), else the folder's name.

    Example
    -------
    >>> model_name("/nonexistent/transMel/model")
    'transMel'
    """
    try:
        with open(os.path.join(folder, "model_info.json")) as handle:
            system = json.load(handle).get("system")
        if system and system != "unnamed":
            return str(system)
    except (OSError, ValueError):
        pass
    path = os.path.normpath(os.path.abspath(folder))
    base = os.path.basename(path)
    return os.path.basename(os.path.dirname(path)) if base == "model" else base


def name_models(specs):
    """``[("name", folder)]`` from ``--model`` values ``FOLDER`` or ``NAME=FOLDER``; names made unique.

    A value with ``=`` whose left part is not an existing path names its model.
    Models of the same default name get ``-2``, ``-3`` ... in order.

    Raises
    ------
    ValueError
        No model given, or two models given the same explicit name.

    Example
    -------
    >>> name_models(["a=/x/m1", "/nonexistent/transMel/model", "/elsewhere/transMel/model"])
    [('a', '/x/m1'), ('transMel', '/nonexistent/transMel/model'), ('transMel-2', '/elsewhere/transMel/model')]
    """
    if not specs:
        raise ValueError("no model to probe: pass --model FOLDER (an exported model, e.g. results/demo/model)")
    named, used = [], set()
    for spec in specs:
        spec = os.fspath(spec)
        name, sep, folder = spec.partition("=")
        if sep and name and not os.path.exists(name) and os.sep not in name:
            if name in used:
                raise ValueError(f"two models are named {name!r}")
            named.append((name, folder))
            used.add(name)
            continue
        base, n = model_name(spec), 1
        name = base
        while name in used:
            n += 1
            name = f"{base}-{n}"
        named.append((name, spec))
        used.add(name)
    return named


def _safe(name):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def collect_feature_sets(models, data_folder, output_folder, reference=None, batch_size=32, device="cpu", log=print):
    """Embeddings of every model and reference features of the same notes, row-aligned.

    Arguments
    ---------
    models : list of (str, str)
        ``(name, export folder)`` pairs (:func:`name_models`).
    data_folder : str
        NSynth-format folder (``examples.json`` + ``audio/``) or a corpus root (its test split).
    output_folder : str
        Caches go into ``<output_folder>/embeddings/<name>/`` and ``<output_folder>/reference/<name>/``.
    reference : dict, optional
        name -> feature function (:func:`timbre_lobes.probing.reference.log_mel_statistics` ...).
    batch_size : int
        Notes embedded at once.
    device : str
        Torch device of the models.
    log : callable or None
        Called with one line per feature set.

    Returns
    -------
    features : dict
        name -> ``[n, dim]`` float32, models first, then the references.
    labels : list of dict
        ``[n]`` label rows (``labels.csv``'s fields: id, path, instrument, family, source, pitch, velocity,
        qualities, duration).
    info : dict
        name -> what the set is: ``kind`` (``embedding`` | ``reference``), ``dim``, and the model's
        folder, ``model_id`` and whether its embeddings were read back from the cache (``reused``),
        or the reference function and its arguments.

    Raises
    ------
    ValueError
        No note is embedded by every model.
    """
    from timbre_lobes.probing.reference import describe, reference_features
    from timbre_lobes.serving.extract import extract_embeddings

    extractions, info = {}, {}
    for name, folder in models:
        out = os.path.join(output_folder, EMBEDDINGS_FOLDER, _safe(name))
        # An absolute data folder: the paths kept in labels.csv stay valid from any working folder.
        extraction = extract_embeddings(folder, os.path.abspath(data_folder), out, batch_size=batch_size, device=device)
        extractions[name] = extraction
        with open(os.path.join(out, "extraction.json")) as handle:
            model_id = json.load(handle).get("model_id")
        info[name] = {
            "kind": "embedding",
            "model": os.path.abspath(folder),
            "model_id": model_id,
            "dim": int(extraction.embeddings.shape[1]),
            "reused": bool(extraction.reused),
            "n_skipped": len(extraction.skipped),
        }
        if log is not None:
            verb = "read back from" if extraction.reused else "written to"
            log(f"{name}: {len(extraction.labels)} embeddings of size {info[name]['dim']} {verb} {out}")
    first = next(iter(extractions.values()))
    common = set.intersection(*({row["id"] for row in e.labels} for e in extractions.values()))
    keep = [i for i, row in enumerate(first.labels) if row["id"] in common]
    if not keep:
        raise ValueError(f"no note of {data_folder} was embedded by every model")
    labels = [first.labels[i] for i in keep]
    features = {}
    for name, extraction in extractions.items():
        row_of = {row["id"]: i for i, row in enumerate(extraction.labels)}
        features[name] = extraction.embeddings[[row_of[row["id"]] for row in labels]].astype(np.float32)
    paths = [row["path"] for row in labels]
    for name, function in (reference or {}).items():
        if name in features:
            raise ValueError(f"reference feature {name!r} has the name of a model")
        out = os.path.join(output_folder, REFERENCE_FOLDER, _safe(name))
        features[name] = reference_features(paths, function, cache_folder=out)
        info[name] = {"kind": "reference", "dim": int(features[name].shape[1]), **describe(function)}
        if log is not None:
            log(f"{name}: reference features of size {info[name]['dim']} in {out}")
    return features, labels, info
