"""Figures of a model's current weights on the validation notes (the export's threshold and scores).

:func:`pair_scores` scores note-vs-note pairs (the setting of ``verify A B``);
:func:`validation_stats` embeds the validation notes once and gives the
pairs' EER and threshold, and the run's enrolment-vs-note validation figures.
"""

import os

import numpy as np
import torch

from timbre_lobes.lobes.embed import embed_unpadded
from timbre_lobes.scoring.verification import eer_and_min_dcf, read_trials

#: The batch keys of the family index, newest first (the training core's, then train.py's former one).
FAMILY_KEYS = ("family_encoded", "family_label")


def validation_stats(hparams, modules, device, valid_set, max_pairs=200_000, seed=0):
    """Scores the modules' current weights on the validation notes.

    ``modules`` maps names to (unwrapped) modules; nothing here communicates
    with other processes, so it can run on the main process alone. The modules'
    training/eval modes are restored afterwards.

    Arguments
    ---------
    hparams : dict
        ``eval_dataloader_opts`` (its ``batch_size``, default 16) and
        ``save_folder`` (where the run's ``valid_enrolments.txt`` and
        ``valid_trials.txt`` are looked for).
    modules : Mapping[str, torch.nn.Module]
        ``compute_features``, ``mean_var_norm``, ``embedding_model`` and,
        optionally, ``family_head``.
    device : str or torch.device
        Where the batches go (the modules' device).
    valid_set : speechbrain.dataio.dataset.DynamicItemDataset
        Validation notes: outputs ``id``, ``sig`` (and the family index as
        ``family_encoded`` or ``family_label``, for the family F1), and the
        static ``instrument`` key.
    max_pairs : int
        At most this many note pairs are scored (see :func:`pair_scores`).
    seed : int
        Seed of the pair draw.

    Returns
    -------
    dict
        ``n_notes``, ``n_pairs``, ``pair_EER`` (%) / ``pair_threshold``
        (cosine) of note-vs-note pairs, and, when the run's validation trial
        lists exist in ``save_folder``, ``EER`` (%), ``minDCF``,
        ``eer_threshold`` of those enrolment-vs-note trials and the family
        micro/macro-F1: figures that reproduce the selected checkpoint's
        validation scores.
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
            emb = embed_unpadded(modules, wavs, lens)  # each note at its own length, as evaluation does
            family_out = modules["family_head"](emb) if "family_head" in modules else emb[..., :1]
            key = next((k for k in FAMILY_KEYS if hasattr(batch, k)), None)
            labels = getattr(batch, key).data if key else torch.zeros(len(batch.id))
            collector.add(batch.id, emb, family_out, labels)
            n_families = family_out.shape[-1]
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
        # The family head's rows by index (any label space, not only NSynth's 11 families).
        names = [str(i) for i in range(n_families)] if collector.family_true else None
        full = evaluation.evaluate_collected(collector, enrolments, trials, **({"labels": names} if names else {}))
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
    max_pairs : int
        Above this many pairs (``n * (n - 1) / 2``), pairs are drawn at random.
    seed : int
        Seed of that draw.

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
