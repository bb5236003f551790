"""The closed-set scenario: a share of every training instrument's notes, held out of training.

The paper evaluates embeddings in two scenarios: *open set*, on instruments never
heard in training (the valid and test splits), and *closed set*, on unheard notes
of the training instruments, where the instrument head itself can name the
instrument. :func:`hold_out` picks the closed-set notes of a training split; the
preparation writes them to ``closed_set.csv`` (:data:`CLOSED_SET`) and leaves them
out of ``train.csv``; :mod:`timbre_lobes.training` scores them after training.

The choice is deterministic: each instrument's notes are drawn with a random
generator seeded by the seed and the instrument's name, so an instrument's
held-out notes do not depend on which other instruments the corpus has.
"""

import math
import random

#: Name of the held-out notes' manifest (``closed_set.csv``) and of their results.json key.
CLOSED_SET = "closed_set"
#: The seed of the choice when none is given (the YAMLs' ``closed_set_seed``).
DEFAULT_SEED = 1234


def check_share(share):
    """Raises ValueError unless ``0 <= share < 1`` (0 = no closed set)."""
    if not isinstance(share, (int, float)) or isinstance(share, bool) or not 0 <= share < 1:
        raise ValueError(f"closed_set_share must be a number in [0, 1) (0 = off), not {share!r}")


def held_out_count(n_notes, share):
    """How many of an instrument's ``n_notes`` notes go to the closed set: ``floor(share * n_notes)``.

    Example
    -------
    >>> held_out_count(16, 0.1), held_out_count(9, 0.1), held_out_count(10, 0.1), held_out_count(100, 0.29)
    (1, 0, 1, 29)
    """
    return int(math.floor(share * n_notes + 1e-9))  # 1e-9: 0.29 * 100 is 28.999999999999996


def min_notes(share):
    """The fewest notes an instrument needs for one of them to be held out (``share > 0``).

    Example
    -------
    >>> min_notes(0.1), min_notes(0.25), min_notes(0.3)
    (10, 4, 4)
    """
    return next(n for n in range(1, 10**6) if held_out_count(n, share) >= 1)


def hold_out(rows, share, seed=DEFAULT_SEED):
    """Splits a training split's notes into the ones kept for training and the closed set.

    Each instrument with ``n`` notes gives ``k = floor(share * n)`` of them
    (:func:`held_out_count`): its notes, ordered by pitch, then velocity, then ID,
    are cut into ``k`` runs of consecutive notes as equal as possible, and one
    note is drawn from each run. The held-out notes so spread over the
    instrument's whole pitch range (one from each run, never all from the top
    octave) and, within a run, over its velocities. An instrument with ``k = 0``
    (too few notes) keeps all its notes in training; every instrument keeps at
    least one.

    Arguments
    ---------
    rows : list of dict
        Manifest rows with ``ID``, ``instrument``, ``pitch`` and ``velocity``.
    share : float
        In ``[0, 1)``; 0 holds nothing out.
    seed : int
        Seed of the draw (with the instrument's name).

    Returns
    -------
    kept : list of dict
        The rows left for training, in their order.
    held : list of dict
        The closed-set rows, in their order.
    too_few : dict
        instrument -> its number of notes, for every instrument with notes but
        none held out (empty when ``share`` is 0).

    Raises
    ------
    ValueError
        ``share`` is not in ``[0, 1)``.

    Example
    -------
    >>> rows = [{"ID": f"a-{p}", "instrument": "a", "pitch": p, "velocity": 100} for p in range(40, 60)]
    >>> rows += [{"ID": "b-60", "instrument": "b", "pitch": 60, "velocity": 100}]
    >>> kept, held, too_few = hold_out(rows, 0.1, seed=0)
    >>> len(kept), too_few
    (19, {'b': 1})
    >>> [r["pitch"] < 50 for r in held]  # one note from each half of the range
    [True, False]
    """
    check_share(share)
    if share == 0:
        return list(rows), [], {}
    notes_of = {}
    for row in rows:
        notes_of.setdefault(row["instrument"], []).append(row)
    held_ids, too_few = set(), {}
    for instrument, notes in notes_of.items():
        k = held_out_count(len(notes), share)
        if k == 0:
            too_few[instrument] = len(notes)
            continue
        ordered = sorted(notes, key=lambda r: (int(r["pitch"]), int(r["velocity"]), r["ID"]))
        rng = random.Random(f"{seed}:{instrument}")
        # k <= share * n < n: each run [i n / k, (i + 1) n / k) holds at least one note.
        for i in range(k):
            lo, hi = i * len(ordered) // k, (i + 1) * len(ordered) // k
            held_ids.add(ordered[rng.randrange(lo, hi)]["ID"])
    kept = [r for r in rows if r["ID"] not in held_ids]
    held = [r for r in rows if r["ID"] in held_ids]
    return kept, held, too_few


def report_lines(share, seed, held, too_few):
    """The preparation report's ``#`` lines about the closed set (what was held out, who kept everything)."""
    if share == 0:
        return ["# closed set: off (closed_set_share 0): every training note is in train.csv"]
    n_instruments = len({r["instrument"] for r in held})
    lines = [
        f"# closed set: {len(held)} notes of {n_instruments} training instruments held out of train.csv "
        f"into closed_set.csv (closed_set_share {share}, closed_set_seed {seed})"
    ]
    if too_few:
        lines.append(
            f"# closed set: {len(too_few)} training instruments have fewer than {min_notes(share)} notes "
            "and keep all their notes in training (none of their notes is in the closed set):"
        )
        lines += [f"#   {instrument}\t{n} notes" for instrument, n in too_few.items()]
    return lines
