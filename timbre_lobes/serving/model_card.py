"""The model card (``README.md``) of an exported model folder."""

from timbre_lobes.data.nsynth_labels import FAMILIES


def _fmt(value, spec):
    return "n/a" if value is None else format(value, spec)


def _family_space(labels):
    """``the 3 instrument families (a, b, c)``: the family head's label space in words."""
    labels = list(labels)
    noun = "family" if len(labels) == 1 else "families"
    return f"the {len(labels)} instrument {noun} ({', '.join(labels)})"


#: What each serving setting an export may add to its ``hyperparams.yaml`` means, for the card.
SETTING_NOTES = {
    "family_output": "how family scores are read: `softmax` (one family per sound) or `sigmoid` (each family "
    "present or not, as in mixtures)",
    "detection_threshold": "cosine at or above which `detect` calls an enrolled instrument present in a mixture",
    "detection_window_seconds": "window length `detect` scores besides the whole clip (0: the whole clip alone)",
    "max_seconds": "the span of a sound embedded, in s after its leading silence (here the pretrained model's, "
    "so that single notes and enrolments are embedded as it embeds them)",
    "eval_seconds": "the span of each note the pretrained model's evaluation embedded (null: whole notes)",
}


def _settings_section(info):
    """The card's lines on non-default training and serving settings (none when there are none)."""
    lines = []
    if info.get("training"):
        lines += ["", "## Training", "", info["training"]]
    settings = info.get("settings") or {}
    if settings:
        lines += ["", "## Serving settings", "", "Beyond the single-note defaults, `hyperparams.yaml` sets:", ""]
        for key, value in settings.items():
            note = SETTING_NOTES.get(key)
            lines.append(f"- `{key}: {value}`" + (f": {note}" if note else ""))
    return lines


def model_card(info, definitions, final_folder):
    """The export's ``README.md``.

    Arguments
    ---------
    info : dict
        The export's ``model_info.json`` record: ``system``, ``model_id``,
        ``exported``, ``timbre_lobes_version``, ``training_output_folder``,
        ``data_folder``, ``n_train_instruments``, ``family_labels`` (the family
        head's rows in order; NSynth's families when absent), ``sample_rate``,
        ``verification_threshold`` and its ``_origin``, ``validation`` (dict or
        None), ``test`` and ``files``; optionally ``training`` (a sentence on a
        training that is not plain single-note training), ``settings`` (the
        serving settings the export adds, listed with :data:`SETTING_NOTES`) and
        ``eval_seconds`` (the span of each note the evaluation embedded; None: whole notes).
    definitions : dict
        ``{module name: YAML text of its definition}``.
    final_folder : str
        Where the export will live (the usage examples name it).

    Returns
    -------
    str
        Markdown text.

    Example
    -------
    >>> info = {"system": "demo", "model_id": "0123", "exported": "2024-01-01T00:00:00",
    ...         "timbre_lobes_version": "0.1.0", "training_output_folder": "/runs/demo",
    ...         "data_folder": "corpus", "n_train_instruments": 4, "family_labels": ["low", "mid", "high"],
    ...         "sample_rate": 16000, "verification_threshold": 0.5,
    ...         "verification_threshold_origin": "a test", "validation": None, "test": {"EER": 12.5},
    ...         "files": ["README.md"]}
    >>> card = model_card(info, {}, "/models/demo")
    >>> "the 3 instrument families (low, mid, high)" in card, "NSynth's 11" in card
    (True, False)
    """
    val = info["validation"] or {}
    test = info["test"]
    families = info.get("family_labels") or FAMILIES
    lines = [
        f"# {info['system']}: musical-instrument timbre embeddings",
        "",
        f"Exported by timbre-lobes {info['timbre_lobes_version']} on {info['exported']} "
        f"from the training run in `{info['training_output_folder']}` (model id `{info['model_id']}`).",
        "",
        "## System",
        "",
        "Waveform -> front end -> global mean/variance normalisation -> embedding model -> "
        f"one embedding per sound; two {info.get('head_type') or 'cosine'} heads on the embedding "
        f"({_family_space(families)}; the {info['n_train_instruments']} training instruments)"
        + (
            "; a slot head giving mixtures a set of embeddings, one per source they may hold (scored by the best)"
            if "slot_head" in definitions
            else ""
        )
        + ". Definitions as trained:",
        "",
        "```yaml",
        *[definitions[k].rstrip() for k in definitions],
        "```",
        "",
        "## Data",
        "",
        f"Trained on the NSynth-format corpus `{info['data_folder']}` "
        f"({info['n_train_instruments']} training instruments), {info['sample_rate']} Hz mono notes. "
        "Validation and test instruments are not among the training instruments."
        + (
            f" The evaluation embedded each note's first {info['eval_seconds']:g} s (`eval_seconds`; by "
            "default the span of a note the training crops come from), and `embed`, `verify` and `classify` "
            f"embed a sound's first {info['eval_seconds']:g} s after its leading silence (`max_seconds`)."
            if info.get("eval_seconds")
            else (
                " The evaluation embedded whole notes (`eval_seconds: null`), and `embed`, `verify` and `classify` "
                "embed whole sounds after their leading silence (`max_seconds: null`)."
                if "eval_seconds" in info
                else ""
            )
        ),
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
    lines += _settings_section(info)
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
        *(
            [f"python -m timbre_lobes detect mixture.wav --enrol note1.wav note2.wav --model {final_folder}"]
            if (info.get("settings") or {}).get("detection_threshold") is not None
            else []
        ),
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
