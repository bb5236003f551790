"""Checkpointing that survives a kill at any moment."""

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
