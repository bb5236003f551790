"""Evaluating a model on mixtures of one note set: enrolment detection and family presence, by number of sources.

    mixtures, enrol, root = mixture_set(note_folder, "results/poly/test_mixtures.json", 100, settings)
    embedded = embed_mixture_set(model, mixtures, enrol, root)
    results = score_mixture_set(model, embedded, mixtures, family_thresholds)

Two scoring methods are compared (the monophonic baseline of the polyphonic
recipe): ``clip`` embeds the mixture as one sound (its first ``max_seconds``,
as ``embed_files`` does); ``windows`` takes, per enrolment and per family, the best
of the clip and of its ``window_seconds`` windows. Family presence scores are
``TimbreEncoder.family_presence`` (a single-note model's softmax probabilities, a
mixture-trained model's sigmoids; best window for ``windows``); a family is called
present above a threshold chosen on validation mixtures (micro-F1).
"""

import functools
import json
import os
import time
import zlib

import numpy as np
import torch
from tqdm import tqdm

from timbre_lobes.atomic import atomic_open
from timbre_lobes.data.audio import prepare_audio, read_audio_file
from timbre_lobes.data.nsynth import DataFolderError, read_nsynth_folder, resolve_note_folder
from timbre_lobes.polyphonic import detection
from timbre_lobes.polyphonic.mixtures import (
    check_mixtures,
    mix_audio,
    resolve_wav,
    sample_mixtures,
    split_enrolment,
    write_mixtures,
)
from timbre_lobes.polyphonic.report import write_report

METHODS = ("clip", "windows")

#: The sampler's settings a mixture set is drawn with (keys of :func:`sample_mixtures`).
SAMPLER_KEYS = ("max_sources", "min_sources", "seconds", "max_onset_seconds", "gain_db", "scale")


#: The fewest bootstrap resamples ``ci_resamples`` takes (0 aside): fewer make no 95 % interval.
MIN_RESAMPLES = 100


def check_config(config):
    """Raises a ValueError naming the first bad evaluation setting (before anything is drawn or written).

    ``config``: ``sampler`` (a mapping of :data:`SAMPLER_KEYS`, all given), ``valid_per_count`` and
    ``test_per_count`` (at least 1), ``n_enrol`` (at least 1), ``window_seconds`` (0 = the clip
    alone, else positive), ``hop_seconds`` (positive), ``ci_resamples`` (0 = no intervals).
    """
    sampler = config.get("sampler")
    if not isinstance(sampler, dict):
        raise ValueError(f"sampler must be a mapping of {', '.join(SAMPLER_KEYS)}, got {sampler!r}")
    unknown = sorted(set(sampler) - set(SAMPLER_KEYS))
    missing = [k for k in SAMPLER_KEYS if k not in sampler]
    if unknown or missing:
        raise ValueError(
            f"sampler: unknown keys {unknown}, missing keys {missing} (it takes {', '.join(SAMPLER_KEYS)})"
        )
    for key in ("valid_per_count", "test_per_count", "n_enrol"):
        if not isinstance(config.get(key), int) or config[key] < 1:
            raise ValueError(f"{key} must be a whole number of at least 1, got {config.get(key)!r}")
    resamples = config.get("ci_resamples")
    if not isinstance(resamples, int) or not (resamples == 0 or resamples >= MIN_RESAMPLES):
        raise ValueError(
            f"ci_resamples must be 0 (no intervals) or at least {MIN_RESAMPLES} (fewer resamples make no 95 % "
            f"interval), got {resamples!r}"
        )
    if not isinstance(config.get("window_seconds"), (int, float)) or config["window_seconds"] < 0:
        raise ValueError(f"window_seconds must be 0 (the clip alone) or positive, got {config.get('window_seconds')!r}")
    if not isinstance(config.get("hop_seconds"), (int, float)) or config["hop_seconds"] <= 0:
        raise ValueError(f"hop_seconds must be positive, got {config.get('hop_seconds')!r}")


def mixture_set(note_folder, manifest_path, per_count, settings, n_enrol=3, seed=0):
    """The mixtures and enrolments of one note set, drawn once and kept in ``manifest_path``.

    The manifest is reused when it was drawn from the same folder with the same
    settings (so every run scores the same mixtures), and redrawn otherwise.

    Arguments
    ---------
    note_folder : str
        An NSynth-format folder (``examples.json`` + ``audio/``).
    manifest_path : str
        Where the mixtures are written (:func:`timbre_lobes.polyphonic.mixtures.write_mixtures`).
    per_count : int
        Mixtures of each number of sources.
    settings : dict
        The sampler's settings (:data:`SAMPLER_KEYS`).
    n_enrol : int
        Enrolment notes per instrument, never mixed.
    seed : int
        Seed of the enrolment split and (with the folder's name) of the draw.

    Returns
    -------
    (list, dict, str)
        The mixtures, ``{instrument: [enrolment rows]}``, and the folder ``$data_root`` stands for.
    """
    folder = os.path.abspath(note_folder)
    settings = {k: settings[k] for k in SAMPLER_KEYS}
    span = settings["max_sources"] - settings["min_sources"] + 1
    options = {
        "note_folder": folder,
        "stream": 1,
        **settings,
        "gain_db": list(settings["gain_db"]),
        "n_mixtures": per_count * span,
        "n_enrol": n_enrol,
        "seed": seed,
    }
    rows = read_nsynth_folder(folder, data_root=folder)
    enrol, rest = split_enrolment(rows, n_enrol=n_enrol, seed=seed)
    record, why = check_mixtures(manifest_path, options)
    if record is not None:
        print(f"{manifest_path}: reusing its {len(record['mixtures'])} mixtures (same notes and settings)")
        return record["mixtures"], enrol, folder
    # Each note set its own random stream: no two sets share their onsets and gains.
    stream = [seed, zlib.crc32(os.path.basename(folder).encode())]
    mixtures = sample_mixtures(rest, per_count * span, seed=stream, **settings)
    write_mixtures(manifest_path, mixtures, options, enrolment=enrol)
    print(f"{manifest_path}: drew {len(mixtures)} mixtures ({why})")
    return mixtures, enrol, folder


def _reader(sample_rate):
    @functools.lru_cache(maxsize=512)
    def read(path):
        signal, rate, _ = read_audio_file(path)
        return prepare_audio(signal, rate, sample_rate, max_seconds=None, trim_db=None, min_seconds=0, path=path)

    return lambda path: read(path).numpy()


def embed_mixture_set(model, mixtures, enrol, data_root, window_seconds=1.5, hop_seconds=0.5, desc="mixtures"):
    """Embeds the enrolment notes and every mixture's clip and windows.

    Returns
    -------
    dict
        ``instruments`` (sorted enrolled names), ``enrolled`` ``[n_instruments, emb]``,
        ``mixtures``: one ``[(1 + n_windows) * rows_per_view, emb]`` array per mixture
        (the clip's rows first: ``TimbreEncoder.mixture_embeddings``), ``rows_per_view``.
    """
    notes = {name: [resolve_wav(r["wav"], data_root) for r in rows] for name, rows in enrol.items()}
    names, enrolled = detection.enrolment_embeddings(
        {name: model.embed_files(paths) for name, paths in tqdm(notes.items(), desc="enrolments", leave=False)}
    )
    read = _reader(model.sample_rate)
    rows = []
    for mixture in tqdm(mixtures, desc=desc, unit="mixture", leave=False):
        signal = mix_audio(mixture, data_root, model.sample_rate, read=read)
        prepared = prepare_audio(
            signal, model.sample_rate, model.sample_rate, max_seconds=None, trim_db=model.trim_db, min_seconds=0
        )
        rows.append(model.mixture_embeddings(torch.as_tensor(prepared), window_seconds, hop_seconds))
    return {"instruments": names, "enrolled": enrolled, "mixtures": rows, "rows_per_view": model.rows_per_view}


def method_rows(rows, method, rows_per_view=1):
    """The rows a method scores: the clip's (its embedding and any slots), or those of the clip and its windows."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return rows[:rows_per_view] if method == "clip" else rows


def _rows(embedded, method):
    per_view = embedded.get("rows_per_view", 1)
    return [method_rows(r, method, per_view) for r in embedded["mixtures"]]


def family_presence(model, embedded, method):
    """``[n_mixtures, n_families]`` presence scores (``TimbreEncoder.family_presence``), best row of the method."""
    return np.stack([model.family_presence(r).max(axis=0) for r in _rows(embedded, method)])


def detection_matrix(embedded, method):
    """``[n_mixtures, n_instruments]`` trial scores of a method."""
    return np.stack([detection.window_scores(r, embedded["enrolled"]) for r in _rows(embedded, method)])


def score_mixture_set(
    model, embedded, mixtures, family_thresholds=None, detection_threshold=None, n_resamples=1000, matrices=None
):
    """Scores one embedded mixture set with each method.

    Arguments
    ---------
    model : TimbreEncoder
        Gives the family probabilities, labels and verification threshold.
    embedded : dict
        :func:`embed_mixture_set`'s output.
    mixtures : list of dict
        The mixtures, in the same order.
    family_thresholds : dict, optional
        ``{method: threshold}`` for family presence; None chooses them on this set
        (do so on validation mixtures only).
    detection_threshold : float, optional
        Threshold whose miss and false-alarm rates are reported (default: what
        ``detect`` uses: the model's ``detection_threshold``, else its note-to-note
        verification threshold).
    n_resamples : int
        Bootstrap resamples of the 95 % intervals (instruments resampled,
        :func:`timbre_lobes.polyphonic.detection.instrument_intervals`); 0 = none.
    matrices : dict, optional
        Filled with each method's scores, ``{method: {"detection": [n_mixtures,
        n_instruments], "family": [n_mixtures, n_families]}}`` (for :func:`save_scores`).

    Returns
    -------
    dict
        ``{method: {"detection": ..., "at_threshold": ..., "family_presence": ..., "intervals": ...}}``
        (:func:`timbre_lobes.polyphonic.detection.detection_scores`,
        :func:`~timbre_lobes.polyphonic.detection.rates_at`,
        :func:`~timbre_lobes.polyphonic.detection.family_presence_scores`,
        :func:`~timbre_lobes.polyphonic.detection.instrument_intervals`).
    """
    truth_inst = detection.presence_matrix(mixtures, embedded["instruments"], "instrument")
    truth_fam = detection.presence_matrix(mixtures, model.family_labels, "family")
    if detection_threshold is None:  # what `detect` decides with
        detection_threshold = model.detection_threshold if model.detection_threshold is not None else model.threshold
    threshold = detection_threshold
    results = {}
    for method in METHODS:
        scores = detection_matrix(embedded, method)
        presence = family_presence(model, embedded, method)
        if matrices is not None:
            matrices[method] = {"detection": scores, "family": presence}
        chosen = (family_thresholds or {}).get(method)
        if chosen is None:
            chosen = detection.best_threshold(truth_fam, presence)
        results[method] = {
            "detection": detection.detection_scores(scores, truth_inst, mixtures),
            "at_threshold": detection.rates_at(scores, truth_inst, threshold),
            "family_presence": detection.family_presence_scores(
                presence, truth_fam, mixtures, chosen, model.family_labels
            ),
        }
        if n_resamples:
            results[method]["intervals"] = detection.instrument_intervals(
                scores, truth_inst, embedded["instruments"], presence, truth_fam, chosen, mixtures, n_resamples
            )
    return results


def save_scores(path, model, embedded, mixtures, results, matrices):
    """Writes one set's trial scores, atomically, so reports can be compared pair by pair.

    ``<set>_scores.npz``: ``instruments``, ``families``, ``mixture_ids``, ``mixture_instruments``
    (JSON lists), ``detection_truth``
    and ``family_truth``; per method, ``<method>_detection`` ([n_mixtures, n_instruments]),
    ``<method>_family`` ([n_mixtures, n_families]) and ``<method>_family_threshold``.
    ``benchmarks/polyphonic_compare.py`` reads them for paired intervals
    (:func:`timbre_lobes.polyphonic.detection.paired_differences`). ``results`` and
    ``matrices``: what :func:`score_mixture_set` returned and filled for this set.
    """
    arrays = {
        "instruments": np.array(embedded["instruments"]),
        "families": np.array(model.family_labels),
        "mixture_ids": np.array([m["id"] for m in mixtures]),
        # each mixture's instruments (the clusters of the paired bootstrap), as JSON lists
        "mixture_instruments": np.array([json.dumps([src["instrument"] for src in m["sources"]]) for m in mixtures]),
        "detection_truth": detection.presence_matrix(mixtures, embedded["instruments"], "instrument"),
        "family_truth": detection.presence_matrix(mixtures, model.family_labels, "family"),
    }
    for method in METHODS:
        arrays[f"{method}_detection"] = matrices[method]["detection"]
        arrays[f"{method}_family"] = matrices[method]["family"]
        arrays[f"{method}_family_threshold"] = np.array(results[method]["family_presence"]["threshold"])
    with atomic_open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def corpus_name(note_folder):
    """What a corpus's mixture sets are called: ``rendered`` or the corpus folder's name.

    ``rendered`` when its notes were written by :mod:`timbre_lobes.render` (their
    metadata name a ``source_group``), else the name of the folder above the split
    (``/data/nsynth/nsynth-valid`` gives ``nsynth``), so a real corpus is never called rendered.
    """
    with open(os.path.join(note_folder, "examples.json")) as handle:
        notes = json.load(handle)
    if any("source_group" in meta or "soundfont" in meta for meta in notes.values()):
        return "rendered"
    folder = os.path.normpath(os.path.abspath(note_folder))
    parent = os.path.dirname(folder) if os.path.basename(folder).startswith("nsynth-") else folder
    return os.path.basename(parent) or "corpus"


def valid_set_name(folders):
    """The validation set of :func:`mixture_folders`' output: the first, which chooses the thresholds."""
    return next(iter(folders))


def mixture_folders(data_folder, real_folder=None):
    """``{set name: note folder}``: the corpus's validation and test splits, and the real notes if given.

    The corpus's sets are ``"<name> valid"`` (first: it chooses the thresholds) and
    ``"<name> test"``, ``name`` from :func:`corpus_name`; the real notes are ``"real NSynth"``.

    Raises
    ------
    timbre_lobes.data.nsynth.DataFolderError
        A folder is missing or holds no NSynth-format notes.
    ValueError
        ``data_folder`` is a single note folder (it would be both the validation and the test set).
    """
    valid, test = resolve_note_folder(data_folder, "valid"), resolve_note_folder(data_folder, "test")
    if os.path.abspath(valid) == os.path.abspath(test):
        raise ValueError(
            f"data_folder {data_folder} is one note folder: give a corpus root with nsynth-valid/ (which chooses "
            "the thresholds) and nsynth-test/ (scored with them); a single folder of notes goes in real_folder"
        )
    name = corpus_name(valid)
    folders = {f"{name} valid": valid, f"{name} test": test}
    if real_folder:
        try:
            folders["real NSynth"] = resolve_note_folder(real_folder, "test")
        except DataFolderError as error:
            raise DataFolderError(
                f"real_folder: {error} (a relative path is read from the current folder, {os.getcwd()}; "
                "--real_folder=PATH names another, --real_folder=null scores no real mixtures)"
            ) from None
    return folders


def evaluate_on_mixtures(model, folders, output_folder, config, title=None):
    """Scores ``model`` on the mixtures of every folder and writes the report (:mod:`timbre_lobes.polyphonic.report`).

    The first set (:func:`valid_set_name`) chooses the family-presence thresholds; each
    set's mixtures are drawn once into ``<output_folder>/<set>_mixtures.json``.

    Arguments
    ---------
    model : TimbreEncoder
        The exported model.
    folders : dict
        :func:`mixture_folders`' output.
    output_folder : str
        Where the manifests and the report go.
    config : dict
        ``sampler`` (the sampler's settings), ``valid_per_count``, ``test_per_count``,
        ``n_enrol``, ``window_seconds``, ``hop_seconds``, ``mixture_seed`` (the evaluation mixtures'
        seed: the same for every model, so their reports score the same mixtures); ``model`` (its
        folder, named in the report). Checked first (:func:`check_config`).

    Returns
    -------
    (dict, str)
        The results by set and the Markdown summary.
    """
    check_config(config)
    start = time.time()
    scored, sets, thresholds = {}, {}, None
    valid_set = valid_set_name(folders)
    for name, folder in folders.items():
        per_count = config["valid_per_count"] if name == valid_set else config["test_per_count"]
        manifest = os.path.join(output_folder, name.replace(" ", "_") + "_mixtures.json")
        mixtures, enrol, root = mixture_set(
            folder, manifest, per_count, config["sampler"], n_enrol=config["n_enrol"], seed=config["mixture_seed"]
        )
        embedded = embed_mixture_set(
            model, mixtures, enrol, root, config["window_seconds"], config["hop_seconds"], desc=name
        )
        matrices = {}
        result = score_mixture_set(
            model, embedded, mixtures, thresholds, n_resamples=config["ci_resamples"], matrices=matrices
        )
        if name == valid_set:
            thresholds = {m: r["family_presence"]["threshold"] for m, r in result.items()}
        scored[name] = result
        scores_file = name.replace(" ", "_") + "_scores.npz"
        save_scores(os.path.join(output_folder, scores_file), model, embedded, mixtures, result, matrices)
        sets[name] = {
            "folder": folder,
            "n_mixtures": len(mixtures),
            "n_instruments": len(embedded["instruments"]),
            "n_enrol": min(len(rows) for rows in enrol.values()),
            "manifest": manifest,
            "scores": scores_file,
        }
        print(f"{name}: {len(mixtures)} mixtures scored")
    run = {
        "model": os.path.abspath(config["model"]),
        "family_output": model.family_output,
        "threshold": model.detection_threshold if model.detection_threshold is not None else model.threshold,
        "verification_threshold": model.threshold,
        "detection_threshold": model.detection_threshold,
        **{k: config[k] for k in ("sampler", "window_seconds", "hop_seconds", "mixture_seed")},
        "sets": sets,
        "wall_seconds": round(time.time() - start, 1),
        "valid_set": valid_set,
        "description": f"Family thresholds chosen on the {valid_set} mixtures; "
        "the miss / false-alarm rates are those of `detect`'s default threshold (the model's detection_threshold, "
        "else its note-to-note verification threshold).",
        "title": title or f"{os.path.basename(os.path.normpath(config['model']))} on mixtures of unseen instruments",
    }
    return scored, write_report(scored, output_folder, run)
