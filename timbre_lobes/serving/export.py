"""Exporting a trained system as a self-contained inference folder.

:func:`export_model` writes what :class:`timbre_lobes.serving.inference.TimbreEncoder`
(or any SpeechBrain ``Pretrained`` interface) needs, and nothing from the
training run or its corpus:

* ``hyperparams.yaml``: the front end, normalisation, encoder and heads exactly
  as the training YAML defined them (copied from the run's resolved
  ``hyperparams.yaml``), the audio settings, the verification threshold, and a
  ``pretrainer`` whose ``paths`` point at the files below through
  ``pretrained_path`` (filled in by ``TimbreEncoder.from_hparams``); written by
  :mod:`timbre_lobes.serving.inference_yaml`;
* ``<module>.ckpt`` for each module, saved with SpeechBrain's checkpoint hooks
  (a state dict; the global mean/std statistics for the normalisation);
* ``instrument_encoder.txt`` (training instruments, the instrument head's rows)
  and ``family_encoder.txt`` (the family label space of the training data, the
  family head's rows);
* ``model_info.json`` (figures, threshold origins, file list) and a model card
  ``README.md`` (:mod:`timbre_lobes.serving.model_card`).

The validation figures (and the verification threshold) come from
:func:`timbre_lobes.scoring.validation.validation_stats`. The folder is built
beside its destination and swapped in by renaming
(:func:`timbre_lobes.atomic.replaced_folder`), so an export that fails midway
leaves the previous export as it was.
"""

import datetime
import hashlib
import inspect
import os

import torch
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.utils.checkpoints import DEFAULT_SAVE_HOOKS
from speechbrain.utils.distributed import MainProcessContext

from timbre_lobes import __version__
from timbre_lobes.atomic import atomic_open, replaced_folder, write_json
from timbre_lobes.data.nsynth_labels import FAMILIES, NOTE_SECONDS
from timbre_lobes.scoring.validation import validation_stats
from timbre_lobes.serving.inference_yaml import (
    FAMILY_LABELS,
    HPARAMS_FILE,
    INSTRUMENT_LABELS,
    inference_yaml,
    training_definitions,
)
from timbre_lobes.serving.model_card import model_card

#: Modules exported when the brain has them; the first three are required.
EXPORTED_MODULES = (
    "compute_features",
    "mean_var_norm",
    "embedding_model",
    "family_head",
    "instrument_head",
    "slot_head",
)
REQUIRED_MODULES = EXPORTED_MODULES[:3]
INFO_FILE = "model_info.json"

#: Audio settings written into every export (see ``timbre_lobes.data.audio.load_audio``).
AUDIO_DEFAULTS = {
    "max_seconds": NOTE_SECONDS,
    "min_seconds": 1.0,
    "trim_db": 60.0,
    "long_audio": "excerpt",
    "window_hop_seconds": 2.0,
    "max_windows": 30,
    "max_read_seconds": 600.0,
}


def audio_settings(hparams):
    """The export's audio settings: :data:`AUDIO_DEFAULTS`, with the span of a note its evaluation embedded.

    ``eval_seconds`` is the training run's; a run that evaluated the first
    ``eval_seconds`` of each note exports that as its ``max_seconds`` too, so that a
    sound is embedded over the span the model learnt from (``eval_seconds: null``:
    whole notes, whole sounds). A run without the key exports the defaults
    (``max_seconds`` 4 s).
    """
    if "eval_seconds" not in hparams:  # a run that predates it, or builds its own: the defaults
        return dict(AUDIO_DEFAULTS, eval_seconds=None)
    eval_seconds = None if hparams["eval_seconds"] is None else float(hparams["eval_seconds"])
    # null: whole notes in evaluation, whole sounds (their first max_read_seconds) in use.
    return dict(AUDIO_DEFAULTS, eval_seconds=eval_seconds, max_seconds=eval_seconds)


def nsynth_family_encoder():
    """A ``CategoricalEncoder`` of NSynth's 11 families in NSynth's index order (the former fixed label space)."""
    encoder = CategoricalEncoder()
    encoder.update_from_iterable(FAMILIES)
    return encoder


def export_model(
    hparams,
    brain,
    instrument_encoder,
    results,
    export_folder,
    valid_set=None,
    hparams_file=None,
    max_pairs=200_000,
    family_encoder=None,
    extra_settings=None,
):
    """Writes the inference folder of a trained system, atomically.

    Call it after ``brain.evaluate(..., min_key=...)``: the brain's modules then
    hold the best checkpoint, and those are the weights exported. Only the
    modules are used, so any object with ``modules`` and ``device`` will do.

    Arguments
    ---------
    hparams : dict
        The training hparams (``output_folder``, ``system``, ``sample_rate``, ...).
    brain : speechbrain.core.Brain
        Its ``modules`` (a ModuleDict) and ``device`` are used.
    instrument_encoder : speechbrain.dataio.encoder.CategoricalEncoder
        Training instruments, in the instrument head's order.
    results : dict
        The test results record (``evaluation.results_record``).
    export_folder : str
        Destination; replaced as a whole if it exists.
    valid_set : speechbrain.dataio.dataset.DynamicItemDataset, optional
        Validation notes (``id``, ``sig`` and the static ``instrument`` key).
        Given, the verification threshold is the equal-error-rate threshold of
        note-vs-note pairs of the validation instruments, and the validation
        EER/family F1 of the exported weights is recorded. Without it, the
        threshold is the test results' ``eer_threshold`` (enrolment-vs-note
        trials of the *test* instruments), and the model card says so.
    hparams_file : str, optional
        The run's resolved training YAML; default ``<output_folder>/hyperparams.yaml``.
    max_pairs : int
        At most this many validation note pairs are scored for the threshold.
    family_encoder : speechbrain.dataio.encoder.CategoricalEncoder, optional
        The family label space, in the family head's order (the data
        preparation's ``family_encoder.txt``); written as the export's
        ``family_encoder.txt``. None: NSynth's 11 families.
    extra_settings : dict, optional
        Plain values added to the export's ``hyperparams.yaml`` (e.g. the polyphonic
        recipe's ``family_output: sigmoid`` and ``detection_threshold``); the model
        card lists them. ``results["training"]`` (a sentence, optional) tells the card how
        the model was trained when that is not plain single-note training.

    Returns
    -------
    str
        The absolute path of the export.

    Raises
    ------
    ValueError
        The brain lacks a required module, a head's row count differs from its
        encoder's size, or the training YAML does not define a module.
    FileNotFoundError
        The training YAML is missing.
    RuntimeError
        The written folder does not load back to the same weights.
    """
    export_folder = os.path.abspath(os.fspath(export_folder))
    if family_encoder is None:
        family_encoder = nsynth_family_encoder()
    with replaced_folder(export_folder) as tmp:
        # Under DDP only the main process exports: SpeechBrain's save/load helpers must not
        # wait for the other processes (inside this context their collectives are no-ops).
        with MainProcessContext():
            _write_export(
                tmp,
                export_folder,
                hparams,
                brain,
                instrument_encoder,
                family_encoder,
                results,
                valid_set,
                hparams_file,
                max_pairs,
                extra_settings or {},
            )
    return export_folder


def _head_rows(head):
    """Outputs of a classification head (its weight's rows: cosine and linear heads alike)."""
    return int(head.weight.shape[0])


def _check_head(modules, key, encoder, what):
    """Raises ValueError when the head ``key`` has another number of rows than ``encoder`` has labels."""
    if key in modules and _head_rows(modules[key]) != len(encoder):
        raise ValueError(
            f"{what} head has {_head_rows(modules[key])} rows but the {what} encoder {len(encoder)} labels"
        )


def _write_export(
    folder,
    final_folder,
    hparams,
    brain,
    instrument_encoder,
    family_encoder,
    results,
    valid_set,
    hparams_file,
    max_pairs,
    extra_settings,
):
    """Fills ``folder`` with everything the export holds, then checks it loads back."""
    # Under DDP the brain's modules are wrappers; the export holds the modules themselves.
    modules = {k: _unwrap(brain.modules[k]) for k in EXPORTED_MODULES if k in brain.modules}
    missing = [k for k in REQUIRED_MODULES if k not in modules]
    if missing:
        raise ValueError(f"cannot export: the brain has no {', '.join(missing)} module")
    _check_head(modules, "instrument_head", instrument_encoder, "instrument")
    _check_head(modules, "family_head", family_encoder, "family")
    hparams_file = hparams_file or os.path.join(hparams["output_folder"], HPARAMS_FILE)
    head_sizes = {"instrument_head": len(instrument_encoder), "family_head": len(family_encoder)}
    definitions = training_definitions(hparams_file, modules, head_sizes)

    validation = None
    if valid_set is not None:
        validation = validation_stats(hparams, modules, brain.device, valid_set, max_pairs=max_pairs)
        threshold = validation["pair_threshold"]
        origin = "equal-error-rate threshold of note-vs-note pairs of the validation instruments, exported weights"
    else:
        threshold = float(results["eer_threshold"])
        origin = (
            "equal-error-rate threshold of the TEST split's enrolment-vs-note trials "
            "(no validation set was given at export)"
        )

    files = []
    for key, module in modules.items():
        save_module(module, os.path.join(folder, f"{key}.ckpt"))
        files.append(f"{key}.ckpt")
    instrument_encoder.save(os.path.join(folder, INSTRUMENT_LABELS))
    family_encoder.save(os.path.join(folder, FAMILY_LABELS))
    files += [INSTRUMENT_LABELS, FAMILY_LABELS]
    model_id = _digest(folder, files)

    settings = {
        "system": hparams.get("system", "unnamed"),
        "model_id": model_id,
        "sample_rate": int(hparams["sample_rate"]),
        "verification_threshold": float(threshold),
        "family_scale": float(family_scale(hparams)),
        **audio_settings(hparams),
        **extra_settings,
    }
    with atomic_open(os.path.join(folder, HPARAMS_FILE)) as handle:
        handle.write(inference_yaml(settings, definitions, list(modules), origin, hparams_file))
    files.append(HPARAMS_FILE)

    test = {
        k: results[k]
        for k in (
            "EER",
            "minDCF",
            "eer_threshold",
            "family_micro_f1",
            "family_macro_f1",
            "n_target_trials",
            "n_nontarget_trials",
            "n_notes",
        )
        if k in results
    }
    info = {
        "system": settings["system"],
        "model_id": model_id,
        "exported": datetime.datetime.now().isoformat(timespec="seconds"),
        "timbre_lobes_version": __version__,
        "training_output_folder": os.path.abspath(hparams["output_folder"]),
        "data_folder": results.get("data_folder"),
        "n_train_instruments": len(instrument_encoder),
        "family_labels": [family_encoder.ind2lab[i] for i in range(len(family_encoder))],
        "sample_rate": settings["sample_rate"],
        "verification_threshold": settings["verification_threshold"],
        "verification_threshold_origin": origin,
        **({"eval_seconds": settings["eval_seconds"]} if "eval_seconds" in hparams else {}),
        "validation": validation,
        "test": test,
        "head_type": hparams.get("head_type", "cosine"),
        "training": results.get("training"),
        "settings": dict(extra_settings),
        "files": files + [INFO_FILE, "README.md"],
    }
    write_json(os.path.join(folder, INFO_FILE), info)
    with atomic_open(os.path.join(folder, "README.md")) as handle:
        handle.write(model_card(info, definitions, final_folder))
    _set_permissions(folder)
    check_export(folder, modules)


def _set_permissions(folder):
    """Gives the folder and its files the usual permissions (temporary files are private)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for name in os.listdir(folder):
        os.chmod(os.path.join(folder, name), 0o666 & ~umask)


def _unwrap(module):
    """The module inside a DistributedDataParallel/DataParallel wrapper, or the module."""
    wrappers = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    return module.module if isinstance(module, wrappers) else module


def save_module(module, path):
    """Saves a module the way SpeechBrain's checkpointer would, with tensors on the CPU.

    Modules with their own checkpoint hooks (``InputNormalization`` keeps its
    global statistics outside the state dict) use their saver; plain modules
    have their state dict saved.
    """
    owner = next((cls for cls in type(module).__mro__ if cls in DEFAULT_SAVE_HOOKS), None)
    if owner is None or owner is torch.nn.Module:
        state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
        torch.save(state, path)
    else:
        inspect.unwrap(DEFAULT_SAVE_HOOKS[owner])(module, path)  # without the main-process wrapper


def _digest(folder, names):
    """Short SHA-256 of the files' contents: tells one export's weights from another's."""
    sha = hashlib.sha256()
    for name in sorted(names):
        sha.update(name.encode())
        with open(os.path.join(folder, name), "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                sha.update(chunk)
    return sha.hexdigest()[:16]


def family_scale(hparams):
    """The logit scale of the family loss (softmax temperature for probabilities)."""
    loss = hparams.get("family_loss")
    scale = getattr(getattr(loss, "loss_fn", None), "scale", None)
    return scale if scale is not None else hparams.get("scale", 30.0)


def check_export(folder, modules):
    """Loads ``folder`` back and checks every exported tensor equals the trained one."""
    from timbre_lobes.serving.inference import TimbreEncoder

    loaded = TimbreEncoder.from_hparams(source=folder, run_opts={"device": "cpu"})
    for key, module in modules.items():
        if hasattr(module, "glob_mean"):  # InputNormalization: statistics outside the state dict
            pairs = [(module.glob_mean, loaded.mods[key].glob_mean), (module.glob_std, loaded.mods[key].glob_std)]
        else:
            mine, theirs = module.state_dict(), loaded.mods[key].state_dict()
            if set(mine) != set(theirs):
                raise RuntimeError(f"export check: {key} reloads with different parameters")
            pairs = [(mine[k], theirs[k]) for k in mine]
        for a, b in pairs:
            if a.shape != b.shape or not torch.equal(a.detach().cpu(), b.detach().cpu()):
                raise RuntimeError(f"export check: {key} does not reload to the trained values")
