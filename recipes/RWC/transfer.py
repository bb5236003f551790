"""What the RWC transfer recipe adds to the training core: an overlay YAML, per-epoch test F1, a lower
learning rate for the pretrained modules.

* ``hparams/RWC/*.yaml`` are overlays of a system YAML, loaded by
  :func:`timbre_lobes.training.load_overlay_run` (the polyphonic recipe's YAMLs are overlays too).
* :class:`TestF1Log`: a :attr:`timbre_lobes.training.TimbreBrain.epoch_end_hooks` entry that scores
  category identification on the test split after every epoch and rewrites a CSV (the curves of
  the paper's Figure 2).
* :func:`scaled_optimizer`: the optimizer with the pretrained modules' learning rate multiplied by
  ``pretrained_lr_scale`` (kept through the learning-rate annealing).

These are general (any transfer recipe could use them); they live here until a second recipe needs
them in the package.
"""

import csv
import os
import re

import speechbrain as sb
import torch
from ruamel.yaml import YAML

from timbre_lobes.atomic import atomic_open
from timbre_lobes.scoring.evaluation import family_scores

F1_FIELDS = [
    "system",
    "transfer",
    "epoch",
    "family_micro_f1",
    "family_macro_f1",
    "unseen_variation_micro_f1",
    "unseen_variation_macro_f1",
    "n_test_notes",
    "valid_EER",
]


class TestF1Log:
    """Scores the family (category) head on the test split after each epoch; rewrites ``csv_path``.

    Two figures per epoch: over all test notes, and over the notes of held-out variations only
    (``held_out == "variation"`` in the manifest), the honest transfer figure.

    Arguments
    ---------
    test_set : speechbrain.dataio.dataset.DynamicItemDataset
        The test split, as :func:`timbre_lobes.training.dataio_prep` builds it.
    manifest : str
        Its CSV (for the ``held_out`` column).
    csv_path : str
        Where the table goes (written atomically, one row per epoch; a resumed run keeps the rows
        of the epochs it does not redo).
    loader_kwargs : dict
        DataLoader options (batch size ...).
    system, transfer : str
        Written in every row.
    """

    def __init__(self, test_set, manifest, csv_path, loader_kwargs, system, transfer):
        self.test_set = test_set
        self.csv_path = csv_path
        self.loader_kwargs = loader_kwargs
        self.system, self.transfer = system, transfer
        with open(manifest, newline="") as handle:
            self.unseen = {row["ID"] for row in csv.DictReader(handle) if row.get("held_out") == "variation"}

    def __call__(self, brain, epoch, valid_stats):
        """The hook: ``brain`` just validated ``epoch`` (modules in eval mode, no gradients)."""
        true, pred, ids = [], [], []
        with torch.no_grad():
            for batch in brain.make_dataloader(self.test_set, stage=sb.Stage.TEST, **self.loader_kwargs):
                _, _, family_out, _ = brain.compute_forward(batch, sb.Stage.TEST)
                pred += family_out.squeeze(1).argmax(dim=-1).cpu().tolist()
                true += batch.family_encoded.data.reshape(-1).cpu().tolist()
                ids += list(batch.id)
        labels = brain.family_labels
        every = family_scores(true, pred, labels=labels)
        kept = [k for k, note_id in enumerate(ids) if note_id in self.unseen]
        unseen = family_scores([true[k] for k in kept], [pred[k] for k in kept], labels=labels) if kept else {}
        row = {
            "system": self.system,
            "transfer": self.transfer,
            "epoch": epoch,
            "family_micro_f1": round(every["family_micro_f1"], 4),
            "family_macro_f1": round(every["family_macro_f1"], 4),
            "unseen_variation_micro_f1": round(unseen["family_micro_f1"], 4) if kept else "",
            "unseen_variation_macro_f1": round(unseen["family_macro_f1"], 4) if kept else "",
            "n_test_notes": len(ids),
            "valid_EER": round(float(valid_stats["EER"]), 3),
        }
        if sb.utils.distributed.if_main_process():
            rows = [r for r in read_f1_log(self.csv_path) if int(r["epoch"]) < epoch] + [row]
            with atomic_open(self.csv_path, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=F1_FIELDS)
                writer.writeheader()
                writer.writerows(rows)
        brain.modules.eval()


def read_f1_log(path):
    """The rows of a :class:`TestF1Log` CSV (empty when it does not exist)."""
    if not os.path.isfile(path):
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def scaled_optimizer(opt_class, pretrained_modules, scale):
    """``opt_class`` with the parameters of ``pretrained_modules`` learning at ``scale`` x the rate.

    Arguments
    ---------
    opt_class : callable
        The YAML's ``opt_class`` (a partial taking the parameters).
    pretrained_modules : list of torch.nn.Module
        Modules initialised from the pretrained model.
    scale : float
        Their learning-rate factor (e.g. 0.1).

    Returns
    -------
    callable
        Takes the parameters like ``opt_class``; each step runs at ``lr * scale`` for the
        pretrained group, whatever learning rate the annealing set.

    Example
    -------
    >>> import functools
    >>> old, new = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    >>> make = scaled_optimizer(functools.partial(torch.optim.SGD, lr=1.0), [old], 0.1)
    >>> opt = make(list(old.parameters()) + list(new.parameters()))
    >>> [group["lr_scale"] for group in opt.param_groups]
    [0.1, 1.0]
    """
    pretrained = {id(p) for module in pretrained_modules for p in module.parameters()}

    def build(params):
        params = list(params)
        groups = [
            {"params": [p for p in params if id(p) in pretrained], "lr_scale": float(scale)},
            {"params": [p for p in params if id(p) not in pretrained], "lr_scale": 1.0},
        ]
        optimizer = opt_class([g for g in groups if g["params"]])
        step = optimizer.step

        def scaled_step(*args, **kwargs):
            rates = [group["lr"] for group in optimizer.param_groups]
            for group in optimizer.param_groups:
                group["lr"] = group["lr"] * group["lr_scale"]
            try:
                return step(*args, **kwargs)
            finally:
                for group, rate in zip(optimizer.param_groups, rates):
                    group["lr"] = rate

        optimizer.step = scaled_step
        return optimizer

    return build


def size_overrides(hparams_file, keys):
    """``--key=value`` overrides of those ``keys`` that a run's resolved ``hyperparams.yaml`` sets to plain values.

    Gives a scratch run the sizes of the pretrained model its fine-tuned twin starts from.
    """
    with open(hparams_file) as handle:
        tree = YAML(typ="safe", pure=True).load(_untagged(handle.read()))
    found = []
    for key in keys:
        if key in tree:
            value = tree[key]
            text = "null" if value is None else str(value)
            found.append(f"--{key}={text.replace(' ', '')}")
    return found


def _untagged(text):
    """The YAML text with its ``!new:``/``!name:``/``!ref`` ... tags removed (plain values only are read)."""
    return re.sub(r"!\S+", "", text)
