"""The exported ``hyperparams.yaml``: the training run's module definitions, made standalone.

:func:`training_definitions` copies the exported modules' definitions from the
run's resolved training YAML (a head defined with ``!name:``, sized at run time
by its label space, becomes a ``!new:``/``!apply:`` with ``out_neurons`` set);
:func:`inference_yaml` wraps them with the audio settings, the verification
threshold and a SpeechBrain ``Pretrainer`` that loads the export's files.
"""

import inspect
import json
import os
import pydoc
from collections.abc import Mapping

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from timbre_lobes import __version__

#: Label files of an export: the instrument head's rows and the family head's rows, in order.
INSTRUMENT_LABELS = "instrument_encoder.txt"
FAMILY_LABELS = "family_encoder.txt"
HPARAMS_FILE = "hyperparams.yaml"


def training_definitions(hparams_file, modules, head_sizes):
    """The YAML definitions of the exported modules, from the run's resolved training YAML.

    Arguments
    ---------
    hparams_file : str
        The run's resolved training YAML (references already substituted, as
        SpeechBrain writes it into the output folder).
    modules : iterable of str
        Names of the exported modules (a dict's keys will do).
    head_sizes : Mapping[str, int] or int
        ``{head name: number of outputs}``, e.g. ``{"instrument_head": 950,
        "family_head": 11}``: a head among them defined with ``!name:`` (its size
        is known only after data preparation) becomes a ``!new:`` (a class) or
        ``!apply:`` (a factory function such as ``heads.classification_head``)
        with ``out_neurons`` set. A head already defined with ``!new:`` or
        ``!apply:`` (older YAMLs' family head) is copied as it is. A plain int
        is the instrument head's size alone (the former signature).

    Returns
    -------
    dict
        ``{module name: YAML text of its definition}``, in the order of ``modules``.

    Raises
    ------
    FileNotFoundError
        ``hparams_file`` is missing.
    ValueError
        A module is not defined there, or not with ``!new:``/``!apply:`` (or
        ``!name:`` for a head of ``head_sizes``).

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "hyperparams.yaml")
    >>> _ = open(path, "w").write(
    ...     "family_head: !name:timbre_lobes.lobes.heads.classification_head\\n"
    ...     "    head_type: cosine\\n"
    ...     "    input_size: 8\\n")
    >>> print(training_definitions(path, ["family_head"], {"family_head": 3})["family_head"], end="")
    family_head: !apply:timbre_lobes.lobes.heads.classification_head
        head_type: "cosine"
        input_size: 8
        out_neurons: 3
    """
    if not isinstance(head_sizes, Mapping):
        head_sizes = {"instrument_head": int(head_sizes)}
    if not os.path.isfile(hparams_file):
        raise FileNotFoundError(f"cannot export: the training run's {hparams_file} is missing")
    with open(hparams_file) as handle:
        tree = YAML().load(handle)
    texts = {}
    for key in modules:
        if key not in tree:
            raise ValueError(f"cannot export {key}: {hparams_file} does not define it")
        node = tree[key]
        tag = yaml_tag(node)
        if tag.startswith("!name:") and key in head_sizes:
            node = CommentedMap(node)
            node["out_neurons"] = int(head_sizes[key])
            target = tag[len("!name:") :]
            # A class is built with !new:, a factory function (heads.classification_head) with !apply:.
            tag = ("!new:" if inspect.isclass(pydoc.locate(target)) else "!apply:") + target
        elif not tag.startswith(("!new:", "!apply:")):
            raise ValueError(
                f"cannot export {key}: expected a !new: or !apply: definition in {hparams_file}, got {tag!r}"
            )
        texts[key] = "\n".join(_emit(key, node, 0, tag)) + "\n"
    return texts


def _plain(node):
    """A YAML node as plain values: a tagged node keeps its tag under ``"!"``."""
    tag = yaml_tag(node)
    if isinstance(node, dict):
        plain = {str(k): _plain(v) for k, v in node.items()}
        return {"!": tag, **plain} if tag else plain
    if isinstance(node, (list, CommentedSeq)):
        return [_plain(v) for v in node]
    if tag:
        return {"!": tag, "value": str(getattr(node, "value", ""))}
    return node


def _differences(mine, theirs, path):
    if isinstance(mine, dict) and isinstance(theirs, dict):
        found = []
        for key in list(mine) + [k for k in theirs if k not in mine]:
            where = f"{path}.{key}" if key != "!" else f"{path} (class)"
            if key not in theirs or key not in mine:
                found.append(f"{where}: {mine.get(key, '(none)')} here, {theirs.get(key, '(none)')} there")
            else:
                found += _differences(mine[key], theirs[key], where)
        return found
    if isinstance(mine, (int, float)) and isinstance(theirs, (int, float)) and not isinstance(mine, bool):
        return [] if float(mine) == float(theirs) else [f"{path}: {mine} here, {theirs} there"]
    return [] if mine == theirs else [f"{path}: {mine} here, {theirs} there"]


def definition_differences(hparams_file, export_folder, modules):
    """How the run's definitions of ``modules`` differ from an export's: ``["key.arg: a here, b there", ...]``.

    Settings that are no parameters (a front end's hop, a normalisation's options, the
    encoder's pooling) are invisible to the checkpoints' tensor shapes; a pretrained
    model loaded into modules built with other ones computes something else. Compares
    the run's resolved training YAML with the export's ``hyperparams.yaml``; a module
    one of them does not define is not compared.

    Arguments
    ---------
    hparams_file : str
        The run's resolved training YAML.
    export_folder : str
        An exported model folder.
    modules : iterable of str
        The modules to compare (e.g. ``compute_features``, ``embedding_model``).

    Returns
    -------
    list of str
        One line per difference; empty when they are built alike.
    """
    with open(hparams_file) as handle:
        mine = YAML().load(handle) or {}
    with open(os.path.join(export_folder, HPARAMS_FILE)) as handle:
        theirs = YAML().load(handle) or {}
    found = []
    for key in modules:
        if key in mine and key in theirs:
            found += _differences(_plain(mine[key]), _plain(theirs[key]), key)
    return found


def export_span(export_folder):
    """An export's span settings: ``{"max_seconds": s, "eval_seconds": s or None}``.

    What a model trained from it must keep so that its embeddings of single notes
    live in the same space (the polyphonic recipe's enrolments). Exports that
    predate ``eval_seconds`` give None there (whole notes) and their ``max_seconds``.
    """
    with open(os.path.join(export_folder, HPARAMS_FILE)) as handle:
        theirs = YAML().load(handle) or {}
    max_seconds = theirs.get("max_seconds", 4.0)
    eval_seconds = theirs.get("eval_seconds")
    return {
        "max_seconds": None if max_seconds is None else float(max_seconds),
        "eval_seconds": None if eval_seconds is None else float(eval_seconds),
    }


def yaml_tag(node):
    """A plain-loaded (ruamel) YAML node's tag (``!ref``, ``!apply:...``), or ``""`` for a plain value."""
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
    tag = yaml_tag(node) if tag is None else tag
    if isinstance(node, dict):
        head = f"{pad}{key}: {tag}".rstrip()
        if not node:
            return [head if tag else f"{pad}{key}: {{}}"]
        lines = [head]
        for k, v in node.items():
            lines += _emit(k, v, indent + 4)
        return lines
    if isinstance(node, (list, CommentedSeq)):
        if all(not isinstance(v, (dict, list)) and not yaml_tag(v) for v in node):
            return [f"{pad}{key}: {tag + ' ' if tag else ''}[{', '.join(_scalar(v) for v in node)}]"]
        raise ValueError(f"cannot export {key}: nested lists of objects are not supported")
    if tag:  # a tagged scalar, e.g. !name:torch.nn.ReLU or !new:Foo with no arguments
        value = getattr(node, "value", "")
        return [f"{pad}{key}: {tag} {value}".rstrip()]
    return [f"{pad}{key}: {_scalar(node)}"]


#: The settings :func:`inference_yaml` writes with their comments; others follow them plainly.
KNOWN_SETTINGS = (
    "system",
    "model_id",
    "sample_rate",
    "verification_threshold",
    "family_scale",
    "max_seconds",
    "min_seconds",
    "trim_db",
    "long_audio",
    "window_hop_seconds",
    "max_windows",
    "max_read_seconds",
    "eval_seconds",
)


def inference_yaml(settings, definitions, module_names, origin, hparams_file):
    """The text of the exported ``hyperparams.yaml``.

    Arguments
    ---------
    settings : dict
        ``system``, ``model_id``, ``sample_rate`` (Hz), ``verification_threshold``
        (cosine), ``family_scale`` and the audio settings (``max_seconds``,
        ``min_seconds``, ``trim_db``, ``long_audio``, ``window_hop_seconds``,
        ``max_windows``, ``max_read_seconds``, ``eval_seconds``); any other key (an export's
        ``extra_settings``, e.g. ``family_output``, ``detection_threshold``) is written
        after them as a plain value.
    definitions : dict
        ``{module name: YAML text}``, from :func:`training_definitions`.
    module_names : list of str
        The exported modules, in the order they are listed and loaded.
    origin : str
        Where the verification threshold comes from (a comment).
    hparams_file : str
        The training YAML the definitions come from (its name goes in a comment).
    """
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
        "# The recipes' evaluation (extract, evaluate, real_samples) embeds each note's first",
        "# eval_seconds, the span the training crops came from (null: whole notes).",
        f"eval_seconds: {_scalar(s.get('eval_seconds'))}",
        "",
        *[f"{key}: {_scalar(value)}" for key, value in s.items() if key not in KNOWN_SETTINGS],
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
