"""Polyphonic input (the paper's future work): mixtures of single notes, instrument detection by enrolment
and family presence.

* :mod:`timbre_lobes.polyphonic.mixtures`: the deterministic mixture sampler, its manifest and the mixing;
* :mod:`timbre_lobes.polyphonic.detection`: trial scores, EER/minDCF and F1/mAP by number of sources;
* :mod:`timbre_lobes.polyphonic.cli`: ``python -m timbre_lobes detect``.

The recipe is ``recipes/Polyphonic`` (its README holds the figures).
"""
