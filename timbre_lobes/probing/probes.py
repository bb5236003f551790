"""Shallow probes of fixed features: what an embedding (or a plain spectral statistic) encodes.

A probe is a scikit-learn classifier trained on standardised features to predict
one attribute of the notes (:mod:`timbre_lobes.probing.attributes`). Its score,
cross-validated, says how much of the attribute the features keep:

* **outer folds** (:func:`outer_folds`): grouped by instrument for every attribute
  but closed-set instrument identification, so no instrument is in both the train
  and the test notes of a fold and a probe cannot score by recognising the
  instrument; the instrument attribute uses stratified folds of notes. The folds
  of an attribute are made once and shared by every feature set and probe, so
  their scores compare on the same notes;
* **inner cross-validation** on each outer fold's train notes (grouped the same
  way) chooses the probe's regularisation from its grid (``GridSearchCV``);
* **scores**: accuracy and macro-F1 for single-label attributes, mean average
  precision over the tags (mAP) for the multi-label qualities; mean and standard
  deviation (``ddof=0``) over the outer folds;
* **levels to beat**: chance (1 / number of classes; for qualities, the mean tag
  prevalence, which is a random scorer's expected average precision) and the
  majority-class level (the most frequent class of each train fold predicted for
  every test note, scored on the same folds; for qualities, a constant score).

Probes come as ``{name: {"estimator": <unfitted classifier>, "grid": {param: [values]}}}``,
as ``hparams/probing.yaml`` defines them; every fit uses a fresh clone.
"""

import dataclasses
import time
import warnings

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, average_precision_score, f1_score
from sklearn.model_selection import GridSearchCV, GroupKFold, StratifiedGroupKFold, StratifiedKFold
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

#: The score of each kind of attribute.
METRICS = {"multiclass": "accuracy", "multilabel": "mAP"}


def default_probes(seed=0):
    """The five probes of ``hparams/probing.yaml`` at their default sizes, for use without a YAML.

    Returns
    -------
    dict
        name -> ``{"estimator": classifier, "grid": {parameter: values}}``.

    Example
    -------
    >>> sorted(default_probes())
    ['decision_tree', 'knn', 'logistic_regression', 'mlp', 'svm_rbf']
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    return {
        "logistic_regression": {"estimator": LogisticRegression(max_iter=1000), "grid": {"C": [0.01, 0.1, 1.0, 10.0]}},
        "mlp": {
            "estimator": MLPClassifier(hidden_layer_sizes=(64,), max_iter=300, random_state=seed),
            "grid": {"alpha": [1e-3, 1.0]},
        },
        "svm_rbf": {"estimator": SVC(kernel="rbf", gamma="scale"), "grid": {"C": [0.1, 1.0, 10.0]}},
        "decision_tree": {
            "estimator": DecisionTreeClassifier(random_state=seed),
            "grid": {"max_depth": [4, 8, None]},
        },
        "knn": {"estimator": KNeighborsClassifier(), "grid": {"n_neighbors": [1, 5, 15]}},
    }


def outer_folds(attribute, groups, n_folds=5, seed=0):
    """The cross-validation folds of one attribute: ``(folds, reason)``.

    Arguments
    ---------
    attribute : timbre_lobes.probing.attributes.Attribute
        Its ``grouped`` flag chooses instrument-grouped or stratified note folds.
    groups : sequence
        The instrument of each note, ``[n]``.
    n_folds : int
        Folds wanted; fewer when there are fewer instruments (grouped) or fewer
        notes in the largest class (stratified).
    seed : int
        Seed of the shuffling.

    Returns
    -------
    folds : list of (numpy.ndarray, numpy.ndarray)
        ``(train indices, test indices)`` per fold; empty when no two folds can be made.
    reason : str or None
        Why there are no folds.

    Example
    -------
    >>> from timbre_lobes.probing.attributes import Attribute
    >>> groups = np.repeat(["a", "b", "c", "d"], 3)
    >>> attribute = Attribute("family", "multiclass", np.array(list("xxxyyyxxxyyy")), ["x", "y"], grouped=True)
    >>> folds, _ = outer_folds(attribute, groups, n_folds=2)
    >>> [sorted(set(groups[test].tolist())) for _, test in folds]  # each instrument in one test set only
    [['b', 'c'], ['a', 'd']]
    """
    groups = np.asarray(groups)
    index = np.zeros((len(groups), 1))
    if attribute.grouped:
        n_groups = len(set(groups.tolist()))
        if n_groups < 2:
            return [], "one instrument only: no instrument-disjoint folds"
        k = min(n_folds, n_groups)
        if attribute.kind == "multilabel":
            splitter = GroupKFold(k, shuffle=True, random_state=seed)
            split = splitter.split(index, groups=groups)
        else:
            splitter = StratifiedGroupKFold(k, shuffle=True, random_state=seed)
            split = splitter.split(index, attribute.y, groups)
    else:
        _, counts = np.unique(attribute.y, return_counts=True)
        if counts.max() < 2:
            return [], "one note per class: no held-out notes of a class seen in training"
        splitter = StratifiedKFold(min(n_folds, int(counts.max())), shuffle=True, random_state=seed)
        split = splitter.split(index, attribute.y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "the least populated class has only N members"
        folds = [(np.asarray(train), np.asarray(test)) for train, test in split]
    return folds, None


def mean_average_precision(y_true, scores):
    """Mean over tags of the average precision, tags with no positive note left out.

    Arguments
    ---------
    y_true : array-like
        ``[n, n_tags]`` of 0/1.
    scores : array-like
        ``[n, n_tags]``, higher = more likely.

    Returns
    -------
    float
        In [0, 1]; NaN when no tag has a positive note.

    Example
    -------
    >>> y = np.array([[1, 0], [0, 0], [1, 1], [0, 0]])
    >>> float(mean_average_precision(y, y * 2.0))
    1.0
    >>> float(mean_average_precision(y, np.zeros((4, 2))))  # constant scores: the mean prevalence
    0.375
    """
    y_true, scores = np.asarray(y_true), np.asarray(scores)
    aps = [average_precision_score(y_true[:, j], scores[:, j]) for j in range(y_true.shape[1]) if y_true[:, j].any()]
    return float(np.mean(aps)) if aps else float("nan")


def chance_level(attribute, y_test=None):
    """The score of guessing: 1 / number of classes, or for tags their mean prevalence in ``y_test``.

    Example
    -------
    >>> from timbre_lobes.probing.attributes import Attribute
    >>> chance_level(Attribute("velocity", "multiclass", np.array([25, 50, 75, 100]), [25, 50, 75, 100], True))
    0.25
    """
    if attribute.kind == "multilabel":
        y_test = attribute.y if y_test is None else y_test
        prevalence = [col.mean() for col in np.asarray(y_test).T if col.any()]
        return float(np.mean(prevalence)) if prevalence else float("nan")
    return 1.0 / len(attribute.classes)


def _natively_multilabel(estimator):
    try:
        return bool(estimator.__sklearn_tags__().classifier_tags.multi_label)
    except AttributeError:
        return False


def _pipeline(estimator, multilabel):
    """Standardisation + the probe; for tags, one binary probe per tag unless the probe takes tags natively."""
    classifier = clone(estimator)
    wrapped = multilabel and not _natively_multilabel(classifier)
    if wrapped:
        classifier = OneVsRestClassifier(classifier)
    return Pipeline([("standardise", StandardScaler()), ("probe", classifier)]), wrapped


def _scores(model, X):
    """Scores ``[n, n_tags]`` of a fitted multi-label probe, higher = more likely."""
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(X)
        if isinstance(proba, list):  # one [n, classes] array per tag (trees, k-NN)
            classes = model[-1].classes_
            proba = np.stack(
                [p[:, list(c).index(1)] if 1 in c else np.zeros(len(X)) for p, c in zip(proba, classes)], axis=1
            )
        return proba
    if hasattr(model, "decision_function"):
        return model.decision_function(X)
    raise TypeError(f"{type(model).__name__} has neither predict_proba nor decision_function")


def _inner_cv(attribute, y, groups, inner_folds, seed):
    """The inner splitter of one outer fold's train notes, or None when no two folds can be made."""
    if attribute.grouped:
        k = min(inner_folds, len(set(groups.tolist())))
        if k < 2:
            return None
        if attribute.kind == "multilabel":
            return GroupKFold(k, shuffle=True, random_state=seed)
        return StratifiedGroupKFold(k, shuffle=True, random_state=seed)
    k = min(inner_folds, int(np.unique(y, return_counts=True)[1].max()))
    return StratifiedKFold(k, shuffle=True, random_state=seed) if k >= 2 else None


def _map_scorer(model, X, y):
    return mean_average_precision(y, _scores(model, X))


def fit_probe(X, y, groups, attribute, probe, inner_folds=3, seed=0, n_jobs=1):
    """Fits one probe on train notes, its grid searched by inner cross-validation.

    Arguments
    ---------
    X : numpy.ndarray
        Features ``[n, dim]``.
    y : numpy.ndarray
        Targets ``[n]`` (or ``[n, n_tags]`` for a multi-label attribute).
    groups : numpy.ndarray
        Instrument of each note ``[n]``; the inner folds are grouped by it when the attribute is.
    attribute : Attribute
        Kind and grouping of the target.
    probe : dict
        ``{"estimator": classifier, "grid": {parameter: values}}``.
    inner_folds : int
        Folds of the inner cross-validation.
    seed : int
        Seed of the inner folds.
    n_jobs : int
        Parallel fits of the grid search.

    Returns
    -------
    model : fitted estimator (``predict``, and ``predict_proba`` or ``decision_function``),
        or None when the train notes hold a single class (the caller predicts it for every note).
    best_params : dict
        The grid point chosen (empty without a grid search).
    """
    multilabel = attribute.kind == "multilabel"
    if not multilabel and len(np.unique(y)) < 2:
        return None, {}
    pipeline, wrapped = _pipeline(probe["estimator"], multilabel)
    prefix = "probe__estimator__" if wrapped else "probe__"
    grid = {f"{prefix}{k}": list(v) for k, v in (probe.get("grid") or {}).items()}
    cv = _inner_cv(attribute, y, groups, inner_folds, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)  # small classes in inner folds
        warnings.simplefilter("ignore", RuntimeWarning)
        if cv is None or not grid or all(len(v) == 1 for v in grid.values()):
            model = pipeline.set_params(**{key: values[0] for key, values in grid.items()})
            return model.fit(X, y), {key.split("__")[-1]: values[0] for key, values in grid.items()}
        if multilabel:
            scoring = _map_scorer
        else:
            scoring = "accuracy"
        search = GridSearchCV(pipeline, grid, scoring=scoring, cv=cv, n_jobs=n_jobs, error_score=np.nan)
        search.fit(X, y, groups=groups)
    return search.best_estimator_, {key.split("__")[-1]: value for key, value in search.best_params_.items()}


def score_predictions(attribute, y_true, model, X_test, constant=None):
    """The fold's scores of a fitted probe (or of ``constant``, predicted for every note).

    Returns
    -------
    dict
        ``{"score": accuracy or mAP, "macro_f1": macro-F1 (single-label only)}``.
    """
    if attribute.kind == "multilabel":
        scores = np.zeros(y_true.shape) if model is None else _scores(model, X_test)
        return {"score": mean_average_precision(y_true, scores)}
    predicted = np.full(len(y_true), constant) if model is None else model.predict(X_test)
    return {
        "score": float(accuracy_score(y_true, predicted)),
        "macro_f1": float(f1_score(y_true, predicted, average="macro", zero_division=0)),
    }


def _majority(attribute, train, test):
    y = attribute.y
    if attribute.kind == "multilabel":
        return mean_average_precision(y[test], np.zeros(y[test].shape))
    values, counts = np.unique(y[train], return_counts=True)
    return float(np.mean(y[test] == values[np.argmax(counts)]))


def _summary(values):
    values = np.asarray(values, dtype=float)
    if np.isnan(values).all():
        return float("nan"), float("nan")
    return float(np.nanmean(values)), float(np.nanstd(values))


def run_probes(
    feature_sets, attributes, groups, probes=None, n_folds=5, inner_folds=3, seed=0, n_jobs=1, blas_threads=1, log=print
):
    """Every probe on every feature set for every attribute, on shared folds.

    Arguments
    ---------
    feature_sets : dict
        name -> features ``[n, dim]`` (row i = note i in every set).
    attributes : dict
        name -> :class:`timbre_lobes.probing.attributes.Attribute`.
    groups : sequence
        Instrument of each note, ``[n]``.
    probes : dict, optional
        name -> ``{"estimator", "grid"}``; default :func:`default_probes`.
    n_folds, inner_folds : int
        Outer and inner cross-validation folds.
    seed : int
        Seed of the folds.
    n_jobs : int
        Parallel fits in each grid search.
    blas_threads : int or None
        Threads of the linear-algebra library during the fits (None: its default). One thread is
        many times faster for these small fits than several threads competing for the cores.
    log : callable or None
        Called with one progress line per feature set and attribute.

    Returns
    -------
    dict
        ``attributes``: name -> ``{available, reason, kind, metric, grouped, n_classes, classes,
        n_folds, chance, majority_mean, majority_std, description}``;
        ``scores``: a list of ``{feature_set, attribute, probe, metric, mean, std, folds,
        macro_f1_mean, macro_f1_std, best_params}`` (scores as fractions in [0, 1]).

    Raises
    ------
    ValueError
        The feature sets and ``groups`` do not have the same number of notes.
    """
    probes = default_probes(seed) if probes is None else probes
    groups = np.asarray(groups)
    for name, X in feature_sets.items():
        if len(X) != len(groups):
            raise ValueError(f"feature set {name!r} has {len(X)} rows for {len(groups)} notes")
    with threadpool_limits(limits=blas_threads):
        return _run_probes(feature_sets, attributes, groups, probes, n_folds, inner_folds, seed, n_jobs, log)


def across_instruments(attribute, groups):
    """The notes an instrument-grouped probe can be scored on: ``(mask [n] bool, dropped classes)``.

    With folds that never share an instrument, a class (a family, a pitch) that only one
    instrument plays is never in the training fold when its notes are tested: no probe
    can get them right, whatever the features hold. Such notes are left out of the
    attribute (and its chance level), and the classes named, rather than scored as
    certain errors. Non-grouped and multi-label attributes keep every note.

    Example
    -------
    >>> from timbre_lobes.probing.attributes import Attribute
    >>> attribute = Attribute("family", "multiclass", np.array(list("xxyyz")), ["x", "y", "z"], grouped=True)
    >>> mask, dropped = across_instruments(attribute, ["a", "b", "c", "d", "e"])
    >>> mask.tolist(), dropped
    ([True, True, True, True, False], ['z'])
    """
    groups = np.asarray(groups)
    if not attribute.grouped or attribute.kind != "multiclass":
        return np.ones(len(groups), dtype=bool), []
    spread = {c: len(set(groups[attribute.y == c].tolist())) for c in np.unique(attribute.y).tolist()}
    dropped = sorted(c for c, n in spread.items() if n < 2)
    return ~np.isin(attribute.y, dropped), dropped


def _run_probes(feature_sets, attributes, groups, probes, n_folds, inner_folds, seed, n_jobs, log):
    summary, scores = {}, []
    for attr_name, attribute in attributes.items():
        entry = {
            "description": attribute.description,
            "kind": attribute.kind,
            "metric": METRICS[attribute.kind],
            "grouped": attribute.grouped,
            "n_classes": len(attribute.classes),
            "classes": [c.item() if hasattr(c, "item") else c for c in attribute.classes],
            "available": attribute.available,
            "reason": attribute.reason,
        }
        summary[attr_name] = entry
        if not attribute.available:
            continue
        keep, dropped = across_instruments(attribute, groups)
        if dropped:
            entry["dropped_classes"] = [c.item() if hasattr(c, "item") else c for c in dropped]
            entry["n_notes"] = int(keep.sum())
            kept = sorted(set(attribute.y[keep].tolist()))
            if len(kept) < 2:
                entry.update(
                    available=False,
                    reason="fewer than two classes are played by two or more instruments: instrument-disjoint "
                    "folds never train on a test note's class",
                )
                continue
            # y stays whole: the folds below only ever index kept notes.
            attribute = dataclasses.replace(attribute, classes=kept)
            entry.update(n_classes=len(kept), classes=kept)
        kept_only = dataclasses.replace(attribute, y=attribute.y[keep])
        folds, reason = outer_folds(kept_only, groups[keep], n_folds, seed)
        if not folds:
            entry.update(available=False, reason=reason)
            continue
        # Fold indices are into the kept notes: map them back to rows of the feature sets.
        rows = np.flatnonzero(keep)
        folds = [(rows[train], rows[test]) for train, test in folds]
        entry["n_folds"] = len(folds)
        entry["chance"] = float(np.mean([chance_level(attribute, attribute.y[test]) for _, test in folds]))
        if attribute.kind == "multiclass":
            entry["chance"] = chance_level(attribute)
        entry["majority_mean"], entry["majority_std"] = _summary([_majority(attribute, tr, te) for tr, te in folds])
        for set_name, X in feature_sets.items():
            start = time.time()
            for probe_name, probe in probes.items():
                fold_scores, fold_f1, chosen = [], [], []
                for train, test in folds:
                    model, params = fit_probe(
                        X[train], attribute.y[train], groups[train], attribute, probe, inner_folds, seed, n_jobs
                    )
                    constant = None if model is not None else attribute.y[train][0]
                    result = score_predictions(attribute, attribute.y[test], model, X[test], constant)
                    fold_scores.append(result["score"])
                    fold_f1.append(result.get("macro_f1", float("nan")))
                    chosen.append({k: (v.item() if hasattr(v, "item") else v) for k, v in params.items()})
                mean, std = _summary(fold_scores)
                f1_mean, f1_std = _summary(fold_f1)
                scores.append(
                    {
                        "feature_set": set_name,
                        "attribute": attr_name,
                        "probe": probe_name,
                        "metric": entry["metric"],
                        "mean": mean,
                        "std": std,
                        "folds": fold_scores,
                        "macro_f1_mean": f1_mean,
                        "macro_f1_std": f1_std,
                        "best_params": chosen,
                    }
                )
            if log is not None:
                best = max(
                    (s for s in scores if s["feature_set"] == set_name and s["attribute"] == attr_name),
                    key=lambda s: -np.inf if np.isnan(s["mean"]) else s["mean"],
                )
                log(
                    f"{set_name:>16} {attr_name:<12} best {best['probe']} {100 * best['mean']:.1f} % "
                    f"(chance {100 * entry['chance']:.1f} %, majority {100 * entry['majority_mean']:.1f} %) "
                    f"[{time.time() - start:.1f} s]"
                )
    return {"attributes": summary, "scores": scores}
