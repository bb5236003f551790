"""Probing what timbre embeddings encode, and looking at them.

* :mod:`timbre_lobes.probing.attributes`: the attributes of each note (family, source,
  instrument, pitch, pitch class, octave, velocity, qualities);
* :mod:`timbre_lobes.probing.reference`: reference features with no training
  (log-mel and MFCC statistics);
* :mod:`timbre_lobes.probing.collect`: every model's embeddings (the extraction step)
  and the reference features of the same notes;
* :mod:`timbre_lobes.probing.probes`: scikit-learn probes, instrument-grouped folds,
  inner cross-validation, chance and majority-class levels;
* :mod:`timbre_lobes.probing.report`: ``probing.json``, ``probing.csv``, ``probing.md``;
* :mod:`timbre_lobes.probing.plots`: the bar chart and the t-SNE pictures;
* :mod:`timbre_lobes.probing.html_map`: the interactive HTML map;
* :mod:`timbre_lobes.probing.cli`: the ``map`` command.

The recipe ``recipes/probing/probe.py`` (with ``hparams/probing.yaml``) glues them.
Nothing heavy is imported here, so the command line stays fast.
"""
