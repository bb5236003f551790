#!/usr/bin/env python3
"""Trains an instrument-embedding system on NSynth-format data and evaluates it.

    python recipes/NSynth/train.py hparams/transMel.yaml [--data_folder=/path/to/nsynth]

The YAML picks the system (front end, encoder, heads, margins); this script is
the same for all of them. Training learns the instrument and family heads
jointly; each epoch ends with open-set instrument verification (EER) on the
validation instruments, which selects the checkpoint kept as best. The run ends
with the test evaluation: verification EER/minDCF on the test instruments and
family identification micro/macro-F1, printed and saved to results.json.

Multi-process training: ``torchrun --nproc_per_node=N recipes/NSynth/train.py <yaml>``.
"""

import os
import random
import sys
import time

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.dataio import read_audio
from speechbrain.utils.distributed import if_main_process, run_on_main

from timbre_lobes.checkpoints import RunClock
from timbre_lobes.data import augment
from timbre_lobes.scoring import evaluation
from timbre_lobes.scoring.verification import read_trials
from timbre_lobes.serving.export import export_model

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nsynth_prepare import prepare_nsynth  # noqa: E402


class TimbreBrain(sb.core.Brain):
    """Dual-head embedding training; verification and family-ID evaluation."""

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
        """Waveforms -> (embeddings [B, 1, E], instrument cosines or None, family cosines, lens)."""
        batch = batch.to(self.device)
        wavs, lens = batch.sig
        if stage == sb.Stage.TRAIN and self.hparams.wav_augment is not None:
            wavs, lens = self.hparams.wav_augment(wavs, lens)
        feats = self.modules.compute_features(wavs)
        feats = self.modules.mean_var_norm(feats, lens, epoch=self.hparams.epoch_counter.current)
        embeddings = self.modules.embedding_model(feats, lens)
        family_out = self.modules.family_head(embeddings)
        # Validation and test instruments are unseen: only the family head applies there.
        instrument_out = self.modules.instrument_head(embeddings) if stage == sb.Stage.TRAIN else None
        return embeddings, instrument_out, family_out, lens

    def compute_objectives(self, predictions, batch, stage):
        """Instrument loss + family_weight * family loss (family loss alone off training)."""
        embeddings, instrument_out, family_out, lens = predictions
        families = batch.family_label.data
        if stage == sb.Stage.TRAIN:
            instruments = batch.instrument_encoded.data
            if self.hparams.wav_augment is not None:
                instruments = self.hparams.wav_augment.replicate_labels(instruments)
                families = self.hparams.wav_augment.replicate_labels(families)
            instrument_loss = self.hparams.instrument_loss(instrument_out, instruments)
            family_loss = self.hparams.family_loss(family_out, families)
            return instrument_loss + self.hparams.family_weight * family_loss
        self.collected.add(batch.id, embeddings, family_out, families)
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
        split = "valid" if stage == sb.Stage.VALID else "test"
        enrolments, trials = read_trials(
            os.path.join(self.hparams.save_folder, f"{split}_enrolments.txt"),
            os.path.join(self.hparams.save_folder, f"{split}_trials.txt"),
        )
        stats = evaluation.evaluate_collected(self.collected, enrolments, trials)
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
        else:
            self.hparams.train_logger.log_stats(
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current},
                test_stats={k: stats[k] for k in ("EER", "minDCF", "family_micro_f1", "family_macro_f1")},
            )
            self.test_stats = stats


def dataio_prep(hparams, data_root):
    """Builds the train/valid/test datasets and the instrument label encoder."""
    datasets = {}
    for split in ("train", "valid", "test"):
        datasets[split] = sb.dataio.dataset.DynamicItemDataset.from_csv(
            csv_path=os.path.join(hparams["save_folder"], f"{split}.csv"),
            replacements={"data_root": data_root},
        )
    sample_rate = hparams["sample_rate"]
    crop = int(hparams["crop_seconds"] * sample_rate)
    max_start = int(hparams["crop_max_start"] * sample_rate)
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
        start = random.randint(0, min(total - crop, max_start))
        return read_audio({"file": wav, "start": start, "stop": start + crop})

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def full_audio(wav):
        return read_audio(wav)

    @sb.utils.data_pipeline.takes("family_id")
    @sb.utils.data_pipeline.provides("family_label")
    def family_pipeline(family_id):
        return torch.LongTensor([int(family_id)])

    instrument_encoder = sb.dataio.encoder.CategoricalEncoder()

    @sb.utils.data_pipeline.takes("instrument")
    @sb.utils.data_pipeline.provides("instrument_encoded")
    def instrument_pipeline(instrument):
        return instrument_encoder.encode_sequence_torch([instrument])

    sb.dataio.dataset.add_dynamic_item([datasets["train"]], train_audio)
    sb.dataio.dataset.add_dynamic_item([datasets["valid"], datasets["test"]], full_audio)
    sb.dataio.dataset.add_dynamic_item(list(datasets.values()), family_pipeline)
    sb.dataio.dataset.add_dynamic_item([datasets["train"]], instrument_pipeline)

    encoder_file = os.path.join(hparams["save_folder"], "instrument_encoder.txt")
    run_on_main(write_instrument_encoder, args=[encoder_file, datasets["train"]])
    instrument_encoder.load(encoder_file)
    sb.dataio.dataset.set_output_keys([datasets["train"]], ["id", "sig", "instrument_encoded", "family_label"])
    sb.dataio.dataset.set_output_keys([datasets["valid"], datasets["test"]], ["id", "sig", "family_label"])
    return datasets, instrument_encoder


def write_instrument_encoder(path, train_set):
    """Writes the training instruments' label file unless it exists, atomically.

    A file cut short by a kill would give a later run fewer instruments than its
    checkpoints' instrument head.
    """
    if os.path.isfile(path):
        return
    encoder = sb.dataio.encoder.CategoricalEncoder()
    encoder.update_from_didataset(train_set, "instrument")
    encoder.save(path + ".tmp")
    os.replace(path + ".tmp", path)


def resolve_data_folder(hparams):
    """The user's data folder, or the default rendered corpus (rendered on first use)."""
    if hparams["data_folder"]:
        return hparams["data_folder"]
    from timbre_lobes.render.corpus import ensure_default_corpus

    folder = hparams["default_corpus_folder"]
    print(f"No --data_folder given: using the SoundFont corpus in {folder} (rendering it if needed).")
    run_on_main(ensure_default_corpus, args=[folder])
    return folder


def main(argv):
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    # Under torchrun (RANK/LOCAL_RANK set) join the process group before anything
    # runs on the main process only; a no-op for a single process.
    sb.utils.distributed.ddp_init_group(run_opts)
    with open(hparams_file) as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    data_folder = resolve_data_folder(hparams)
    run_on_main(
        prepare_nsynth,
        kwargs={
            "data_folder": data_folder,
            "save_folder": hparams["save_folder"],
            "skip_prep": hparams["skip_prep"],
            "sample_rate": hparams["sample_rate"],
            "enrol_notes": hparams["enrol_notes"],
            "enrolments_per_instrument": hparams["enrolments_per_instrument"],
            "targets_per_note": hparams["targets_per_note"],
            "nontargets_per_note": hparams["nontargets_per_note"],
            "trial_seed": hparams["trial_seed"],
        },
    )
    datasets, instrument_encoder = dataio_prep(hparams, data_folder)

    # The instrument head is sized by the training instruments, known only now.
    instrument_head = hparams["instrument_head"](out_neurons=len(instrument_encoder))
    hparams["modules"]["instrument_head"] = instrument_head
    hparams["checkpointer"].add_recoverable("instrument_head", instrument_head)
    # The run's wall time, summed over the processes that resume it (older checkpoints lack it).
    clock = RunClock()
    hparams["checkpointer"].add_recoverable("wall_clock", clock, optional_load=True)

    brain = TimbreBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.fit(
        brain.hparams.epoch_counter,
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=hparams["train_dataloader_opts"],
        valid_loader_kwargs=hparams["eval_dataloader_opts"],
    )
    brain.evaluate(datasets["test"], min_key="EER", test_loader_kwargs=hparams["eval_dataloader_opts"])
    if if_main_process():
        results = evaluation.results_record(
            brain.test_stats,
            system=hparams["system"],
            seed=hparams["seed"],
            data_folder=data_folder,
            n_train_instruments=len(instrument_encoder),
            wall_seconds=clock.seconds,
            wall_seconds_earlier_processes=round(clock.earlier_seconds, 1),
            device=str(brain.device),
        )
        evaluation.save_results(results, hparams["output_folder"])
        print(evaluation.format_results_table([results]))
        # The inference model folder (timbre_lobes.serving.inference.TimbreEncoder loads it).
        export_folder = hparams.get("export_folder") or os.path.join(hparams["output_folder"], "model")
        export_model(hparams, brain, instrument_encoder, results, export_folder, valid_set=datasets["valid"])
        print(f"Exported the model to {export_folder}")
    return brain


if __name__ == "__main__":
    main(sys.argv[1:])
