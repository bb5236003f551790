"""Open-set instrument verification: the trial protocol, cosine scoring, EER and minDCF.

The protocol follows Shi et al. (2022): an instrument is *enrolled* by the mean
embedding of a few randomly drawn notes; every other note of the evaluation set
is a test segment, scored by cosine similarity against enrolments of its own
instrument (target trials) and of other instruments (non-target trials). Trials
are drawn once with a fixed seed and written to disk, so runs are comparable.

Files, in SpeechBrain's verification-list spirit:

* ``enrolments.txt``: ``<enrol_id> <note_id> <note_id> ...`` per line.
* ``trials.txt``: ``<label> <enrol_id> <test_note_id>`` per line, label 1 = target.
"""

import collections
import random

import numpy as np
import torch
from sklearn.metrics import roc_curve

from timbre_lobes.atomic import atomic_open
from timbre_lobes.scoring.protocol import DEFAULT_PROTOCOL


def protocol_trials(note_instruments, protocol=None):
    """:func:`make_trials` with a protocol dict (keys of :data:`DEFAULT_PROTOCOL`; missing keys take its values).

    Raises
    ------
    ValueError
        ``protocol`` has a key that is not a protocol setting.
    """
    protocol = {**DEFAULT_PROTOCOL, **(protocol or {})}
    unknown = sorted(set(protocol) - set(DEFAULT_PROTOCOL))
    if unknown:
        raise ValueError(f"unknown verification protocol settings {unknown}; known: {sorted(DEFAULT_PROTOCOL)}")
    return make_trials(
        note_instruments,
        protocol["enrol_notes"],
        protocol["enrolments_per_instrument"],
        protocol["targets_per_note"],
        protocol["nontargets_per_note"],
        protocol["trial_seed"],
    )


def make_trials(
    note_instruments,
    enrol_notes=DEFAULT_PROTOCOL["enrol_notes"],
    enrolments_per_instrument=DEFAULT_PROTOCOL["enrolments_per_instrument"],
    targets_per_note=DEFAULT_PROTOCOL["targets_per_note"],
    nontargets_per_note=DEFAULT_PROTOCOL["nontargets_per_note"],
    seed=DEFAULT_PROTOCOL["trial_seed"],
):
    """Draws enrolments and trials for an evaluation set.

    Each instrument with more than ``enrol_notes`` notes gets
    ``enrolments_per_instrument`` enrolments of ``enrol_notes`` distinct random
    notes. Each note then gives up to ``targets_per_note`` target trials against
    its own instrument's enrolments that do not contain it, and
    ``nontargets_per_note`` non-target trials against random enrolments of other
    instruments.

    Arguments
    ---------
    note_instruments : dict
        note id -> instrument label.
    enrol_notes, enrolments_per_instrument, targets_per_note, nontargets_per_note : int
        Protocol sizes (the paper: 5 notes per enrolment, about 20 + 20 trials per note).
    seed : int
        Seed of the draw; the same inputs and seed give the same trials.

    Returns
    -------
    enrolments : dict
        enrol id -> list of note ids.
    trials : list of (int, str, str)
        (label, enrol id, test note id).

    Example
    -------
    >>> notes = {f"{i}-{n}": i for i in "abc" for n in range(8)}
    >>> enrol, trials = make_trials(notes, enrolments_per_instrument=4, targets_per_note=3)
    >>> len(enrol)
    12
    >>> all((t[1].split("#")[0] == notes[t[2]]) == bool(t[0]) for t in trials)
    True
    """
    if enrol_notes < 1:
        raise ValueError("enrol_notes must be at least 1")
    rng = random.Random(seed)
    by_instrument = collections.defaultdict(list)
    for note_id in sorted(note_instruments):
        by_instrument[note_instruments[note_id]].append(note_id)
    eligible = sorted(i for i, notes in by_instrument.items() if len(notes) > enrol_notes)
    if len(eligible) < 2:
        raise ValueError(
            f"verification needs at least 2 instruments with more than {enrol_notes} notes; found {len(eligible)}"
        )
    enrolments = {}
    enrol_of = collections.defaultdict(list)
    for instrument in eligible:
        for k in range(enrolments_per_instrument):
            enrol_id = f"{instrument}#enrol{k:02d}"
            enrolments[enrol_id] = sorted(rng.sample(by_instrument[instrument], enrol_notes))
            enrol_of[instrument].append(enrol_id)
    trials = []
    for instrument in eligible:
        others = [e for other in eligible if other != instrument for e in enrol_of[other]]
        for note_id in by_instrument[instrument]:
            own = [e for e in enrol_of[instrument] if note_id not in enrolments[e]]
            for enrol_id in rng.sample(own, min(targets_per_note, len(own))):
                trials.append((1, enrol_id, note_id))
            for enrol_id in rng.sample(others, min(nontargets_per_note, len(others))):
                trials.append((0, enrol_id, note_id))
    return enrolments, trials


def write_trials(enrolments, trials, enrol_path, trials_path):
    """Writes enrolments and trials atomically in the formats of the module docstring."""
    with atomic_open(enrol_path) as handle:
        for enrol_id, notes in enrolments.items():
            handle.write(" ".join([enrol_id, *notes]) + "\n")
    with atomic_open(trials_path) as handle:
        for label, enrol_id, note_id in trials:
            handle.write(f"{label} {enrol_id} {note_id}\n")


def read_trials(enrol_path, trials_path):
    """Reads what :func:`write_trials` wrote; returns ``(enrolments, trials)``."""
    enrolments = {}
    with open(enrol_path) as handle:
        for line in handle:
            fields = line.split()
            if fields:
                enrolments[fields[0]] = fields[1:]
    trials = []
    with open(trials_path) as handle:
        for line in handle:
            fields = line.split()
            if fields:
                trials.append((int(fields[0]), fields[1], fields[2]))
    return enrolments, trials


def score_trials(embeddings, enrolments, trials, cohort=None, top_k=200):
    """Cosine scores of every trial, raw or adaptive-s-normalised.

    Arguments
    ---------
    embeddings : dict
        note id -> [emb_dim] tensor or array.
    enrolments : dict
        enrol id -> list of note ids; an enrolment's model is the mean of its
        notes' length-normalised embeddings.
    trials : list of (label, enrol id, note id)
    cohort : array-like, optional
        [n_cohort, emb_dim] embeddings of impostors (e.g. the training
        instruments); given, the scores are adaptive s-norm scores
        (:func:`adaptive_s_norm`).
    top_k : int
        Cohort size of the adaptive s-norm.

    Returns
    -------
    labels : np.ndarray
        [n_trials] 0/1.
    scores : np.ndarray
        [n_trials] cosine similarities (s-normalised with a cohort).
    """
    note_ids = sorted(embeddings)
    note_index = {n: i for i, n in enumerate(note_ids)}
    notes = torch.nn.functional.normalize(
        torch.stack([torch.as_tensor(embeddings[n]).float().flatten() for n in note_ids]), dim=1
    )
    enrol_ids = list(enrolments)
    enrol_index = {e: i for i, e in enumerate(enrol_ids)}
    members = [[note_index[n] for n in enrolments[e]] for e in enrol_ids]
    models = torch.stack([notes[idx].mean(dim=0) for idx in members])
    models = torch.nn.functional.normalize(models, dim=1)
    e_idx = torch.tensor([enrol_index[t[1]] for t in trials])
    n_idx = torch.tensor([note_index[t[2]] for t in trials])
    scores = (models[e_idx] * notes[n_idx]).sum(dim=1)
    labels = np.array([t[0] for t in trials], dtype=np.int64)
    if cohort is not None:
        scores = adaptive_s_norm(scores, models[e_idx], notes[n_idx], torch.as_tensor(np.asarray(cohort)), top_k)
    return labels, scores.numpy()


def adaptive_s_norm(scores, enrol, test, cohort, top_k=200):
    """Adaptive symmetric score normalisation (AS-norm), as speaker verification uses it.

    Each side's score is standardised with the mean and standard deviation of
    its ``top_k`` highest cosine scores against the cohort, and the two are
    averaged: ``0.5 * ((s - mu_e) / sd_e + (s - mu_t) / sd_t)``. A threshold on
    the normalised score then means about the same for every enrolment and test
    sound, whatever their recording conditions (Matejka et al., Interspeech
    2017; Cumani et al. 2011 for the symmetric s-norm).

    Arguments
    ---------
    scores : torch.Tensor
        [n] cosine scores of (enrol[i], test[i]).
    enrol, test : torch.Tensor
        [n, emb_dim] length-normalised embeddings of each trial's two sides.
    cohort : torch.Tensor
        [n_cohort, emb_dim] impostor embeddings (normalised here).
    top_k : int
        The highest-scoring cohort members used per side (all when fewer).

    Returns
    -------
    torch.Tensor
        [n] normalised scores.

    Example
    -------
    >>> g = torch.Generator().manual_seed(0)
    >>> e, t, c = (torch.nn.functional.normalize(torch.randn(n, 8, generator=g), dim=1) for n in (3, 3, 50))
    >>> adaptive_s_norm((e * t).sum(1), e, t, c, top_k=10).shape
    torch.Size([3])
    """
    cohort = torch.nn.functional.normalize(cohort.float(), dim=1)
    k = max(2, min(top_k, cohort.shape[0]))

    def stats(side):
        top = torch.topk(side.float() @ cohort.t(), k, dim=1).values
        return top.mean(dim=1), top.std(dim=1).clamp(min=1e-6)

    mu_e, sd_e = stats(enrol)
    mu_t, sd_t = stats(test)
    return 0.5 * ((scores - mu_e) / sd_e + (scores - mu_t) / sd_t)


def eer_and_min_dcf(labels, scores, p_target=0.01, c_miss=1.0, c_fa=1.0, sample_weight=None):
    """Equal error rate and minimum detection cost, from a ROC curve in O(n log n).

    SpeechBrain's ``EER``/``minDCF`` compare every score against every threshold
    (quadratic memory); tens of thousands of trials need the sorted version.

    ``sample_weight`` ([n_trials], optional) counts each trial that many times
    (``sklearn.metrics.roc_curve``'s weights; the instrument bootstrap of
    :func:`timbre_lobes.scoring.evaluation.instrument_bootstrap` uses it).

    Returns
    -------
    dict
        ``eer`` (fraction), ``eer_threshold``, ``min_dcf``, ``min_dcf_threshold``.
        ``min_dcf`` is normalised by ``min(c_miss * p_target, c_fa * (1 - p_target))``
        as NIST and the speaker-recognition literature report it (1.0 = no better
        than always rejecting); SpeechBrain's ``minDCF`` returns it unnormalised.

    Example
    -------
    >>> stats = eer_and_min_dcf(np.array([1, 1, 0, 0]), np.array([0.9, 0.4, 0.5, 0.1]))
    >>> stats["eer"]
    0.5
    """
    labels = np.asarray(labels)
    counted = labels if sample_weight is None else labels[np.asarray(sample_weight) > 0]
    if counted.size == 0 or counted.min() == counted.max():
        raise ValueError("EER needs both target and non-target trials")
    fpr, tpr, thresholds = roc_curve(labels, scores, sample_weight=sample_weight)
    fnr = 1.0 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    eer = float((fnr[i] + fpr[i]) / 2.0)
    dcf = c_miss * fnr * p_target + c_fa * fpr * (1.0 - p_target)
    j = int(np.argmin(dcf))
    norm = min(c_miss * p_target, c_fa * (1.0 - p_target))
    return {
        "eer": eer,
        "eer_threshold": float(thresholds[i]),
        "min_dcf": float(dcf[j] / norm),
        "min_dcf_threshold": float(thresholds[j]),
    }
