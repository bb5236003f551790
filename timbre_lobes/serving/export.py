"""Exporting a trained system as a self-contained inference folder.

:func:`export_model` writes what :class:`timbre_lobes.serving.inference.TimbreEncoder`
(or any SpeechBrain ``Pretrained`` interface) needs, and nothing from the
training run or its corpus:

* ``hyperparams.yaml``: the front end, normalisation, encoder and heads exactly
  as the training YAML defined them (copied from the run's resolved
  ``hyperparams.yaml``), the audio settings, the verification threshold, and a
  ``pretrainer`` whose ``paths`` point at the files below through
  ``pretrained_path`` (filled in by ``TimbreEncoder.from_hparams``);
* ``<module>.ckpt`` for each module, saved with SpeechBrain's checkpoint hooks
  (a state dict; the global mean/std statistics for the normalisation);
* ``instrument_encoder.txt`` (training instruments, the instrument head's rows)
  and ``family_encoder.txt`` (NSynth's families, the family head's rows);
* ``model_info.json`` (figures, threshold origins, file list) and a model card
  ``README.md``.

The folder is built beside its destination and swapped in by renaming, so an
export that fails midway leaves the previous export as it was.
"""

import datetime
import hashlib
import inspect
import json
import os
import pydoc
import shutil
import tempfile

import numpy as np
import torch
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.utils.checkpoints import DEFAULT_SAVE_HOOKS
from speechbrain.utils.distributed import MainProcessContext

from timbre_lobes import __version__
from timbre_lobes.atomic import atomic_open, write_json
from timbre_lobes.data.nsynth_labels import FAMILIES, NOTE_SECONDS
from timbre_lobes.scoring.verification import eer_and_min_dcf, read_trials

#: Modules exported when the brain has them; the first three are required.
EXPORTED_MODULES = ("compute_features", "mean_var_norm", "embedding_model", "family_head", "instrument_head")
REQUIRED_MODULES = EXPORTED_MODULES[:3]
INSTRUMENT_LABELS = "instrument_encoder.txt"
FAMILY_LABELS = "family_encoder.txt"
HPARAMS_FILE = "hyperparams.yaml"
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


def export_model(
    hparams, brain, instrument_encoder, results, export_folder, valid_set=None, hparams_file=None, max_pairs=200_000
):
    """Writes the inference folder of a trained system, atomically.

    Call it after ``brain.evaluate(..., min_key=...)``: the brain's modules then
    hold the best checkpoint, and those are the weights exported.

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

    Returns
    -------
    str
        The absolute path of the export.
    """
    export_folder = os.path.abspath(os.fspath(export_folder))
    parent, name = os.path.split(export_folder)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{name}.tmp-")
    try:
        # Under DDP only the main process exports: SpeechBrain's save/load helpers must not
        # wait for the other processes (inside this context their collectives are no-ops).
        with MainProcessContext():
            _write_export(
                tmp, export_folder, hparams, brain, instrument_encoder, results, valid_set, hparams_file, max_pairs
            )
        _swap_in(tmp, export_folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return export_folder


def _swap_in(new, final):
    """Renames the complete folder ``new`` onto ``final``, keeping the old one until it is in place."""
    if not os.path.exists(final):
        os.rename(new, final)
        return
    parent, name = os.path.split(final)
    old = tempfile.mkdtemp(dir=parent, prefix=f".{name}.old-")
    os.rmdir(old)
    os.rename(final, old)
    try:
        os.rename(new, final)
    except BaseException:
        os.rename(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _write_export(
    folder, final_folder, hparams, brain, instrument_encoder, results, valid_set, hparams_file, max_pairs
):
    """Fills ``folder`` with everything the export holds, then checks it loads back."""
    # Under DDP the brain's modules are wrappers; the export holds the modules themselves.
    modules = {k: _unwrap(brain.modules[k]) for k in EXPORTED_MODULES if k in brain.modules}
    missing = [k for k in REQUIRED_MODULES if k not in modules]
    if missing:
        raise ValueError(f"cannot export: the brain has no {', '.join(missing)} module")
    if "instrument_head" in modules and modules["instrument_head"].weight.shape[0] != len(instrument_encoder):
        raise ValueError(
            f"instrument head has {modules['instrument_head'].weight.shape[0]} rows but the "
            f"instrument encoder {len(instrument_encoder)} labels"
        )
    hparams_file = hparams_file or os.path.join(hparams["output_folder"], HPARAMS_FILE)
    definitions = training_definitions(hparams_file, modules, len(instrument_encoder))

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
    family_encoder = CategoricalEncoder()
    family_encoder.update_from_iterable(FAMILIES)
    family_encoder.save(os.path.join(folder, FAMILY_LABELS))
    files += [INSTRUMENT_LABELS, FAMILY_LABELS]
    model_id = _digest(folder, files)

    settings = {
        "system": hparams.get("system", "unnamed"),
        "model_id": model_id,
        "sample_rate": int(hparams["sample_rate"]),
        "verification_threshold": float(threshold),
        "family_scale": float(_family_scale(hparams)),
        **AUDIO_DEFAULTS,
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
        "sample_rate": settings["sample_rate"],
        "verification_threshold": settings["verification_threshold"],
        "verification_threshold_origin": origin,
        "validation": validation,
        "test": test,
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


def _family_scale(hparams):
    """The logit scale of the family loss (softmax temperature for probabilities)."""
    loss = hparams.get("family_loss")
    scale = getattr(getattr(loss, "loss_fn", None), "scale", None)
    return scale if scale is not None else hparams.get("scale", 30.0)


# ---------------------------------------------------------------------------
# The inference YAML
# ---------------------------------------------------------------------------


def training_definitions(hparams_file, modules, n_instruments):
    """The YAML definitions of the exported modules, from the run's resolved training YAML.

    Returns ``{module name: YAML text of its definition}``. The instrument head,
    a ``!name:`` in the training YAML (its size is known only after data
    preparation), becomes a ``!new:`` with ``out_neurons`` set.
    """
    if not os.path.isfile(hparams_file):
        raise FileNotFoundError(f"cannot export: the training run's {hparams_file} is missing")
    with open(hparams_file) as handle:
        tree = YAML().load(handle)
    texts = {}
    for key in modules:
        if key not in tree:
            raise ValueError(f"cannot export {key}: {hparams_file} does not define it")
        node = tree[key]
        tag = _tag(node)
        if tag.startswith("!name:") and key == "instrument_head":
            node = CommentedMap(node)
            node["out_neurons"] = n_instruments
            target = tag[len("!name:") :]
            # A class is built with !new:, a factory function (heads.classification_head) with !apply:.
            tag = ("!new:" if inspect.isclass(pydoc.locate(target)) else "!apply:") + target
        elif not tag.startswith(("!new:", "!apply:")):
            raise ValueError(
                f"cannot export {key}: expected a !new: or !apply: definition in {hparams_file}, got {tag!r}"
            )
        texts[key] = "\n".join(_emit(key, node, 0, tag)) + "\n"
    return texts


def _tag(node):
    tag = getattr(node, "tag", None)
    value = getattr(tag, "value", tag)
    return value or ""


def _scalar(value):
    """A plain YAML scalar (JSON is a subset of YAML for these)."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, int) else json.dumps(float(value))
    return json.dumps(str(value))


def _emit(key, node, indent, tag=None):
    """Lines of ``key: node`` in block style, tags kept, comments dropped."""
    pad = " " * indent
    tag = _tag(node) if tag is None else tag
    if isinstance(node, dict):
        head = f"{pad}{key}: {tag}".rstrip()
        if not node:
            return [head if tag else f"{pad}{key}: {{}}"]
        lines = [head]
        for k, v in node.items():
            lines += _emit(k, v, indent + 4)
        return lines
    if isinstance(node, (list, CommentedSeq)):
        if all(not isinstance(v, (dict, list)) and not _tag(v) for v in node):
            return [f"{pad}{key}: {tag + ' ' if tag else ''}[{', '.join(_scalar(v) for v in node)}]"]
        raise ValueError(f"cannot export {key}: nested lists of objects are not supported")
    if tag:  # a tagged scalar, e.g. !name:torch.nn.ReLU or !new:Foo with no arguments
        value = getattr(node, "value", "")
        return [f"{pad}{key}: {tag} {value}".rstrip()]
    return [f"{pad}{key}: {_scalar(node)}"]


def inference_yaml(settings, definitions, module_names, origin, hparams_file):
    """The text of the exported ``hyperparams.yaml``."""
    s = settings
    lines = [
        "# " + "#" * 76,
        f"# Inference model: {s['system']}, exported by timbre-lobes {__version__}.",
        "# Load with:",
        "#     from timbre_lobes.serving.inference import TimbreEncoder",
        '#     model = TimbreEncoder.from_hparams(source="<this folder>")',
        '# Other SpeechBrain interfaces: pass overrides={"pretrained_path": "<this folder>"}.',
        f"# The module definitions are the training run's ({os.path.basename(hparams_file)}).",
        "# " + "#" * 76,
        "",
        f"system: {_scalar(s['system'])}",
        f"model_id: {_scalar(s['model_id'])}",
        f"sample_rate: {s['sample_rate']}",
        "# The folder holding the files below; TimbreEncoder.from_hparams sets it to its source.",
        "pretrained_path: !PLACEHOLDER",
        "",
        "# Verification: cosine similarity of two sounds' embeddings >= threshold -> same instrument.",
        f"# Origin: {origin}.",
        f"verification_threshold: {_scalar(s['verification_threshold'])}",
        "# Family probabilities: softmax(family_scale * head scores), the training loss's scale (1 for linear heads).",
        f"family_scale: {_scalar(s['family_scale'])}",
        "",
        "# Audio input (timbre_lobes.data.audio.load_audio): every file is downmixed, resampled to",
        "# sample_rate, its leading silence (trim_db below the peak) dropped, padded to min_seconds.",
        "# long_audio: excerpt = the first max_seconds; average = mean embedding of max_seconds",
        "# windows every window_hop_seconds (at most max_windows, spread evenly) over the whole",
        "# sound (its first max_read_seconds).",
        f"max_seconds: {_scalar(s['max_seconds'])}",
        f"min_seconds: {_scalar(s['min_seconds'])}",
        f"trim_db: {_scalar(s['trim_db'])}",
        f"long_audio: {s['long_audio']}   # excerpt | average",
        f"window_hop_seconds: {_scalar(s['window_hop_seconds'])}",
        f"max_windows: {s['max_windows']}",
        f"max_read_seconds: {_scalar(s['max_read_seconds'])}",
        "",
        "audio_normalizer: !new:speechbrain.dataio.preprocess.AudioNormalizer",
        "    sample_rate: !ref <sample_rate>",
        "    mix: avg-to-mono",
        "",
    ]
    for key in module_names:
        lines.append(definitions[key])
    lines += [
        "instrument_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder",
        "family_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder",
        "",
        "modules:",
        *[f"    {k}: !ref <{k}>" for k in module_names],
        "",
        "pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer",
        "    loadables:",
        *[f"        {k}: !ref <{k}>" for k in module_names],
        "        instrument_encoder: !ref <instrument_encoder>",
        "        family_encoder: !ref <family_encoder>",
        "    paths:",
        *[f"        {k}: !ref <pretrained_path>/{k}.ckpt" for k in module_names],
        f"        instrument_encoder: !ref <pretrained_path>/{INSTRUMENT_LABELS}",
        f"        family_encoder: !ref <pretrained_path>/{FAMILY_LABELS}",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Validation figures of the exported weights
# ---------------------------------------------------------------------------


def embed_batch(modules, wavs, lens):
    """Front end -> global normalisation -> encoder: [batch, samples] -> [batch, 1, emb]."""
    feats = modules["compute_features"](wavs)
    feats = modules["mean_var_norm"](feats, lens)
    return modules["embedding_model"](feats, lens)


def validation_stats(hparams, modules, device, valid_set, max_pairs=200_000, seed=0):
    """Scores the modules' current weights on the validation notes.

    ``modules`` maps names to (unwrapped) modules; nothing here communicates
    with other processes, so it can run on the main process alone.

    Returns a dict with ``pair_EER`` / ``pair_threshold`` (note-vs-note pairs,
    the setting of ``verify A B``), and, when the run's validation trial lists
    exist in ``save_folder``, ``EER``, ``minDCF``, ``eer_threshold`` of those
    enrolment-vs-note trials and the family micro/macro-F1, figures that
    reproduce the selected checkpoint's validation scores.
    """
    from speechbrain.dataio.dataloader import make_dataloader

    from timbre_lobes.scoring import evaluation

    batch_size = (hparams.get("eval_dataloader_opts") or {}).get("batch_size", 16)
    loader = make_dataloader(valid_set, batch_size=batch_size)
    was_training = {k: m.training for k, m in modules.items()}
    for m in modules.values():
        m.eval()
    collector = evaluation.Collector()
    with torch.no_grad():
        for batch in loader:
            batch = batch.to(device)
            wavs, lens = batch.sig
            emb = embed_batch(modules, wavs, lens)
            family_out = modules["family_head"](emb) if "family_head" in modules else emb[..., :1]
            labels = batch.family_label.data if hasattr(batch, "family_label") else torch.zeros(len(batch.id))
            collector.add(batch.id, emb, family_out, labels)
    for k, m in modules.items():
        m.train(was_training[k])

    ids = sorted(collector.embeddings)
    instruments = [valid_set.data[i]["instrument"] for i in ids]
    emb = torch.nn.functional.normalize(torch.stack([collector.embeddings[i] for i in ids]).float(), dim=1)
    labels, scores = pair_scores(emb.numpy(), instruments, max_pairs=max_pairs, seed=seed)
    pairs = eer_and_min_dcf(labels, scores)
    stats = {
        "n_notes": len(ids),
        "n_pairs": int(len(labels)),
        "pair_EER": 100.0 * pairs["eer"],
        "pair_threshold": float(pairs["eer_threshold"]),
    }
    save_folder = hparams.get("save_folder")
    enrol_path = os.path.join(save_folder or "", "valid_enrolments.txt")
    trials_path = os.path.join(save_folder or "", "valid_trials.txt")
    if save_folder and os.path.isfile(enrol_path) and os.path.isfile(trials_path):
        enrolments, trials = read_trials(enrol_path, trials_path)
        full = evaluation.evaluate_collected(collector, enrolments, trials)
        for key in ("EER", "minDCF", "eer_threshold", "family_micro_f1", "family_macro_f1"):
            stats[key] = full[key]
    return stats


def pair_scores(embeddings, labels, max_pairs=200_000, seed=0):
    """Cosine scores of note pairs: all pairs, or ``max_pairs`` drawn half same-label, half different.

    Arguments
    ---------
    embeddings : np.ndarray
        [n, emb] length-normalised embeddings.
    labels : list
        [n] instrument of each note.

    Returns
    -------
    targets : np.ndarray
        [pairs] 1 for same-label pairs.
    scores : np.ndarray
        [pairs] cosine similarities.

    Example
    -------
    >>> emb = np.eye(3)[[0, 0, 1, 1]].astype(np.float32)
    >>> t, s = pair_scores(emb, ["a", "a", "b", "b"])
    >>> t.tolist(), s.tolist()
    ([1, 0, 0, 0, 0, 1], [1.0, 0.0, 0.0, 0.0, 0.0, 1.0])
    """
    labels = np.asarray(labels)
    n = len(labels)
    if n * (n - 1) // 2 <= max_pairs:
        i, j = np.triu_indices(n, k=1)
    else:
        rng = np.random.default_rng(seed)
        groups = {lab: np.flatnonzero(labels == lab) for lab in np.unique(labels)}
        multi = np.concatenate([g for g in groups.values() if len(g) > 1])
        half = max_pairs // 2
        i_same = rng.choice(multi, half)
        j_same = np.array([rng.choice(groups[labels[a]][groups[labels[a]] != a]) for a in i_same])
        i_diff = rng.integers(0, n, 4 * half)
        j_diff = rng.integers(0, n, 4 * half)
        keep = np.flatnonzero(labels[i_diff] != labels[j_diff])[:half]
        i = np.concatenate([i_same, i_diff[keep]])
        j = np.concatenate([j_same, j_diff[keep]])
    scores = (embeddings[i] * embeddings[j]).sum(axis=1)
    return (labels[i] == labels[j]).astype(np.int64), scores


# ---------------------------------------------------------------------------
# Model card and self-check
# ---------------------------------------------------------------------------


def _fmt(value, spec):
    return "n/a" if value is None else format(value, spec)


def model_card(info, definitions, final_folder):
    """The export's ``README.md``."""
    val = info["validation"] or {}
    test = info["test"]
    lines = [
        f"# {info['system']}: musical-instrument timbre embeddings",
        "",
        f"Exported by timbre-lobes {info['timbre_lobes_version']} on {info['exported']} "
        f"from the training run in `{info['training_output_folder']}` (model id `{info['model_id']}`).",
        "",
        "## System",
        "",
        "Waveform -> front end -> global mean/variance normalisation -> embedding model -> "
        "one embedding per sound; two cosine heads on the embedding (NSynth's 11 instrument "
        f"families; the {info['n_train_instruments']} training instruments). Definitions as trained:",
        "",
        "```yaml",
        *[definitions[k].rstrip() for k in definitions],
        "```",
        "",
        "## Data",
        "",
        f"Trained on the NSynth-format corpus `{info['data_folder']}` "
        f"({info['n_train_instruments']} training instruments), {info['sample_rate']} Hz mono notes. "
        "Validation and test instruments are not among the training instruments.",
        "",
        "## Results",
        "",
        "| split | EER (%) | minDCF | family micro-F1 | family macro-F1 |",
        "|---|---:|---:|---:|---:|",
        f"| validation (exported weights) | {_fmt(val.get('EER'), '.2f')} | {_fmt(val.get('minDCF'), '.3f')} "
        f"| {_fmt(val.get('family_micro_f1'), '.3f')} | {_fmt(val.get('family_macro_f1'), '.3f')} |",
        f"| test | {_fmt(test.get('EER'), '.2f')} | {_fmt(test.get('minDCF'), '.3f')} "
        f"| {_fmt(test.get('family_micro_f1'), '.3f')} | {_fmt(test.get('family_macro_f1'), '.3f')} |",
        "",
        "EER and minDCF: open-set instrument verification, enrolment (mean of several notes) "
        "against single notes of unseen instruments.",
    ]
    if val.get("pair_EER") is not None:
        lines += [
            "",
            f"Note-vs-note pairs of the validation instruments: EER {val['pair_EER']:.2f} % "
            f"over {val['n_pairs']} pairs.",
        ]
    lines += [
        "",
        "## Verification threshold",
        "",
        f"`verification_threshold: {info['verification_threshold']:.4f}` (cosine): "
        f"{info['verification_threshold_origin']}.",
        "",
        "## Use",
        "",
        "```python",
        "from timbre_lobes.serving.inference import TimbreEncoder",
        f'model = TimbreEncoder.from_hparams(source="{final_folder}")',
        'embeddings = model.embed_files(["a.wav", "b.flac"])   # [2, emb]',
        'score, same = model.verify_files("a.wav", "b.flac")',
        'families, probabilities = model.classify_family_files(["a.wav"])',
        "```",
        "",
        "```sh",
        f"python -m timbre_lobes classify --model {final_folder} my_sounds/",
        f"python -m timbre_lobes similar query.wav --library my_sounds/ --top 5 --model {final_folder}",
        "```",
        "",
        "## Files",
        "",
        *[f"- `{name}`" for name in info["files"]],
        "",
    ]
    return "\n".join(lines)


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
