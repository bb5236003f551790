"""An interactive map of embeddings: one self-contained HTML page (plotly, its JavaScript inlined).

:func:`write_map` draws one point per sound at its 2-D coordinates (a t-SNE map),
coloured by one label and with markers by another; hovering a point shows the
sound's id and labels, clicking it plays the sound. The page needs no server and
no network: plotly's JavaScript is inlined, and the audio is either embedded as
``data:`` URIs or referenced by paths relative to the page (``audio="auto"``
embeds when the files add up to at most ``max_embedded_mb``, so a page of a few
hundred notes that is linked keeps working as long as it stays beside the data).

The command ``python -m timbre_lobes map FOLDER --model M --out map.html`` makes
this page for any folder of sounds (:mod:`timbre_lobes.probing.cli`); the probing
recipe writes one per model.
"""

import base64
import html
import json
import os
import urllib.parse

import numpy as np

from timbre_lobes.atomic import atomic_open
from timbre_lobes.data.nsynth_labels import FAMILIES

#: Plotly marker symbols, in the order sources (or any second label) take them.
SYMBOLS = ("circle", "triangle-up", "square", "diamond", "cross", "x", "star", "pentagon", "hexagon", "triangle-down")
#: NSynth's families in the colours of the t-SNE pictures (matplotlib's tab10, black for the eleventh).
FAMILY_COLOURS = dict(
    zip(
        FAMILIES,
        ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")
        + ("#17becf", "#000000"),
    )
)
#: MIME type of an embedded file, by extension.
MIME_TYPES = {
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg",
    ".m4a": "audio/mp4",
    ".aif": "audio/aiff",
    ".aiff": "audio/aiff",
}
#: Element ids the page's script uses (and a browser test looks for).
PLAYER_ID, STATUS_ID = "timbre-map-player", "timbre-map-status"

_CLICK_SCRIPT = """
(function () {
  var sounds = %(sounds)s;
  var names = %(names)s;
  var gd = document.getElementById('{plot_id}');
  var player = document.getElementById('%(player)s');
  var status = document.getElementById('%(status)s');
  function play(i) {
    player.src = sounds[i];
    status.textContent = 'Playing ' + names[i];
    var started = player.play();
    if (started && started.catch) {
      started.catch(function (err) { status.textContent = 'Could not play ' + names[i] + ': ' + err.message; });
    }
  }
  window.timbreMap = {play: play, sounds: sounds, names: names};
  gd.on('plotly_click', function (event) {
    if (event.points.length) { play(event.points[0].customdata[0]); }
  });
})();
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>%(title)s</title>
<style>
body { font-family: sans-serif; margin: 1em 2em; }
#%(status)s { color: #555; margin-left: 1em; }
</style>
</head>
<body>
<h2>%(title)s</h2>
<p>%(caption)s Hover a point for its labels; click it to play the sound.</p>
<p><audio id="%(player)s" controls preload="none"></audio><span id="%(status)s">Click a point to play it.</span></p>
%(plot)s
</body>
</html>
"""


def audio_sources(paths, page_path, audio="auto", max_embedded_mb=16.0):
    """The ``src`` of each sound for a page at ``page_path``: ``data:`` URIs or relative URLs.

    Arguments
    ---------
    paths : list of str
        Audio files.
    page_path : str
        Where the page will be written (relative URLs start from its folder).
    audio : str
        ``"embed"``, ``"link"``, or ``"auto"`` (embed when the files add up to at most ``max_embedded_mb``).
    max_embedded_mb : float
        Size limit of ``"auto"``, in MiB.

    Returns
    -------
    sources : list of str
    mode : str
        ``"embed"`` or ``"link"``.

    Raises
    ------
    ValueError
        ``audio`` is none of the three.

    Example
    -------
    >>> audio_sources(["/data/notes/a b.wav"], "/data/maps/map.html", audio="link")
    (['../notes/a%20b.wav'], 'link')
    """
    if audio not in ("auto", "embed", "link"):
        raise ValueError(f"audio must be 'auto', 'embed' or 'link', got {audio!r}")
    if audio == "auto":
        total = sum(os.path.getsize(p) for p in paths)
        audio = "embed" if total <= max_embedded_mb * 2**20 else "link"
    if audio == "link":
        start = os.path.dirname(os.path.abspath(page_path))
        rel = [os.path.relpath(os.path.abspath(p), start).replace(os.sep, "/") for p in paths]
        return [urllib.parse.quote(r) for r in rel], "link"
    sources = []
    for path in paths:
        mime = MIME_TYPES.get(os.path.splitext(path)[1].lower(), "application/octet-stream")
        with open(path, "rb") as handle:
            sources.append(f"data:{mime};base64,{base64.b64encode(handle.read()).decode('ascii')}")
    return sources, "embed"


def _hover_text(row, fields):
    lines = [f"<b>{html.escape(str(row['id']))}</b>"]
    lines += [f"{html.escape(k)}: {html.escape(str(row[k]))}" for k in fields if k in row and row[k] not in ("", None)]
    return "<br>".join(lines)


def _natural(value):
    """Sort key putting numbers in numeric order (MIDI pitches) and text in alphabetical order."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def _legend_entry(go, name, colour, symbol, legendgroup=None):
    """A trace with no point, drawn only in the legend."""
    return go.Scatter(
        x=[None],
        y=[None],
        mode="markers",
        name=name,
        legendgroup=legendgroup,
        marker={"size": 8, "color": colour, "symbol": symbol},
        hoverinfo="skip",
    )


def _js(value):
    return json.dumps(value).replace("</", "<\\/")


def write_map(
    path,
    coordinates,
    labels,
    audio_paths,
    colour_by="family",
    marker_by="source",
    hover_fields=None,
    audio="auto",
    max_embedded_mb=16.0,
    title="Timbre map",
    caption="",
):
    """Writes the interactive map page.

    Arguments
    ---------
    path : str
        The HTML file written (atomically).
    coordinates : array-like
        ``[n, 2]`` positions, one row per sound.
    labels : list of dict
        ``[n]`` rows, each with an ``id`` and any labels (family, source, pitch ...).
    audio_paths : list of str
        ``[n]`` audio files played on click.
    colour_by : str or None
        Label giving each point's colour (one legend entry per value); None: one colour.
    marker_by : str or None
        Label giving each point's marker symbol; None (or absent from the rows): circles.
    hover_fields : list of str, optional
        Labels shown on hover after the id (default: every key of the rows but ``id`` and ``path``).
    audio, max_embedded_mb
        How the sounds reach the page (:func:`audio_sources`).
    title, caption : str
        Text above the map.

    Returns
    -------
    dict
        ``{"path", "n_points", "audio"}`` (``audio``: ``"embed"`` or ``"link"``).

    Raises
    ------
    ValueError
        ``coordinates``, ``labels`` and ``audio_paths`` differ in length, or there is nothing to draw.
    """
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    coordinates = np.asarray(coordinates, dtype=float)
    n = len(labels)
    if n == 0:
        raise ValueError("nothing to draw: no sounds")
    if coordinates.shape != (n, 2) or len(audio_paths) != n:
        raise ValueError(
            f"{n} label rows, coordinates {coordinates.shape}, {len(audio_paths)} audio files: they must match"
        )
    if hover_fields is None:
        hover_fields = [k for k in labels[0] if k not in ("id", "path")]
    sources, mode = audio_sources(audio_paths, path, audio, max_embedded_mb)
    colours = [str(row.get(colour_by, "")) if colour_by else "" for row in labels]
    markers = [str(row.get(marker_by, "")) if marker_by else "" for row in labels]
    symbol_of = {m: SYMBOLS[i % len(SYMBOLS)] for i, m in enumerate(sorted(set(markers)))}
    values = sorted(set(colours), key=_natural)
    palette = qualitative.Plotly if len(values) <= len(qualitative.Plotly) else qualitative.Alphabet
    several_markers = len(symbol_of) > 1
    nsynth_families = set(values) <= set(FAMILIES)  # the same colour per family as in the pictures
    fig = go.Figure()
    for k, value in enumerate(values):
        index = [i for i in range(n) if colours[i] == value]
        colour = FAMILY_COLOURS[value] if nsynth_families else palette[k % len(palette)]
        fig.add_trace(
            go.Scatter(
                x=coordinates[index, 0],
                y=coordinates[index, 1],
                mode="markers",
                name=value or "sounds",
                legendgroup=value,
                showlegend=not several_markers,
                marker={"size": 8, "color": colour, "symbol": [symbol_of[markers[i]] for i in index], "opacity": 0.85},
                customdata=[[i] for i in index],
                text=[_hover_text(labels[i], hover_fields) for i in index],
                hovertemplate="%{text}<extra></extra>",
            )
        )
        if several_markers:  # a legend entry with a plain circle: the points' own symbols vary
            fig.add_trace(_legend_entry(go, value or "sounds", colour, "circle", legendgroup=value))
    if several_markers:
        for marker, symbol in symbol_of.items():
            fig.add_trace(_legend_entry(go, f"{marker_by}: {marker}", "#222", f"{symbol}-open"))
    legend_title = (colour_by or "") + (f" / {marker_by}" if several_markers else "")
    fig.update_layout(
        template="plotly_white",
        height=720,
        legend_title_text=legend_title,
        xaxis={"showticklabels": False, "title": ""},
        yaxis={"showticklabels": False, "title": ""},
        margin={"l": 20, "r": 20, "t": 20, "b": 20},
        hovermode="closest",
    )
    script = _CLICK_SCRIPT % {
        "sounds": _js(sources),
        "names": _js([str(row["id"]) for row in labels]),
        "player": PLAYER_ID,
        "status": STATUS_ID,
    }
    plot = fig.to_html(full_html=False, include_plotlyjs=True, post_script=script, config={"displaylogo": False})
    page = _PAGE % {
        "title": html.escape(title),
        "caption": html.escape(caption),
        "plot": plot,
        "player": PLAYER_ID,
        "status": STATUS_ID,
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(page)
    return {"path": path, "n_points": n, "audio": mode}
