"""Pictures of probing results and of the embeddings' 2-D maps.

* :func:`plot_probe_bars`: accuracy (mAP for qualities) of each probe per
  attribute, one bar per feature set, with chance and the majority-class level
  (the paper's Figure 4);
* :func:`tsne_coordinates`: a 2-D t-SNE map of one feature set;
* :func:`plot_tsne_families`: the maps coloured by family with markers by source
  (the paper's Figure 3), one panel per feature set;
* :func:`plot_tsne_pitch`: the same maps coloured by MIDI pitch.

Every picture is written atomically (:func:`timbre_lobes.atomic.save_figure`).
"""

import numpy as np

from timbre_lobes.atomic import save_figure
from timbre_lobes.data.nsynth_labels import FAMILIES

#: Marker of each source; other sources take the rest in turn.
SOURCE_MARKERS = {"acoustic": "o", "electronic": "^", "synthetic": "s"}
OTHER_MARKERS = ("D", "v", "P", "X", "*", "<", ">")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def tsne_coordinates(features, seed=0, perplexity=30.0, max_iter=1000):
    """A 2-D t-SNE map of standardised features (scikit-learn's TSNE, PCA initialisation).

    Arguments
    ---------
    features : numpy.ndarray
        ``[n, dim]``.
    seed : int
        Seed of the optimisation.
    perplexity : float
        Wanted perplexity; lowered to ``(n - 1) / 3`` for small sets, which t-SNE needs.
    max_iter : int
        Optimisation steps (at least 250).

    Returns
    -------
    numpy.ndarray
        ``[n, 2]`` float. Fewer than 5 points: their first two principal components
        (zeros for a single point), t-SNE being undefined there.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> tsne_coordinates(rng.standard_normal((40, 8))).shape
    (40, 2)
    >>> tsne_coordinates(rng.standard_normal((3, 8))).shape
    (3, 2)
    """
    features = np.asarray(features, dtype=np.float64)
    std = features.std(axis=0)
    x = (features - features.mean(axis=0)) / np.where(std > 0, std, 1.0)
    n = len(x)
    if n < 5:
        if n < 2:
            return np.zeros((n, 2))
        u, s, _ = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
        coords = u[:, :2] * s[:2]
        return np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    from sklearn.manifold import TSNE

    tsne = TSNE(
        n_components=2, perplexity=min(perplexity, (n - 1) / 3), init="pca", max_iter=max_iter, random_state=seed
    )
    return tsne.fit_transform(x)


def family_colours(families):
    """A colour per family: NSynth's 11 families keep one colour each in every picture.

    Example
    -------
    >>> colours = family_colours(["reed", "bass", "vocal"])
    >>> sorted(colours), colours["vocal"] != colours["bass"]
    (['bass', 'reed', 'vocal'], True)
    """
    plt = _pyplot()
    names = sorted(set(families), key=lambda f: (FAMILIES.index(f) if f in FAMILIES else len(FAMILIES), f))
    if set(names) <= set(FAMILIES):  # tab10, and black for the eleventh (vocal)
        palette = [plt.get_cmap("tab10")(i) for i in range(10)] + [(0.0, 0.0, 0.0, 1.0)]
        return {name: palette[FAMILIES.index(name)] for name in names}
    cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def source_markers(sources):
    """A marker per source: ``o`` acoustic, ``^`` electronic, ``s`` synthetic, others in turn."""
    markers, others = {}, iter(OTHER_MARKERS * 10)
    for source in sorted(set(sources)):
        markers[source] = SOURCE_MARKERS.get(source) or next(others)
    return markers


def _panels(n, extra_width=0.0, layout=None):
    plt = _pyplot()
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    size = (5.2 * cols + extra_width, 4.8 * rows)
    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False, layout=layout)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def plot_tsne_families(coordinates, families, sources, path, title=None):
    """t-SNE maps coloured by family, with a marker per source (Figure 3).

    Arguments
    ---------
    coordinates : dict
        Feature set name -> ``[n, 2]`` map (:func:`tsne_coordinates`), one panel each.
    families, sources : sequence of str
        ``[n]`` labels of the notes.
    path : str
        Picture written (PNG).
    title : str, optional
        Title above the panels.
    """
    colours, markers = family_colours(families), source_markers(sources)
    families, sources = np.asarray(families), np.asarray(sources)
    fig, axes = _panels(len(coordinates))
    for ax, (name, xy) in zip(axes, coordinates.items()):
        for family, colour in colours.items():
            for source, marker in markers.items():
                keep = (families == family) & (sources == source)
                if keep.any():
                    ax.scatter(xy[keep, 0], xy[keep, 1], s=14, color=colour, marker=marker, alpha=0.8, linewidths=0)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    plt = _pyplot()
    handles = [plt.Line2D([], [], ls="", marker="o", color=c, label=f) for f, c in colours.items()]
    handles += [plt.Line2D([], [], ls="", marker=m, mfc="none", mec="k", label=s) for s, m in markers.items()]
    fig.legend(handles=handles, loc="center right", frameon=False, title="family / source")
    fig.suptitle(title or "t-SNE of the notes, coloured by family, marker by source")
    fig.tight_layout(rect=(0, 0, 0.86, 0.95))
    save_figure(fig, path, dpi=110)


def plot_tsne_pitch(coordinates, pitches, path, title=None):
    """t-SNE maps coloured by MIDI pitch, one panel per feature set.

    Arguments
    ---------
    coordinates : dict
        Feature set name -> ``[n, 2]`` map.
    pitches : sequence of int
        ``[n]`` MIDI pitches.
    path : str
        Picture written (PNG).
    title : str, optional
        Title above the panels.
    """
    pitches = np.asarray(pitches)
    fig, axes = _panels(len(coordinates), extra_width=1.0, layout="constrained")
    for ax, (name, xy) in zip(axes, coordinates.items()):
        points = ax.scatter(
            xy[:, 0], xy[:, 1], c=pitches, s=12, cmap="viridis", vmin=pitches.min(), vmax=pitches.max(), linewidths=0
        )
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(points, ax=axes, label="MIDI pitch", shrink=0.8)
    fig.suptitle(title or "t-SNE of the notes, coloured by MIDI pitch")
    save_figure(fig, path, dpi=110)


def plot_probe_bars(results, path, title=None):
    """Grouped bars: each probe's score per attribute, one bar per feature set, against chance (Figure 4).

    Arguments
    ---------
    results : dict
        :func:`timbre_lobes.probing.probes.run_probes`'s output.
    path : str
        Picture written (PNG).
    title : str, optional
        Title above the panels.

    One panel per probe; bars are the mean over folds (in %) with the standard
    deviation as an error bar; a black line over each group marks chance, a grey
    dashed line the majority-class level. Unavailable attributes are named "n/a".
    """
    plt = _pyplot()
    attributes = results["attributes"]
    scores = results["scores"]
    sets = list(dict.fromkeys(s["feature_set"] for s in scores))
    probes = list(dict.fromkeys(s["probe"] for s in scores)) or ["(none)"]
    names = list(attributes)
    lookup = {(s["feature_set"], s["attribute"], s["probe"]): s for s in scores}
    colours = plt.get_cmap("tab10")
    width = 0.8 / max(1, len(sets))
    size = (max(8.0, 1.1 * len(names) * max(1, len(sets)) ** 0.5 + 3), 2.6 * len(probes) + 0.8)
    fig, axes = plt.subplots(len(probes), 1, figsize=size, squeeze=False)
    for ax, probe in zip(axes[:, 0], probes):
        labelled = set()
        for a, attribute in enumerate(names):
            entry = attributes[attribute]
            if not entry["available"]:
                ax.text(a, 3, "n/a", ha="center", va="bottom", fontsize=8, color="0.4")
                continue
            for k, name in enumerate(sets):
                score = lookup.get((name, attribute, probe))
                if score is None:
                    continue
                x = a - 0.4 + width * (k + 0.5)
                ax.bar(
                    x,
                    100 * score["mean"],
                    width,
                    yerr=100 * score["std"],
                    color=colours(k % 10),
                    label=None if name in labelled else name,
                    error_kw={"elinewidth": 0.8, "capsize": 1.5},
                )
                labelled.add(name)
            ax.hlines(100 * entry["chance"], a - 0.45, a + 0.45, colors="k", linewidth=1.5)
            ax.hlines(100 * entry["majority_mean"], a - 0.45, a + 0.45, colors="0.45", linestyles="--", linewidth=1)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([f"{n}\n({attributes[n]['metric']})" for n in names], fontsize=8)
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set_ylim(0, 105)
        ax.set_ylabel(f"{probe}\n%", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    uniq["chance"] = plt.Line2D([], [], color="k", linewidth=1.5)
    uniq["majority class"] = plt.Line2D([], [], color="0.45", linestyle="--")
    top = 1 - 0.75 / size[1]  # room for the title and the legend, in figure fractions
    fig.suptitle(title or "Probe scores per attribute (mean ± std over folds)", y=1 - 0.12 / size[1])
    fig.legend(
        uniq.values(),
        uniq.keys(),
        loc="upper center",
        bbox_to_anchor=(0.5, 1 - 0.38 / size[1]),
        ncol=min(len(uniq), 6),
        frameon=False,
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, top))
    save_figure(fig, path, dpi=110)
