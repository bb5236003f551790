"""Checkpointing that survives a kill at any moment, and checks what it resumes from."""

import json
import os
import shutil
import time

import speechbrain as sb
import yaml

from timbre_lobes.atomic import atomic_open


class CommitLastCheckpointer(sb.utils.checkpoints.Checkpointer):
    """SpeechBrain's ``Checkpointer``, writing a checkpoint's ``CKPT.yaml`` after its parameter files.

    ``CKPT.yaml`` is what makes a ``CKPT+...`` folder a checkpoint. SpeechBrain writes
    it first, so a run killed while saving leaves a checkpoint with missing or cut-short
    files, which every later run tries to resume from and fails on. Here it is written
    last (atomically), so an unfinished folder is ignored on resume, and removed at the
    next save.
    """

    def save_checkpoint(self, *args, **kwargs):
        self._pending_meta = None
        checkpoint = super().save_checkpoint(*args, **kwargs)
        if self._pending_meta is not None:  # main process: every parameter file is written
            path, meta = self._pending_meta
            with atomic_open(path) as handle:
                handle.write("# yamllint disable\n" + yaml.dump(meta))
            for folder in self.checkpoints_dir.glob(sb.utils.checkpoints.CKPT_PREFIX + "*"):
                if folder.is_dir() and not (folder / sb.utils.checkpoints.METAFNAME).exists():
                    shutil.rmtree(folder)
        # Other processes list the checkpoints next (to prune them): wait for the commit.
        sb.utils.distributed.ddp_barrier()
        return checkpoint

    def _save_checkpoint_metafile(self, fpath, meta_to_include={}, end_of_epoch=True):  # noqa: B006 (SpeechBrain's signature)
        meta = {"unixtime": time.time(), "end-of-epoch": end_of_epoch, **meta_to_include}
        self._pending_meta = (fpath, meta)
        return meta


@sb.utils.checkpoints.register_checkpoint_hooks
class RunClock:
    """Wall-clock seconds of a training run, summed over the processes that resumed it.

    Add it to the checkpointer (``optional_load=True`` keeps older checkpoints loadable):
    each checkpoint stores the run's seconds so far, and a process that resumes from it
    adds them to its own. Only a recovery that comes before this process's first save
    or load counts. The later load of the best checkpoint for the test (an earlier
    epoch's time) leaves the clock alone. Time spent after the last checkpoint of a
    killed process is not counted.

    Example
    -------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "clock.ckpt"
    >>> path.write_text("100.0")
    5
    >>> clock = RunClock()
    >>> clock._recover(path, end_of_epoch=True)
    >>> clock.earlier_seconds, 100.0 <= clock.seconds < 101.0
    (100.0, True)
    >>> path.write_text("7.0")  # a second load (the best checkpoint) is ignored
    3
    >>> clock._recover(path, end_of_epoch=True)
    >>> clock.earlier_seconds
    100.0
    """

    def __init__(self):
        self.started = time.time()
        self.earlier_seconds = 0.0
        self._settled = False  # True once this process has saved or loaded

    @property
    def seconds(self):
        """Seconds of the run: earlier processes' plus this one's."""
        return self.earlier_seconds + time.time() - self.started

    @sb.utils.checkpoints.mark_as_saver
    def _save(self, path):
        self._settled = True
        with atomic_open(path) as handle:
            handle.write(repr(self.seconds))

    @sb.utils.checkpoints.mark_as_loader
    def _recover(self, path, end_of_epoch):
        del end_of_epoch  # the seconds count the same either way
        if not self._settled:
            with open(path) as handle:
                self.earlier_seconds = float(handle.read())
        self._settled = True


class RunFolderError(RuntimeError):
    """An output folder's checkpoints were made with other data, labels or model sizes."""


@sb.utils.checkpoints.register_checkpoint_hooks
class RunSignature:
    """What a run's checkpoints were made with: its data folder, data options, label spaces and module sizes.

    Saved with every checkpoint (add it to the checkpointer with
    ``optional_load=True``). :meth:`check` compares a folder's latest checkpoint
    with the current run before anything is loaded, so that re-running a command
    into an output folder with other data (``--data_folder``), another label space
    or other sizes (``--emb_dim``) stops with a message that says what differs,
    instead of a raw ``KeyError`` in the data loader or a size-mismatch traceback.

    Arguments
    ---------
    data_folder : str
        The corpus the run trains on.
    labels : dict
        name -> list of labels (e.g. the instrument and family label spaces).
    modules : dict
        name -> torch module whose parameter shapes must match the checkpoint's.
    options : dict, optional
        name -> description of a data setting that changes which notes are trained
        on (e.g. ``{"closed set": "closed_set_share 0.1, closed_set_seed 1234"}``).
        A setting that is off is left out; one missing from a checkpoint's
        signature (a checkpoint older than the setting) was off there.

    Example
    -------
    >>> a = RunSignature("/data/a", {"family": ["bass", "reed"]}, {}, {"closed set": "share 0.1"})
    >>> b = RunSignature("/data/b", {"family": ["bass", "organ"]}, {})
    >>> for line in a.differences(b.state):
    ...     print(line)
    data folder: /data/b in the checkpoints, /data/a now
    closed set: off in the checkpoints, share 0.1 now
    family labels: 2 in the checkpoints, 2 now (1 of the checkpoints' not among today's: 'organ')
    """

    def __init__(self, data_folder, labels, modules, options=None):
        self.modules = modules
        self.state = {
            "data_folder": os.path.abspath(data_folder),
            "options": dict(options or {}),
            "labels": {name: list(values) for name, values in labels.items()},
        }

    @sb.utils.checkpoints.mark_as_saver
    def _save(self, path):
        with atomic_open(path) as handle:
            json.dump(self.state, handle)

    @sb.utils.checkpoints.mark_as_loader
    def _recover(self, path, end_of_epoch):
        del path, end_of_epoch  # checked before recovery, by check()

    def differences(self, saved):
        """Lines saying how ``saved`` (a checkpoint's state) differs from this run's."""
        lines = []
        if saved.get("data_folder") != self.state["data_folder"]:
            lines.append(f"data folder: {saved.get('data_folder')} in the checkpoints, {self.state['data_folder']} now")
        before_options, now_options = saved.get("options") or {}, self.state["options"]
        for name in sorted(set(before_options) | set(now_options)):
            before, now = before_options.get(name, "off"), now_options.get(name, "off")
            if before != now:
                lines.append(f"{name}: {before} in the checkpoints, {now} now")
        for name, now in self.state["labels"].items():
            before = saved.get("labels", {}).get(name)
            if before is not None and before != now:
                gone = [label for label in before if label not in now]
                detail = f" ({len(gone)} of the checkpoints' not among today's: {', '.join(map(repr, gone[:5]))})"
                lines.append(
                    f"{name} labels: {len(before)} in the checkpoints, {len(now)} now" + (detail if gone else "")
                )
        return lines

    def shape_differences(self, checkpoint):
        """Lines naming the parameters whose shapes differ between ``checkpoint``'s files and the modules."""
        import torch

        lines = []
        for name, module in self.modules.items():
            path = checkpoint.paramfiles.get(name)
            if path is None or not list(module.parameters()):
                continue
            try:
                saved = torch.load(path, map_location="cpu", weights_only=False)
            except Exception:  # an unreadable file is SpeechBrain's loader's to report
                continue
            if not isinstance(saved, dict):
                continue
            for key, value in module.state_dict().items():
                old = saved.get(key)
                if hasattr(old, "shape") and tuple(old.shape) != tuple(value.shape):
                    lines.append(f"{name}.{key}: {tuple(old.shape)} in the checkpoints, {tuple(value.shape)} now")
        return lines

    def check(self, checkpointer, start_over=False):
        """Raises :class:`RunFolderError` if the latest checkpoint does not fit this run.

        With ``start_over`` the folder's checkpoints are deleted instead (the run
        then starts from scratch).

        Raises
        ------
        RunFolderError
            Names each difference and the two ways out.
        """
        checkpoint = checkpointer.find_checkpoint()
        if checkpoint is None:
            return
        lines = self.shape_differences(checkpoint)
        path = checkpoint.paramfiles.get("run_signature")
        if path is not None and os.path.isfile(path):
            with open(path) as handle:
                lines = self.differences(json.load(handle)) + lines
        if not lines:
            return
        if start_over:
            for folder in checkpointer.checkpoints_dir.glob(sb.utils.checkpoints.CKPT_PREFIX + "*"):
                shutil.rmtree(folder)
            return
        raise RunFolderError(
            f"the checkpoints in {checkpointer.checkpoints_dir} were made with other settings:\n  "
            + "\n  ".join(lines[:12])
            + ("\n  ..." if len(lines) > 12 else "")
            + "\nNothing was trained. Use a new --output_folder, or pass --start_over=True to delete "
            "these checkpoints and train from scratch in this folder."
        )
