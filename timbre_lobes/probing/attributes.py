"""What a probe predicts: the attributes of each note, from ``labels.csv`` rows.

:func:`attribute_targets` turns the rows that the extraction step writes
(:mod:`timbre_lobes.serving.extract`: ``id, instrument, family, source, pitch,
velocity, qualities``) into one :class:`Attribute` per attribute probed:

=============  ==============================================  =======================
attribute      target                                          folds
=============  ==============================================  =======================
family         instrument family (NSynth's 11 or the data's)   grouped by instrument
source         acoustic / electronic / synthetic               grouped by instrument
instrument     the instrument itself (closed set: held-out     notes, stratified
               notes of instruments seen in training)
pitch          MIDI note number                                grouped by instrument
pitch_class    MIDI number mod 12 (C = 0)                      grouped by instrument
octave         MIDI number // 12 - 1 (MIDI 60 = C4: octave 4)  grouped by instrument
velocity       MIDI velocity                                   grouped by instrument
qualities      NSynth's 10 quality tags, multi-label           grouped by instrument
=============  ==============================================  =======================

An attribute that the data cannot score is kept, marked unavailable with the
reason (one value only; no quality tags at all, as in a rendered corpus), so a
report says "not available" instead of printing a meaningless zero.
"""

import dataclasses

import numpy as np

from timbre_lobes.data.nsynth_labels import QUALITIES

#: Every attribute :func:`attribute_targets` knows, in report order.
ATTRIBUTES = ("family", "source", "instrument", "pitch", "pitch_class", "octave", "velocity", "qualities")

#: One line per attribute, for reports.
DESCRIPTIONS = {
    "family": "instrument family",
    "source": "instrument source (acoustic, electronic, synthetic)",
    "instrument": "instrument identity, closed set (held-out notes of the same instruments)",
    "pitch": "MIDI pitch",
    "pitch_class": "pitch class (MIDI pitch mod 12)",
    "octave": "octave (MIDI pitch // 12 - 1)",
    "velocity": "MIDI velocity",
    "qualities": "NSynth's quality tags (multi-label, 10 tags)",
}


@dataclasses.dataclass
class Attribute:
    """The target of one probe over every note.

    Attributes
    ----------
    name : str
        One of :data:`ATTRIBUTES`.
    kind : str
        ``"multiclass"`` (``y`` is ``[n]``) or ``"multilabel"`` (``y`` is ``[n, n_tags]`` of 0/1).
    y : numpy.ndarray
        The targets, row i = note i.
    classes : list
        The class values (multiclass) or the tag names kept (multilabel: tags with a positive note).
    grouped : bool
        True: cross-validation folds never share an instrument between train and test.
    available : bool
        False when the data cannot score this attribute; ``reason`` says why.
    reason : str or None
        Why the attribute is not available.
    """

    name: str
    kind: str
    y: np.ndarray
    classes: list
    grouped: bool
    available: bool = True
    reason: str = None

    @property
    def description(self):
        return DESCRIPTIONS.get(self.name, self.name)


def octave_of(pitch):
    """The octave of a MIDI pitch in scientific pitch notation (MIDI 60 = C4).

    Example
    -------
    >>> octave_of(60), octave_of(59), octave_of(21)
    (4, 3, 0)
    """
    return int(pitch) // 12 - 1


def attribute_targets(labels, names=ATTRIBUTES):
    """The targets of each attribute in ``names`` for the notes ``labels``.

    Arguments
    ---------
    labels : list of dict
        One dict per note with ``instrument, family, source, pitch, velocity`` and
        ``qualities`` (10 characters ``0``/``1``, NSynth's :data:`QUALITIES` order), as
        :func:`timbre_lobes.serving.extract.read_labels` returns them.
    names : sequence of str
        Attributes wanted, a subset of :data:`ATTRIBUTES`.

    Returns
    -------
    dict
        name -> :class:`Attribute`, in the order of ``names``.

    Raises
    ------
    ValueError
        A name is not one of :data:`ATTRIBUTES`, or ``labels`` is empty.

    Example
    -------
    >>> rows = [
    ...     {"instrument": f"i{i % 4}", "family": "bass" if i % 2 else "reed", "source": "acoustic",
    ...      "pitch": 60 + i, "velocity": 100, "qualities": "0000000000"} for i in range(8)]
    >>> targets = attribute_targets(rows)
    >>> targets["family"].classes, targets["pitch_class"].y[:3].tolist(), int(targets["octave"].y[0])
    (['bass', 'reed'], [0, 1, 2], 4)
    >>> targets["source"].available, targets["source"].reason
    (False, "one value only ('acoustic')")
    >>> targets["qualities"].reason
    'not available: no note carries a quality tag (a rendered corpus has none)'
    """
    unknown = [name for name in names if name not in ATTRIBUTES]
    if unknown:
        raise ValueError(f"unknown attribute(s) {unknown}; the attributes are {list(ATTRIBUTES)}")
    if not labels:
        raise ValueError("no notes: the attributes of an empty set cannot be probed")
    targets = {}
    for name in names:
        if name == "qualities":
            targets[name] = _qualities(labels)
            continue
        if name == "pitch_class":
            values = [int(row["pitch"]) % 12 for row in labels]
        elif name == "octave":
            values = [octave_of(row["pitch"]) for row in labels]
        elif name in ("pitch", "velocity"):
            values = [int(row[name]) for row in labels]
        else:
            values = [str(row[name]) for row in labels]
        y = np.asarray(values)
        classes = sorted(set(values))
        attribute = Attribute(name, "multiclass", y, classes, grouped=name != "instrument")
        if len(classes) < 2:
            attribute.available, attribute.reason = False, f"one value only ({classes[0]!r})"
        targets[name] = attribute
    return targets


def _qualities(labels):
    flags = np.array([[int(c) for c in str(row["qualities"]).zfill(len(QUALITIES))] for row in labels])
    if flags.shape[1] != len(QUALITIES):
        raise ValueError(f"qualities must have {len(QUALITIES)} flags, got {flags.shape[1]}")
    present = flags.sum(axis=0) > 0
    attribute = Attribute(
        "qualities", "multilabel", flags[:, present], [q for q, p in zip(QUALITIES, present) if p], grouped=True
    )
    if not present.any():
        attribute.available = False
        attribute.reason = "not available: no note carries a quality tag (a rendered corpus has none)"
    return attribute
