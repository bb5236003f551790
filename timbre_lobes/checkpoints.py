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

    def _save_checkpoint_metafile(self, fpath, meta_to_include={}, end_of_epoch=True):
        meta = {"unixtime": time.time(), "end-of-epoch": end_of_epoch, **meta_to_include}
        self._pending_meta = (fpath, meta)
        return meta
