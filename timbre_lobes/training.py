"""The training core every recipe shares: the Brain, the data pipeline, label spaces and the run's end.

A recipe's ``train.py`` glues these to a dataset, as SpeechBrain's speaker recipes do::

    hparams, run_opts = training.load_run(argv)           # YAML + overrides, experiment folder
    prepare_nsynth(...)                                   # manifests + label files in save_folder
    datasets, labels = training.dataio_prep(hparams, data_folder)
    brain = training.make_brain(hparams, run_opts, labels, data_folder)  # heads sized by the label files
    brain.fit(..., train_loader_kwargs=training.train_loader_options(hparams, datasets["train"]))
    training.evaluate(brain, datasets, hparams["eval_dataloader_opts"])
    training.finish_run(brain, hparams, labels, data_folder, datasets["valid"])

The manifests (``train.csv``, ``valid.csv``, ``test.csv`` in ``save_folder``, and
``closed_set.csv`` where the preparation holds out a closed set) have the columns
``ID, duration, wav, instrument, family`` (more are ignored), with wav
paths under ``$data_root``; ``save_folder`` also holds the label files
:data:`INSTRUMENT_LABELS` and :data:`FAMILY_LABELS` (SpeechBrain
``CategoricalEncoder`` files written by the preparation), which size the
instrument and family heads.
"""

import math
import os
import sys
import time

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from ruamel.yaml import YAML
from speechbrain.dataio.dataio import read_audio
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.dataio.sampler import ReproducibleRandomSampler
from speechbrain.utils.distributed import if_main_process, run_on_main

from timbre_lobes import scripts
from timbre_lobes.checkpoints import RunClock, RunFolderError, RunSignature
from timbre_lobes.data import augment, manifest
from timbre_lobes.data.closed_set import CLOSED_SET, DEFAULT_SEED
from timbre_lobes.lobes.embed import EMBEDDING_MODULES, embed_unpadded, embed_waveforms
from timbre_lobes.scoring import evaluation
from timbre_lobes.scoring.verification import DEFAULT_PROTOCOL, read_trials
from timbre_lobes.scripts import TRAINING_INTERRUPTED
from timbre_lobes.serving.inference_yaml import yaml_tag

__all__ = [
    "RunFolderError",
    "SettingsError",
    "TimbreBrain",
    "dataio_prep",
    "evaluate",
    "finish_run",
    "load_overlay_run",
    "load_run",
    "make_brain",
    "train_loader_options",
]

#: Label files in ``save_folder`` (written by the preparation) and in an export.
INSTRUMENT_LABELS = "instrument_encoder.txt"
FAMILY_LABELS = "family_encoder.txt"

#: The heads defined as ``!name:`` in the YAML, sized here by their label files.
HEAD_LABELS = {"instrument_head": INSTRUMENT_LABELS, "family_head": FAMILY_LABELS}


class TimbreBrain(sb.core.Brain):
    """Dual-head embedding training; verification and family-ID evaluation.

    Training minimises instrument loss + ``family_weight`` x family loss on
    crops of the training notes; each validation pass scores open-set
    verification (EER) on the validation instruments, which selects the
    checkpoint kept as best; the test pass stores its figures in ``test_stats``.
    A test pass with ``eval_split`` set to ``"closed_set"`` (:func:`evaluate`) scores
    held-out notes of the training instruments instead, with the instrument head
    too, into ``closed_set_stats`` (None: no closed set), which the test log line
    then shows beside the open-set figures.
    Each callable in ``epoch_end_hooks`` is called as ``hook(brain, epoch, valid_stats)``
    after an epoch's validation and checkpoint (e.g. the RWC recipe's per-epoch test F1).
    """

    epoch_end_hooks = ()
    eval_split = "test"
    closed_set_stats = None
    closed_set_rows = None

    def _wrap_distributed(self):
        """SpeechBrain's DDP wrapping, without SyncBatchNorm when the processes run on CPU.

        SpeechBrain converts every BatchNorm to ``SyncBatchNorm``, which only runs on
        GPUs; with ``--device=cpu`` (gloo) each process keeps its BatchNorm and DDP
        broadcasts rank 0's running statistics at every forward pass.
        """
        if not (self.distributed_launch and self.device_type == "cpu"):
            return super()._wrap_distributed()
        for name, module in self.modules.items():
            if any(p.requires_grad for p in module.parameters()):
                self.modules[name] = torch.nn.parallel.DistributedDataParallel(
                    module, find_unused_parameters=self.find_unused_parameters
                )

    def compute_forward(self, batch, stage):
        """Waveforms -> (embeddings [B, 1, E], instrument scores or None, family scores [B, 1, F], lens)."""
        batch = batch.to(self.device)
        wavs, lens = batch.sig
        if stage == sb.Stage.TRAIN:
            wavs, lens = self.label_preserving_augment(wavs, lens)
        if stage == sb.Stage.TRAIN and self.hparams.wav_augment is not None:
            wavs, lens = self.hparams.wav_augment(wavs, lens)
        if stage == sb.Stage.TRAIN:
            embeddings = embed_waveforms(self.modules, wavs, lens, epoch=self.hparams.epoch_counter.current)
        else:  # whole notes of any lengths: each embedded at its own length, never with a neighbour's padding
            embeddings = embed_unpadded(self.modules, wavs, lens)
        family_out = self.modules.family_head(embeddings)
        # Validation and test instruments are unseen: only the family head applies there.
        # The closed set's are training instruments, which the instrument head names.
        instrument_out = None
        if stage == sb.Stage.TRAIN or self._closed_set_pass(stage):
            instrument_out = self.modules.instrument_head(embeddings)
        return embeddings, instrument_out, family_out, lens

    def label_preserving_augment(self, wavs, lens):
        """Training waveforms through the YAML's ``audio_effects``, ``noise_floor``, ``quantisation`` (each optional).

        One output per input, labels unchanged: for every Brain that trains on these recipes' YAMLs.
        """
        for name in ("audio_effects", "noise_floor", "quantisation"):
            augmenter = getattr(self.hparams, name, None)
            if augmenter is not None:
                wavs, lens = augmenter(wavs, lens)
        return wavs, lens

    def _closed_set_pass(self, stage):
        return stage == sb.Stage.TEST and self.eval_split == CLOSED_SET

    def compute_objectives(self, predictions, batch, stage):
        """Instrument loss + family_weight * family loss (family loss alone off training)."""
        embeddings, instrument_out, family_out, lens = predictions
        families = batch.family_encoded.data
        if stage == sb.Stage.TRAIN:
            instruments = batch.instrument_encoded.data
            if self.hparams.wav_augment is not None:
                instruments = self.hparams.wav_augment.replicate_labels(instruments)
                families = self.hparams.wav_augment.replicate_labels(families)
            instrument_loss = self.hparams.instrument_loss(instrument_out, instruments)
            family_loss = self.hparams.family_loss(family_out, families)
            return instrument_loss + self.hparams.family_weight * family_loss
        instruments = batch.instrument_encoded.data if instrument_out is not None else None
        self.collected.add(batch.id, embeddings, family_out, families, instrument_out, instruments)
        return self.hparams.family_loss(family_out, families)

    def on_stage_start(self, stage, epoch=None):
        """Starts collecting embeddings and family predictions off training."""
        self.collected = evaluation.Collector()
        self.stage_start = time.time()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Scores the epoch, anneals the learning rate, logs and checkpoints."""
        if stage == sb.Stage.TRAIN:
            self.train_stats = {"loss": stage_loss}
            return
        if self._closed_set_pass(stage):  # no trials: the heads' own predictions
            self.closed_set_stats = evaluation.closed_set_scores(self.collected, self.family_labels)
            self.closed_set_rows = evaluation.closed_set_predictions(
                self.collected, self.instrument_labels, self.family_labels
            )
            return
        split = "valid" if stage == sb.Stage.VALID else "test"
        enrolments, trials = read_trials(
            os.path.join(self.hparams.save_folder, f"{split}_enrolments.txt"),
            os.path.join(self.hparams.save_folder, f"{split}_trials.txt"),
        )
        # Impostor cohort of the s-norm: the training instruments' prototypes, the instrument head's rows.
        cohort = head_prototypes(self.modules["instrument_head"])
        stats = evaluation.evaluate_collected(
            self.collected, enrolments, trials, labels=self.family_labels, cohort=cohort
        )
        stats["loss"] = stage_loss
        if stage == sb.Stage.VALID:
            old_lr, new_lr = self.hparams.lr_annealing(epoch)
            sb.nnet.schedulers.update_learning_rate(self.optimizer, new_lr)
            log_stats = {k: stats[k] for k in ("loss", "EER", "minDCF", "family_micro_f1")}
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "lr": old_lr},
                train_stats=self.train_stats,
                valid_stats=log_stats,
            )
            self.checkpointer.save_and_keep_only(
                meta={"EER": stats["EER"], "family_micro_f1": stats["family_micro_f1"]},
                min_keys=["EER"],
                keep_recent=True,
            )
            for hook in self.epoch_end_hooks:
                hook(self, epoch, stats)
        else:
            test_stats = {
                k: stats[k] for k in ("EER", "minDCF", "EER_snorm", "family_micro_f1", "family_macro_f1") if k in stats
            }
            # The closed set (training instruments' held-out notes) beside the open set (unseen instruments).
            closed = self.closed_set_stats
            if closed is None:
                test_stats["closed set"] = "off"
            else:
                for key in ("instrument_accuracy", "instrument_top5_accuracy", "family_micro_f1", "family_macro_f1"):
                    test_stats[f"closed_set_{key}"] = closed[key]
            self.hparams.train_logger.log_stats(
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current}, test_stats=test_stats
            )
            self.test_stats = stats


# ---------------------------------------------------------------------------
# Set-up
# ---------------------------------------------------------------------------


class SettingsError(ValueError):
    """The run's settings cannot be used: a pretrained model built otherwise, overlays that name each other.

    Every training recipe reports it in one line (:func:`run_script`), before anything is
    prepared where it can be found that early.
    """


def run_script(
    main, argv, script, errors=(RunFolderError, SettingsError, FileNotFoundError), interrupted=TRAINING_INTERRUPTED
):
    """:func:`timbre_lobes.scripts.run_script` for a training recipe: a run folder that does not fit, or settings
    it cannot use (:class:`SettingsError`), are errors too."""
    return scripts.run_script(main, argv, script, errors=errors, interrupted=interrupted)


def load_run(argv, check_data=None):
    """Parses a recipe's command line, checks its inputs, loads its YAML and creates the experiment folder.

    Arguments
    ---------
    argv : list of str
        ``[hparams.yaml, --key=value ...]`` as SpeechBrain's ``parse_arguments`` reads them.
    check_data : callable, optional
        ``check_data(data_folder)`` raises when the recipe cannot read the data folder
        (e.g. :func:`timbre_lobes.data.nsynth.check_corpus`); see :func:`check_inputs`.

    Returns
    -------
    hparams : dict
        The loaded hyperparameters.
    run_opts : dict
        SpeechBrain's run options (device, distributed launch ...).

    Raises
    ------
    FileNotFoundError
        The data folder or the pretrained model is missing or unusable (nothing was created).
    timbre_lobes.checkpoints.RunFolderError
        The output folder's checkpoints come from another corpus or other sizes (nothing was written).
    SettingsError
        The pretrained model's front end or encoder was built with other settings
        (:func:`check_pretrained_settings`; only the run's YAML and logs were written).
    """
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    # Under torchrun (RANK/LOCAL_RANK set) join the process group before anything
    # runs on the main process only; a no-op for a single process.
    sb.utils.distributed.ddp_init_group(run_opts)
    # Before the YAML builds its objects: its checkpointer alone creates the save folder.
    check_inputs(hparams_file, overrides, check_data)
    with open(hparams_file) as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    eval_samples(hparams)  # a bad eval_seconds stops the run before anything is written
    # Before anything is written into the output folder: do its checkpoints fit this run?
    check_output_folder(hparams)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    check_pretrained_settings(hparams)  # before anything is prepared
    return hparams, run_opts


def load_overlay_run(argv, check_data=None, default_data_key="standin_folder"):
    """Like :func:`load_run`, for an overlay YAML naming its system YAML (``system_hparams``).

    The system YAML (e.g. ``hparams/transMel.yaml``) is loaded with the overlay's keys on
    top, then the command line's ``--key=value``, so one overlay serves every system
    (the RWC and polyphonic recipes' YAMLs are overlays). An overlay may itself sit on
    another (``base_overlay: hparams/poly_transMel.yaml``): that one's keys come first,
    this one's and the command line's on top.

    As there, the inputs are checked before anything is created
    (:func:`check_inputs`), and the output folder's checkpoints before
    anything is written into it (:func:`check_output_folder`).

    Arguments
    ---------
    argv : list of str
        ``[overlay.yaml, --key=value ...]``; ``--system_hparams=...`` picks another system YAML.
    check_data : callable, optional
        ``check_data(data_folder)`` raises on a data folder the recipe cannot read.
    default_data_key : str
        The key of the corpus used when no ``data_folder`` is given.

    Returns
    -------
    hparams : dict
    run_opts : dict

    Raises
    ------
    FileNotFoundError
        The overlay names no ``system_hparams``, that file is missing, or the data
        folder or pretrained model is missing or unusable (nothing was created).
    timbre_lobes.checkpoints.RunFolderError
        The output folder's checkpoints come from another corpus or other sizes (nothing was written).
    SettingsError
        The pretrained model's front end or encoder was built with other settings
        (:func:`check_pretrained_settings`; only the run's YAML and logs were written).
    """
    overlay_file, run_opts, overrides = sb.parse_arguments(argv)
    sb.utils.distributed.ddp_init_group(run_opts)
    with open(overlay_file) as handle:
        overlay_text = handle.read()
    merged = YAML().load(overlay_text) or {}
    _merge(merged, (YAML().load(overrides) or {}) if overrides else {})
    seen = [os.path.abspath(overlay_file)]
    while merged.get("base_overlay"):  # an overlay on another overlay (poly_slots.yaml on poly_transMel.yaml)
        base_file = merged.pop("base_overlay")
        if not os.path.isfile(base_file):
            raise FileNotFoundError(f"{overlay_file}: base_overlay {base_file!r} is not a YAML file")
        if os.path.abspath(base_file) in seen:
            raise SettingsError(f"{overlay_file}: the overlays name each other in a circle ({base_file})")
        seen.append(os.path.abspath(base_file))
        with open(base_file) as handle:
            base = YAML().load(handle) or {}
        _merge(base, merged)
        merged = base
    merged.pop("base_overlay", None)
    system_file = merged.pop("system_hparams", None)
    if not system_file or not os.path.isfile(system_file):
        raise FileNotFoundError(f"{overlay_file}: system_hparams {system_file!r} is not a system YAML file")
    check_inputs(system_file, merged, check_data)  # before the YAML's checkpointer creates a folder
    with open(system_file) as handle:
        hparams = load_hyperpyyaml(handle, merged, overrides_must_match=False)
    eval_samples(hparams)
    check_output_folder(hparams, hparams["data_folder"] or hparams[default_data_key])
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"], hyperparams_to_save=system_file, overrides=merged
    )
    check_pretrained_settings(hparams)  # before anything is prepared
    hparams["system_hparams"] = system_file
    return hparams, run_opts


def _merge(base, overrides):
    """Merges ``overrides`` into ``base`` in place, mappings key by key (``--sampler="{seconds: 1.0}"``
    changes one key of the YAML's ``sampler``, as hyperpyyaml's own overrides do)."""
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def yaml_settings(hparams_file, overrides=None):
    """A YAML's values with its references and ``overrides`` resolved, but no object built: nothing is created.

    Values made by a tag (``!new:``, ``!name:``, ``!apply:`` ...) stay unbuilt
    ruamel nodes; plain values (paths, numbers) are what the run will see.

    Example
    -------
    >>> import io
    >>> text = io.StringIO("root: results\\nsave_folder: !ref <root>/save\\nmodel: !new:torch.nn.Linear [2, 3]\\n")
    >>> yaml_settings(text, "root: /tmp/run")["save_folder"]
    '/tmp/run/save'
    """
    import copy

    from hyperpyyaml import resolve_references
    from ruamel.yaml import YAML

    if not isinstance(overrides, (str, type(None))):
        overrides = copy.deepcopy(overrides)  # resolve_references may resolve nested nodes in place
    if isinstance(hparams_file, (str, os.PathLike)):
        with open(hparams_file) as handle:
            stream = resolve_references(handle, overrides)
    else:
        stream = resolve_references(hparams_file, overrides)
    return YAML().load(stream) or {}


def check_inputs(hparams_file, overrides=None, check_data=None):
    """Checks a run's data folder and pretrained model before anything is built or written.

    A recipe given a missing or unusable input stops here with a one-line error
    and leaves no experiment folder behind. The data folder (when one is given;
    an empty one means the recipe's default corpus) goes to ``check_data``, or
    must at least exist; ``pretrained_model`` (when given) must be a whole
    export (:func:`timbre_lobes.serving.inference.check_model_folder`), unless
    the output folder already holds checkpoints that a resumed run continues from.

    Arguments
    ---------
    hparams_file : str
        The run's YAML.
    overrides : str or dict, optional
        Its overrides, as :func:`hyperpyyaml.load_hyperpyyaml` takes them.
    check_data : callable, optional
        ``check_data(data_folder)``: raises on a folder the recipe cannot read.

    Returns
    -------
    dict
        The YAML's plain values (:func:`yaml_settings`).

    Raises
    ------
    FileNotFoundError
        The data folder or the pretrained model is missing or incomplete; the
        message names the path and what to give instead.
    SettingsError
        ``eval_seconds``, ``crop_seconds`` or ``crop_max_start`` is not a number of seconds it can be.
    """
    from timbre_lobes.data.nsynth import DataFolderError

    settings = yaml_settings(hparams_file, overrides)
    check_crop_settings(settings)
    if not yaml_tag(settings.get("eval_seconds")):  # a plain value (the YAMLs' default is computed)
        check_eval_seconds(settings.get("eval_seconds"))
    data_folder = settings.get("data_folder")
    if isinstance(data_folder, str) and data_folder:
        if check_data is not None:
            check_data(data_folder)
        elif not os.path.isdir(data_folder):
            raise DataFolderError(f"data folder {data_folder!r} does not exist: give --data_folder an existing folder")
    pretrained = settings.get("pretrained_model")
    resumed = _has_checkpoint(settings.get("save_folder")) and not settings.get("start_over")
    if isinstance(pretrained, str) and pretrained and not resumed:
        from timbre_lobes.serving.inference import check_model_folder

        try:
            check_model_folder(pretrained)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"pretrained_model: {err}") from None
    return settings


def _has_checkpoint(save_folder):
    """Whether ``save_folder`` holds a committed SpeechBrain checkpoint (a ``CKPT+*/CKPT.yaml``)."""
    if not isinstance(save_folder, str) or not os.path.isdir(save_folder):
        return False
    prefix, meta = sb.utils.checkpoints.CKPT_PREFIX, sb.utils.checkpoints.METAFNAME
    return any(
        name.startswith(prefix) and os.path.isfile(os.path.join(save_folder, name, meta))
        for name in os.listdir(save_folder)
    )


def check_output_folder(hparams, data_folder=None):
    """Stops before preparation when the output folder's checkpoints were made with another corpus or sizes.

    Compares the latest checkpoint with what the YAML defines before the data
    are known: the data folder and every module but the heads (whose sizes come
    from the data; :func:`make_brain` checks those and the label spaces after
    preparation). With ``start_over`` the checkpoints are deleted instead.

    Arguments
    ---------
    hparams : dict
        The loaded YAML.
    data_folder : str, optional
        The corpus the run will train on; default ``data_folder``, else ``default_corpus_folder``.

    Raises
    ------
    timbre_lobes.checkpoints.RunFolderError
        Names each difference and the two ways out.
    """
    checkpointer = hparams["checkpointer"]
    if data_folder is None:
        data_folder = hparams.get("data_folder") or hparams.get("default_corpus_folder") or ""
    modules = {k: v for k, v in checkpointer.recoverables.items() if isinstance(v, torch.nn.Module)}
    signature = RunSignature(data_folder, {}, modules, data_options(hparams))
    if hparams.get("start_over"):
        run_on_main(signature.check, args=[checkpointer], kwargs={"start_over": True})
    else:
        signature.check(checkpointer)


def data_options(hparams):
    """The settings besides the data folder that decide which notes a run trains on (:class:`RunSignature`'s options).

    The closed set: its share and seed when ``closed_set_share`` is set (a
    checkpoint made with another share trained on other notes).

    Example
    -------
    >>> data_options({"closed_set_share": 0.1, "closed_set_seed": 7}), data_options({"closed_set_share": 0})
    ({'closed set': 'closed_set_share 0.1, closed_set_seed 7'}, {})
    """
    closed = closed_set_of(hparams)
    if not closed["closed_set_share"]:
        return {}
    return {"closed set": ", ".join(f"{key} {value}" for key, value in closed.items())}


def closed_set_of(hparams):
    """A run's closed-set settings, as the preparation takes them (a YAML without them holds no closed set out)."""
    return {
        "closed_set_share": hparams.get("closed_set_share") or 0,
        "closed_set_seed": hparams.get("closed_set_seed", DEFAULT_SEED),
    }


def protocol_of(hparams):
    """The verification protocol settings of a run's hparams (:data:`DEFAULT_PROTOCOL`'s keys)."""
    return {key: hparams.get(key, value) for key, value in DEFAULT_PROTOCOL.items()}


def nsynth_prepare_options(hparams, data_folder):
    """The keyword arguments of ``recipes/NSynth/nsynth_prepare.prepare_nsynth`` for this run.

    Every recipe that prepares an NSynth-format corpus (NSynth, Polyphonic) prepares it alike.
    """
    return {
        "data_folder": data_folder,
        "save_folder": hparams["save_folder"],
        "skip_prep": hparams["skip_prep"],
        "sample_rate": hparams["sample_rate"],
        "protocol": protocol_of(hparams),
        **closed_set_of(hparams),
    }


def resolve_data_folder(hparams):
    """The user's data folder, or the default rendered corpus (rendered on first use)."""
    if hparams["data_folder"]:
        return hparams["data_folder"]
    from timbre_lobes.render import ensure_default_corpus

    folder = hparams["default_corpus_folder"]
    print(f"No --data_folder given: using the rendered corpus in {folder} (rendering it if needed).")
    run_on_main(ensure_default_corpus, args=[folder])
    return folder


def load_label_encoder(path):
    """A SpeechBrain label file as a ``CategoricalEncoder``.

    Raises
    ------
    FileNotFoundError
        The file is missing (the data preparation writes it).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"label file {path} is missing: the data preparation writes it (run without skip_prep)")
    encoder = CategoricalEncoder()
    encoder.load(path)
    return encoder


def dataio_prep(hparams, data_root):
    """Builds the train/valid/test datasets and reads the label spaces of ``save_folder``.

    Training notes give random crops of ``crop_seconds`` starting in
    ``[0, crop_max_start]`` s (``None``: anywhere in the note), read from disk crop by crop (or, with
    ``stitch_notes > 1``, crops of several silence-trimmed notes of the same
    instrument stitched together, the paper's augmentation); validation, test
    and closed-set notes are read over their first ``eval_seconds`` (the YAMLs:
    ``crop_max_start + crop_seconds``, the span training crops come from;
    absent or ``None``: whole notes).

    Arguments
    ---------
    hparams : dict
        ``save_folder``, ``sample_rate``, ``crop_seconds``, ``crop_max_start``,
        ``stitch_notes``, ``stitch_top_db``; optional ``eval_seconds``.
    data_root : str
        What ``$data_root`` stands for in the manifests' wav paths.

    Returns
    -------
    datasets : dict
        split -> ``DynamicItemDataset`` with outputs ``id, sig, family_encoded``
        (+ ``instrument_encoded`` for train and the closed set). The closed set
        (``closed_set``, read whole like the test notes) is there only when
        ``save_folder`` holds a ``closed_set.csv`` with notes.
    labels : dict
        ``{"instrument": CategoricalEncoder, "family": CategoricalEncoder}``.
    """
    save_folder = hparams["save_folder"]
    labels = {
        "instrument": load_label_encoder(os.path.join(save_folder, INSTRUMENT_LABELS)),
        "family": load_label_encoder(os.path.join(save_folder, FAMILY_LABELS)),
    }
    datasets = {}
    for split in ("train", "valid", "test"):
        datasets[split] = sb.dataio.dataset.DynamicItemDataset.from_csv(
            csv_path=os.path.join(save_folder, f"{split}.csv"),
            replacements={"data_root": data_root},
        )
    closed_csv = os.path.join(save_folder, f"{CLOSED_SET}.csv")
    if _has_rows(closed_csv):  # SpeechBrain cannot read a manifest of no rows
        datasets[CLOSED_SET] = sb.dataio.dataset.DynamicItemDataset.from_csv(
            closed_csv, replacements={"data_root": data_root}
        )
    whole = [datasets[s] for s in ("valid", "test", CLOSED_SET) if s in datasets]
    labelled = [datasets[s] for s in ("train", CLOSED_SET) if s in datasets]
    sample_rate = hparams["sample_rate"]
    crop = int(hparams["crop_seconds"] * sample_rate)
    max_start = None if hparams["crop_max_start"] is None else int(hparams["crop_max_start"] * sample_rate)
    stitcher = None
    if hparams["stitch_notes"] > 1:
        stitcher = augment.NoteStitcher(
            datasets["train"], hparams["stitch_notes"], hparams["stitch_top_db"], sample_rate
        )

    @sb.utils.data_pipeline.takes("wav", "duration", "instrument")
    @sb.utils.data_pipeline.provides("sig")
    def train_audio(wav, duration, instrument):
        if stitcher is not None:
            return augment.random_crop(stitcher(wav, instrument), crop, max_start)
        # Read only the crop from disk: notes are streamed, never held in memory.
        total = int(round(float(duration) * sample_rate))
        if total <= crop:
            return read_audio(wav)
        start = augment.crop_start(total, crop, max_start)
        return read_audio({"file": wav, "start": start, "stop": start + crop})

    eval_stop = eval_samples(hparams)
    print(f"Validation, test and closed-set evaluation embed {augment.span_words(hparams.get('eval_seconds'))}")

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def full_audio(wav):
        if eval_stop is None:
            return read_audio(wav)
        return read_audio({"file": wav, "start": 0, "stop": eval_stop})

    @sb.utils.data_pipeline.takes("family")
    @sb.utils.data_pipeline.provides("family_encoded")
    def family_pipeline(family):
        return labels["family"].encode_sequence_torch([family])

    @sb.utils.data_pipeline.takes("instrument")
    @sb.utils.data_pipeline.provides("instrument_encoded")
    def instrument_pipeline(instrument):
        return labels["instrument"].encode_sequence_torch([instrument])

    sb.dataio.dataset.add_dynamic_item([datasets["train"]], train_audio)
    sb.dataio.dataset.add_dynamic_item(whole, full_audio)
    sb.dataio.dataset.add_dynamic_item(list(datasets.values()), family_pipeline)
    sb.dataio.dataset.add_dynamic_item(labelled, instrument_pipeline)
    sb.dataio.dataset.set_output_keys(labelled, ["id", "sig", "instrument_encoded", "family_encoded"])
    sb.dataio.dataset.set_output_keys([datasets["valid"], datasets["test"]], ["id", "sig", "family_encoded"])
    return datasets, labels


def eval_samples(hparams):
    """Samples of each note that validation, test and closed-set evaluation embed; None = whole notes.

    ``eval_seconds`` (s) times ``sample_rate``. The CPU budget's models learn from
    1.5 s crops of a note's first 2.5 s and judge a whole 4 s note worse than its
    first 2.5 s: its last 1.5 s (the end of the sustain, the release after 3 s) is
    a part of the note they never heard (docs/experiments, finding 17). Notes
    shorter than the span are read whole.

    Raises
    ------
    SettingsError
        ``eval_seconds`` is not a positive number.
    """
    seconds = check_eval_seconds(hparams.get("eval_seconds"))
    return None if seconds is None else int(round(seconds * hparams["sample_rate"]))


def _is_seconds(value, zero=False):
    """Whether ``value`` is a finite number (not a bool) above 0 (``zero``: 0 or more)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return value >= 0 if zero else value > 0


def check_eval_seconds(seconds):
    """``seconds`` if it is a usable ``eval_seconds`` (a finite positive number, or None); SettingsError otherwise."""
    if seconds is not None and not _is_seconds(seconds):
        raise SettingsError(f"eval_seconds must be a positive number of seconds or null (whole notes), got {seconds!r}")
    return seconds


def check_crop_settings(settings):
    """Refuses a ``crop_seconds`` that is not a positive number or a ``crop_max_start`` that is not 0 or more / null.

    Only plain values are checked (a computed YAML value is a tagged node until the YAML is loaded).

    Raises
    ------
    SettingsError
        Naming the key and the value.
    """
    crop, max_start = settings.get("crop_seconds"), settings.get("crop_max_start")
    if "crop_seconds" in settings and not yaml_tag(crop) and not _is_seconds(crop):
        raise SettingsError(f"crop_seconds must be a positive number of seconds, got {crop!r}")
    if max_start is not None and not yaml_tag(max_start) and not _is_seconds(max_start, zero=True):
        raise SettingsError(
            "crop_max_start must be a number of seconds of 0 or more, or null (anywhere in the note), "
            f"got {max_start!r}"
        )


def train_loader_options(hparams, train_set):
    """The training loader's options: ``train_dataloader_opts``, with a fixed epoch size when asked.

    With ``train_crops_per_epoch`` set (a positive number of crops), an epoch is
    that many crops whatever the number of training notes: successive random
    orders of every training note (SpeechBrain's ``ReproducibleRandomSampler``,
    seeded by ``seed`` and reshuffled each epoch; under DDP SpeechBrain shares it
    out among the processes). Corpora of different sizes then train for the same
    number of steps, as ``benchmarks/instrument_curve.py`` needs. ``null`` (the
    YAMLs' default) keeps one pass over the notes per epoch.

    Arguments
    ---------
    hparams : dict
        ``train_dataloader_opts``, ``seed`` and, optionally, ``train_crops_per_epoch``.
    train_set : torch.utils.data.Dataset
        The training notes.

    Returns
    -------
    dict
        Keyword arguments for ``Brain.fit``'s ``train_loader_kwargs``.

    Raises
    ------
    ValueError
        ``train_crops_per_epoch`` that is not a positive whole number.
    """
    options = dict(hparams["train_dataloader_opts"])
    crops = hparams.get("train_crops_per_epoch")
    if crops is None:
        return options
    if isinstance(crops, bool) or not isinstance(crops, int) or crops < 1:
        raise ValueError(f"train_crops_per_epoch must be a positive whole number of crops or null, not {crops!r}")
    options.pop("shuffle", None)  # a sampler and shuffle exclude each other
    options["sampler"] = ReproducibleRandomSampler(train_set, seed=hparams["seed"], num_samples=crops)
    return options


def _has_rows(csv_path):
    """Whether a manifest exists and holds a row below its header."""
    if not os.path.isfile(csv_path):
        return False
    with open(csv_path) as handle:
        next(handle, None)  # the header
        return any(line.strip() for line in handle)


def add_heads(hparams, labels):
    """Builds the instrument and family heads, sized by the label spaces, into ``modules`` and the checkpointer.

    The YAML defines each head as ``!name:`` (a partial without ``out_neurons``);
    a head given as a module (``!new:``/``!apply:``, e.g. an older YAML's family
    head) is kept and its size checked.

    Raises
    ------
    ValueError
        A head built by the YAML has another size than its label space.
    """
    # The family head first: that is the order in which older runs drew the heads' initial weights.
    sizes = {"family_head": len(labels["family"]), "instrument_head": len(labels["instrument"])}
    for key, size in sizes.items():
        head = hparams[key]
        if not isinstance(head, torch.nn.Module):
            head = head(out_neurons=size)
        rows = _head_rows(head)
        if rows is not None and rows != size:
            raise ValueError(
                f"{key} has {rows} outputs but {HEAD_LABELS[key]} lists {size} labels; "
                f"define {key} with !name: so that its size comes from the data"
            )
        hparams[key] = head
        hparams["modules"][key] = head
        if key not in hparams["checkpointer"].recoverables:
            hparams["checkpointer"].add_recoverable(key, head)


def head_prototypes(head):
    """A classification head's class prototypes: its weight rows, [n_classes, emb_dim] on the CPU (None if none)."""
    head = getattr(head, "module", head)  # DDP
    weight = getattr(head, "weight", None)
    if weight is None:
        weight = next((m.weight for m in head.modules() if isinstance(m, torch.nn.Linear)), None)
    return None if weight is None else weight.detach().float().cpu()


def _head_rows(head):
    prototypes = head_prototypes(head)
    return None if prototypes is None else int(prototypes.shape[0])


def initialise_from_pretrained(hparams):
    """Initialises front end, normalisation and encoder from an exported model (``pretrained_model``).

    Does nothing when ``pretrained_model`` is empty, or when the run already has
    checkpoints (a resumed run continues from its own). With ``freeze_frontend``
    the front end's parameters stop learning. Uses the YAML's ``pretrainer``
    (SpeechBrain's ``Pretrainer``), reading the export's files in place.

    Raises
    ------
    FileNotFoundError
        The export folder or one of its checkpoints is missing.
    SettingsError
        A pretrained module's sizes differ from this YAML's (the message names
        the tensors).
    """
    from speechbrain.utils.fetching import LocalStrategy

    folder = hparams.get("pretrained_model")
    if hparams.get("freeze_frontend"):
        for param in hparams["compute_features"].parameters():
            param.requires_grad_(False)
    if not folder or hparams["checkpointer"].find_checkpoint() is not None:
        return False
    pretrainer = hparams["pretrainer"]
    for name, path in pretrainer.paths.items():
        if not os.path.isfile(path):
            raise FileNotFoundError(f"pretrained_model {folder}: {os.path.basename(path)} is missing ({name})")
    for name in EMBEDDING_MODULES:
        _check_shapes(name, hparams[name], pretrainer.paths.get(name), folder)
    pretrainer.collect_files(local_strategy=LocalStrategy.NO_LINK)
    pretrainer.load_collected()
    loaded = list(pretrainer.loadables)
    if hparams.get("pretrained_heads"):
        loaded += load_pretrained_heads(hparams, folder)
    print(f"Initialised {', '.join(loaded)} from {folder}")
    return True


def load_pretrained_heads(hparams, folder):
    """Loads the export's instrument and family heads into this run's, when their label spaces are the same.

    For training on with the same classes (the polyphonic recipe starts its presence heads
    from the single-note model trained on the same corpus). Returns the heads loaded.

    Raises
    ------
    ValueError
        A head's labels differ from this run's (another corpus or split): the message says
        which, since such a head's rows would name other classes.
    """
    loaded = []
    for key, labels_file in HEAD_LABELS.items():
        mine = load_label_encoder(os.path.join(hparams["save_folder"], labels_file))
        theirs = load_label_encoder(os.path.join(folder, labels_file))
        if [mine.ind2lab[i] for i in range(len(mine))] != [theirs.ind2lab[i] for i in range(len(theirs))]:
            raise SettingsError(
                f"pretrained_heads: {folder}'s {labels_file} lists other labels than this run's "
                f"({len(theirs)} vs {len(mine)}): its {key} cannot be reused; set pretrained_heads: False"
            )
        path = os.path.join(folder, f"{key}.ckpt")
        _check_shapes(key, hparams[key], path, folder)
        hparams[key].load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        loaded.append(key)
    return loaded


def check_pretrained_settings(hparams):
    """Raises :class:`SettingsError` when ``pretrained_model``'s front end or encoder was built with other settings.

    A hop, a filter range or a floor has no tensor whose shape would differ, so
    :func:`_check_shapes` cannot see it; the export's ``hyperparams.yaml`` can (compared
    with the run's resolved YAML in ``output_folder``). :func:`load_run` and
    :func:`load_overlay_run` call it once the run's YAML is written, before any recipe
    prepares or draws anything. No ``pretrained_model``: nothing to check.
    """
    from timbre_lobes.serving.inference_yaml import HPARAMS_FILE, definition_differences

    folder = hparams.get("pretrained_model")
    if not folder:
        return
    run_file = os.path.join(hparams["output_folder"], HPARAMS_FILE)
    if not os.path.isfile(run_file) or not os.path.isfile(os.path.join(folder, HPARAMS_FILE)):
        return
    found = definition_differences(run_file, folder, ("compute_features", "embedding_model"))
    if found:
        raise SettingsError(
            f"pretrained_model {folder} was built with other settings than this YAML's ({'; '.join(found[:4])}). "
            "Use the settings it was trained with (its hyperparams.yaml lists them; e.g. --hop_ms, --n_filters)."
        )


def _check_shapes(name, module, path, folder):
    """Raises a clear ValueError when a checkpoint's tensors do not fit ``module``."""
    if path is None or not hasattr(module, "state_dict"):
        return
    saved = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(saved, dict):
        return
    mine = module.state_dict()
    differ = [
        f"{key} {tuple(value.shape)} here vs {tuple(saved[key].shape)} there"
        for key, value in mine.items()
        if key in saved and hasattr(saved[key], "shape") and tuple(saved[key].shape) != tuple(value.shape)
    ]
    missing = [key for key in mine if key not in saved]
    if differ or missing:
        detail = "; ".join(differ[:4] + [f"{k} missing there" for k in missing[:4]])
        raise SettingsError(
            f"pretrained_model {folder}: its {name} has other sizes than this YAML's ({detail}). "
            "Use the sizes it was trained with (its hyperparams.yaml lists them)."
        )


def make_brain(hparams, run_opts, labels, data_folder, brain_class=None):
    """The recipe's Brain: heads sized by ``labels``, pretrained initialisation, the run clock.

    ``brain_class`` is :class:`TimbreBrain` (the default) or a subclass (e.g. the
    polyphonic recipe's :class:`timbre_lobes.polyphonic.training.PolyphonicBrain`).

    Checkpoints already in ``save_folder`` must come from the same data, label
    spaces and sizes (:class:`timbre_lobes.checkpoints.RunSignature`); else the
    run stops before training, or with ``start_over`` deletes them.

    Raises
    ------
    timbre_lobes.checkpoints.RunFolderError
        The folder's checkpoints were made with other data, labels or sizes.

    Returns
    -------
    brain : TimbreBrain
    clock : timbre_lobes.checkpoints.RunClock
        The run's wall time, summed over the processes that resume it.
    """
    add_heads(hparams, labels)
    checkpointer = hparams["checkpointer"]
    modules = {k: v for k, v in checkpointer.recoverables.items() if isinstance(v, torch.nn.Module)}
    label_lists = {name: [enc.ind2lab[i] for i in range(len(enc))] for name, enc in labels.items()}
    signature = RunSignature(data_folder, label_lists, modules, data_options(hparams))
    if hparams.get("start_over"):
        run_on_main(signature.check, args=[checkpointer], kwargs={"start_over": True})
    else:  # read-only: every process stops alike
        signature.check(checkpointer)
    checkpointer.add_recoverable("run_signature", signature, optional_load=True)
    initialise_from_pretrained(hparams)
    # Older checkpoints lack the clock.
    clock = RunClock()
    hparams["checkpointer"].add_recoverable("wall_clock", clock, optional_load=True)
    brain = (brain_class or TimbreBrain)(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.family_labels = label_lists["family"]
    brain.instrument_labels = label_lists["instrument"]
    brain.run_clock = clock
    return brain


def evaluate(brain, datasets, loader_kwargs, min_key="EER"):
    """The run's evaluation with its best checkpoint: the closed set (when there is one), then the test split.

    The closed set (``datasets["closed_set"]``: held-out notes of the training
    instruments) goes through the same test pass as the test split, every note
    embedded at its own length, and is scored by both heads
    (:func:`timbre_lobes.scoring.evaluation.closed_set_scores`) into
    ``brain.closed_set_stats``; without one that stays None. The test split (the
    open set: unseen instruments) follows, into ``brain.test_stats``, and its
    log line shows both scenarios' figures.

    Arguments
    ---------
    brain : TimbreBrain
    datasets : dict
        :func:`dataio_prep`'s datasets.
    loader_kwargs : dict
        The evaluation data loaders' options (``eval_dataloader_opts``).
    min_key : str
        The checkpoint metadata key whose lowest value marks the best checkpoint.
    """
    brain.closed_set_stats = brain.closed_set_rows = None
    closed = datasets.get(CLOSED_SET)
    if closed is not None:
        brain.eval_split = CLOSED_SET
        try:
            brain.evaluate(closed, min_key=min_key, test_loader_kwargs=dict(loader_kwargs))
        finally:
            brain.eval_split = "test"
    brain.evaluate(datasets["test"], min_key=min_key, test_loader_kwargs=dict(loader_kwargs))


#: Per-note predictions on the closed set, in the output folder.
CLOSED_SET_PREDICTIONS = "closed_set_predictions.csv"


def finish_run(brain, hparams, labels, data_folder, valid_set=None, **extra):
    """Writes ``results.json`` and the confusion picture, prints the table and exports the model.

    Call it after :func:`evaluate` (or ``brain.evaluate(..., min_key=...)``: the
    brain then holds the best checkpoint). ``results.json`` gets the closed set's
    figures under ``closed_set`` (null without a closed set), and
    :data:`CLOSED_SET_PREDICTIONS` its per-note predictions. Only the main
    process writes.

    Returns
    -------
    dict or None
        The results record (None on other processes).
    """
    from timbre_lobes.serving.export import export_model

    if not if_main_process():
        return None
    clock = brain.run_clock
    closed = brain.closed_set_stats
    if closed is not None:
        settings = closed_set_of(hparams)
        closed = {"share": settings["closed_set_share"], "seed": settings["closed_set_seed"], **closed}
    results = evaluation.results_record(
        brain.test_stats,
        system=hparams["system"],
        seed=hparams["seed"],
        data_folder=data_folder,
        n_train_instruments=len(labels["instrument"]),
        wall_seconds=clock.seconds,
        wall_seconds_earlier_processes=round(clock.earlier_seconds, 1),
        device=str(brain.device),
        closed_set=closed,
        eval_seconds=hparams.get("eval_seconds"),
        **extra,
    )
    evaluation.save_results(results, hparams["output_folder"])
    predictions = os.path.join(hparams["output_folder"], CLOSED_SET_PREDICTIONS)
    if brain.closed_set_rows:
        manifest.write_manifest(brain.closed_set_rows, predictions, list(brain.closed_set_rows[0]))
    elif os.path.exists(predictions):  # an earlier run's, with a closed set
        os.remove(predictions)
    print(evaluation.format_results_table([results]))
    # The inference model folder (timbre_lobes.serving.inference.TimbreEncoder loads it).
    export_folder = hparams.get("export_folder") or os.path.join(hparams["output_folder"], "model")
    export_model(
        hparams,
        brain,
        labels["instrument"],
        results,
        export_folder,
        valid_set=valid_set,
        family_encoder=labels["family"],
    )
    print(f"Exported the model to {export_folder}")
    print(evaluation.format_scenarios(results))
    sys.stdout.flush()
    return results
