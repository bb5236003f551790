"""Probing (issue #18): probes, folds, reference features, outputs, the recipe end to end, the HTML map in a browser."""

import contextlib
import csv
import functools
import json
import os
import select
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import REPO
from test_recipe_nsynth import run_recipe

from timbre_lobes.data.synthetic import make_nsynth_corpus
from timbre_lobes.probing.attributes import attribute_targets
from timbre_lobes.probing.collect import name_models
from timbre_lobes.probing.html_map import PLAYER_ID, write_map
from timbre_lobes.probing.plots import plot_probe_bars, plot_tsne_families, plot_tsne_pitch, tsne_coordinates
from timbre_lobes.probing.probes import default_probes, outer_folds, run_probes
from timbre_lobes.probing.reference import log_mel_statistics, mfcc_statistics, reference_features
from timbre_lobes.probing.report import summary_markdown, write_report

FAMILIES = ["bass", "brass", "flute", "guitar"]
#: Fast probes for the synthetic tests: one linear, one non-parametric.
FAST = {name: default_probes()[name] for name in ("logistic_regression", "knn")}
PROBE_SCRIPT = os.path.join(REPO, "recipes", "probing", "probe.py")
PROBING_YAML = os.path.join(REPO, "hparams", "probing.yaml")


def synthetic_notes(n_instruments=24, notes_per_instrument=10, seed=0):
    """Label rows of made-up notes: family = instrument % 4, random pitch, velocity and qualities."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_instruments):
        for _ in range(notes_per_instrument):
            rows.append(
                {
                    "id": f"n{len(rows)}",
                    "instrument": f"inst{i:02d}",
                    "family": FAMILIES[i % 4],
                    "source": ["acoustic", "electronic", "synthetic"][i % 3],
                    "pitch": int(rng.integers(40, 80)),
                    "velocity": int(rng.choice([25, 50, 75, 100, 127])),
                    "qualities": "".join(str(int(q)) for q in rng.random(10) < 0.3),
                }
            )
    return rows


def embed_family(rows, dim=16, seed=0):
    """Embeddings that encode the family linearly (a class mean per family) plus noise."""
    rng = np.random.default_rng(seed)
    means = 3.0 * rng.standard_normal((4, dim))
    return np.stack([means[FAMILIES.index(r["family"])] for r in rows]) + rng.standard_normal((len(rows), dim))


def scores_of(results, attribute):
    return {s["probe"]: s for s in results["scores"] if s["attribute"] == attribute}


# ---------------------------------------------------------------------------
# Probes and folds on synthetic embeddings
# ---------------------------------------------------------------------------


def test_a_linearly_encoded_attribute_scores_near_100_and_a_shuffled_one_near_chance():
    rows = synthetic_notes()
    shuffled = [dict(r) for r in rows]
    families = [r["family"] for r in rows]
    np.random.default_rng(1).shuffle(families)
    for row, family in zip(shuffled, families):
        row["family"] = family
    x = embed_family(rows)
    groups = [r["instrument"] for r in rows]
    encoded = run_probes({"emb": x}, attribute_targets(rows, ["family", "velocity"]), groups, FAST, log=None)
    noise = run_probes({"emb": x}, attribute_targets(shuffled, ["family"]), groups, FAST, log=None)
    for probe in FAST:
        assert scores_of(encoded, "family")[probe]["mean"] > 0.95
        # Velocity is not in the embeddings, the shuffled family no longer matches them: chance (1/5, 1/4).
        assert abs(scores_of(encoded, "velocity")[probe]["mean"] - 0.2) < 0.1
        assert abs(scores_of(noise, "family")[probe]["mean"] - 0.25) < 0.12
    entry = encoded["attributes"]["family"]
    assert entry["chance"] == 0.25 and entry["n_folds"] == 5 and entry["grouped"] is True
    # 6 instruments of each family, grouped folds of ~5 instruments: the majority level is near 1/4.
    assert 0.0 <= entry["majority_mean"] <= 0.5
    assert len(scores_of(encoded, "family")["knn"]["folds"]) == 5


def test_grouped_folds_stop_a_probe_from_scoring_by_recognising_the_instrument():
    """Family drawn at random per instrument, embeddings that know only the instrument:
    closed-set instrument identification succeeds, family across instruments does not."""
    rng = np.random.default_rng(2)
    rows = synthetic_notes(n_instruments=24)
    family_of = {f"inst{i:02d}": FAMILIES[k] for i, k in enumerate(rng.permutation(np.arange(24) % 4))}
    for row in rows:
        row["family"] = family_of[row["instrument"]]
    centres = {inst: 3.0 * rng.standard_normal(16) for inst in family_of}
    x = np.stack([centres[r["instrument"]] for r in rows]) + 0.5 * rng.standard_normal((len(rows), 16))
    results = run_probes(
        {"emb": x}, attribute_targets(rows, ["family", "instrument"]), [r["instrument"] for r in rows], FAST, log=None
    )
    assert scores_of(results, "instrument")["logistic_regression"]["mean"] > 0.95
    assert results["attributes"]["instrument"]["grouped"] is False
    assert scores_of(results, "family")["knn"]["mean"] < 0.5  # note folds would give ~100 %


def test_a_class_of_one_instrument_is_left_out_of_grouped_folds_not_scored_as_errors(tmp_path):
    rows = synthetic_notes(n_instruments=13)
    for row in rows:
        if row["instrument"] == "inst12":
            row["family"] = "vocal"  # the one vocal instrument
    x = embed_family([r if r["family"] != "vocal" else {**r, "family": FAMILIES[0]} for r in rows])
    groups = [r["instrument"] for r in rows]
    results = run_probes({"emb": x}, attribute_targets(rows, ["family"]), groups, FAST, log=None)
    entry = results["attributes"]["family"]
    assert entry["dropped_classes"] == ["vocal"] and entry["n_notes"] == 120 and "vocal" not in entry["classes"]
    assert entry["chance"] == 0.25  # over the four families played by several instruments
    assert scores_of(results, "family")["knn"]["mean"] > 0.95  # not pulled down by 10 certain errors
    sets = {"emb": {"kind": "embedding", "dim": 16, "model": "m"}}
    text = summary_markdown(results, {"data_folder": "d", "n_notes": 130, "n_instruments": 13, "feature_sets": sets})
    assert "- family: scored on 120 notes; left out, one instrument each: vocal" in text
    lone = [{**r, "family": "vocal" if r["instrument"] == "inst00" else "brass"} for r in rows]
    results = run_probes({"emb": x}, attribute_targets(lone, ["family"]), groups, FAST, log=None)
    assert results["attributes"]["family"]["available"] is False  # one class left: nothing to tell apart
    assert "fewer than two classes" in results["attributes"]["family"]["reason"]


def test_an_attribute_at_chance_for_the_statistics_too_is_not_judged_kept_or_lost():
    rows = synthetic_notes()
    x = embed_family(rows)
    noise = np.random.default_rng(5).standard_normal((len(rows), 8))  # a "reference" that knows nothing
    groups = [r["instrument"] for r in rows]
    targets = attribute_targets(rows, ["family", "velocity"])
    results = run_probes({"emb": x, "ref": noise}, targets, groups, FAST, log=None)
    sets = {
        "emb": {"kind": "embedding", "dim": 16, "model": "m"},
        "ref": {"kind": "reference", "dim": 8, "function": "noise"},
    }
    text = summary_markdown(results, {"data_folder": "d", "n_notes": 240, "n_instruments": 24, "feature_sets": sets})
    assert "near chance for the spectral statistics too, so not judged: velocity" in text
    assert "keeps clearly less of (by more than one standard deviation): none (0 of 0)" in text


def test_folds_are_instrument_disjoint_and_cover_every_note_once():
    rows = synthetic_notes(n_instruments=13, notes_per_instrument=7)
    groups = np.array([r["instrument"] for r in rows])
    targets = attribute_targets(rows)
    for name in ("family", "pitch", "velocity", "qualities"):
        folds, reason = outer_folds(targets[name], groups, n_folds=5)
        assert reason is None and len(folds) == 5
        assert sorted(np.concatenate([test for _, test in folds]).tolist()) == list(range(len(rows)))
        for train, test in folds:
            assert not set(groups[train]) & set(groups[test]), name
    folds, _ = outer_folds(targets["instrument"], groups, n_folds=5)
    for train, test in folds:  # closed set: every test instrument also has training notes
        assert set(groups[test]) <= set(groups[train])
    few = attribute_targets(rows[:7], ["family"])  # one instrument: no disjoint folds
    assert outer_folds(few["family"], groups[:7])[1] == "one instrument only: no instrument-disjoint folds"


def test_qualities_are_scored_by_map_and_absent_tags_are_not_available():
    rows = synthetic_notes()
    tags = np.array([[int(c) for c in r["qualities"]] for r in rows])
    x = np.hstack([3.0 * tags, np.random.default_rng(3).standard_normal((len(rows), 6))])
    results = run_probes(
        {"emb": x}, attribute_targets(rows, ["qualities"]), [r["instrument"] for r in rows], FAST, log=None
    )
    entry = results["attributes"]["qualities"]
    assert entry["metric"] == "mAP" and entry["n_classes"] == 10
    assert abs(entry["chance"] - tags.mean()) < 0.05  # a random scorer's AP: the tags' prevalence
    assert entry["majority_mean"] == pytest.approx(entry["chance"])
    for probe in FAST:
        assert scores_of(results, "qualities")[probe]["mean"] > 0.9
    for row in rows:
        row["qualities"] = "0" * 10
    plain = run_probes(
        {"emb": x}, attribute_targets(rows, ["qualities"]), [r["instrument"] for r in rows], FAST, log=None
    )
    assert plain["attributes"]["qualities"]["available"] is False
    assert "not available" in plain["attributes"]["qualities"]["reason"]
    assert plain["scores"] == []


# ---------------------------------------------------------------------------
# Reference features
# ---------------------------------------------------------------------------


def test_log_mel_statistics_of_a_tone_peak_at_its_band_and_mfccs_have_their_size():
    t = np.arange(16000) / 16000
    low = log_mel_statistics(0.5 * np.sin(2 * np.pi * 220 * t), n_mels=40)
    high = log_mel_statistics(0.5 * np.sin(2 * np.pi * 3000 * t), n_mels=40)
    assert low.shape == (80,) and low.dtype == np.float32
    assert int(low[:40].argmax()) < int(high[:40].argmax())
    peak = int(low[:40].argmax())
    gated = log_mel_statistics(0.5 * np.sin(2 * np.pi * 220 * t) * (t < 0.5), n_mels=40)
    assert low[40 + peak] < 0.5 < 2.0 < gated[40 + peak]  # the spread over time: steady tone vs tone then silence
    assert mfcc_statistics(0.5 * np.sin(2 * np.pi * 220 * t), n_mfcc=13).shape == (26,)
    with pytest.raises(ValueError, match="mono signal"):
        log_mel_statistics(np.zeros((2, 100)))


def test_reference_features_are_cached(tmp_path):
    corpus = make_nsynth_corpus(str(tmp_path / "c"), (0, 0, 2), pitches=(60, 72), velocities=(100,), seconds=0.3)
    paths = sorted(str(p) for p in (tmp_path / "c" / "nsynth-test" / "audio").iterdir())
    calls = []

    def counted(signal, sample_rate):
        calls.append(1)
        return log_mel_statistics(signal, sample_rate, n_mels=16)

    first = reference_features(paths, counted, cache_folder=str(tmp_path / "cache"))
    second = reference_features(paths, counted, cache_folder=str(tmp_path / "cache"))
    assert first.shape == (4, 32) and np.array_equal(first, second) and len(calls) == 4
    other = reference_features(paths, functools.partial(mfcc_statistics, n_mfcc=5), str(tmp_path / "cache"))
    assert other.shape == (4, 10)  # other settings: computed again, not the cached log-mels
    assert corpus


# ---------------------------------------------------------------------------
# Output files
# ---------------------------------------------------------------------------


def test_every_output_file_is_written(tmp_path):
    rows = synthetic_notes(n_instruments=12, notes_per_instrument=5)
    for row in rows:
        row["qualities"] = "0" * 10  # as in a rendered corpus
    features = {"model_a": embed_family(rows), "logmel_stats": np.random.default_rng(4).standard_normal((60, 8))}
    knn = {"knn": FAST["knn"]}
    results = run_probes(
        features, attribute_targets(rows), [r["instrument"] for r in rows], knn, n_folds=3, inner_folds=2, log=None
    )
    run = {
        "data_folder": "/data/x",
        "n_notes": 60,
        "n_instruments": 12,
        "feature_sets": {
            "model_a": {"kind": "embedding", "dim": 16, "model": "/m/a"},
            "logmel_stats": {"kind": "reference", "dim": 8, "function": "f", "arguments": {"n_mels": 4}},
        },
        "settings": {"n_folds": 3, "inner_folds": 2, "probes": list(knn)},
    }
    paths = write_report(results, str(tmp_path), run)
    stored = json.loads(open(paths["probing.json"]).read())
    assert len(stored["scores"]) == 2 * 7  # 2 sets x 7 available attributes
    assert stored["attributes"]["qualities"]["available"] is False
    with open(paths["probing.csv"], newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 14 + 2  # plus one "not available" row per feature set
    family = [r for r in table if r["attribute"] == "family" and r["feature_set"] == "model_a"]
    assert float(family[0]["chance"]) == 0.25 and max(float(r["mean"]) for r in family) > 0.9
    md = open(paths["probing.md"]).read()
    assert "| family | accuracy | 25.0 |" in md and "not available" in md
    assert "**model_a** against the best reference feature: family +" in md
    plot_probe_bars(results, str(tmp_path / "bars.png"))
    coords = {name: tsne_coordinates(x, perplexity=10, max_iter=250) for name, x in features.items()}
    plot_tsne_families(coords, [r["family"] for r in rows], [r["source"] for r in rows], str(tmp_path / "f.png"))
    plot_tsne_pitch(coords, [r["pitch"] for r in rows], str(tmp_path / "p.png"))
    import matplotlib.image

    for name in ("bars.png", "f.png", "p.png"):
        picture = matplotlib.image.imread(str(tmp_path / name))
        assert picture.shape[0] > 300 and picture.shape[1] > 500, name


def test_models_are_named_by_system_or_explicitly(tmp_path):
    export = tmp_path / "transMIDI" / "model"
    export.mkdir(parents=True)
    (export / "model_info.json").write_text(json.dumps({"system": "transMIDI"}))
    assert name_models([str(export), str(export), f"mine={export}"]) == [
        ("transMIDI", str(export)),
        ("transMIDI-2", str(export)),
        ("mine", str(export)),
    ]
    with pytest.raises(ValueError, match="no model to probe"):
        name_models([])


# ---------------------------------------------------------------------------
# The recipe end to end, the map command, the browser
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tiny_corpus, tmp_path_factory):
    """A one-epoch tiny transMel, exported."""
    out = tmp_path_factory.mktemp("probing_model") / "transMel"
    run_recipe("transMel", tiny_corpus, out)
    return out / "model"


@pytest.fixture(scope="module")
def probe_notes(tmp_path_factory):
    """12 instruments (3 per family) x 3 pitches x 2 velocities, 0.5 s notes: 72 notes in one NSynth folder."""
    root = tmp_path_factory.mktemp("probe_notes")
    make_nsynth_corpus(str(root), (0, 0, 12), pitches=(48, 60, 67), velocities=(75, 127), seconds=0.5, seed=5)
    return root / "nsynth-test"


def run_probe_script(*args):
    cmd = [sys.executable, PROBE_SCRIPT, PROBING_YAML, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_recipe_end_to_end_with_two_models_side_by_side(tiny_model, probe_notes, tmp_path):
    out = tmp_path / "probing"
    args = [
        f"--model=first={tiny_model}",
        f"--model=second={tiny_model}",
        f"--data_folder={probe_notes}",
        f"--output_folder={out}",
        "--use_probes=[logistic_regression,knn]",
        "--attributes=[family,instrument,pitch,qualities]",
        "--n_folds=2",
        "--inner_folds=2",
        "--tsne_max_iter=250",
    ]
    proc = run_probe_script(*args)
    for name in (
        "probing.json",
        "probing.csv",
        "probing.md",
        "probing_bars.png",
        "tsne_family.png",
        "tsne_pitch.png",
        "tsne.npz",
        "map_first.html",
        "map_second.html",
    ):
        assert (out / name).stat().st_size > 0, name
    results = json.loads((out / "probing.json").read_text())
    assert list(results["feature_sets"]) == ["first", "second", "logmel_stats", "mfcc_stats"]
    assert results["n_notes"] == 72 and results["n_instruments"] == 12
    assert results["attributes"]["qualities"]["available"] is False  # synthetic notes carry no tags
    first = {(s["attribute"], s["probe"]): s["folds"] for s in results["scores"] if s["feature_set"] == "first"}
    second = {(s["attribute"], s["probe"]): s["folds"] for s in results["scores"] if s["feature_set"] == "second"}
    assert first == second and len(first) == 3 * 2  # the same model twice: the same scores, fold by fold
    assert results["attributes"]["family"]["chance"] == 0.25
    assert "| family | accuracy | 25.0 |" in proc.stdout
    tsne = np.load(out / "tsne.npz")
    assert tsne["first"].shape == (72, 2) and len(tsne["ids"]) == 72
    # A second run reads the embeddings back instead of computing them again (and the reference
    # features: their files stay as they were), and scores the same.
    reference = out / "reference" / "logmel_stats" / "features.npy"
    stamp = reference.stat().st_mtime_ns
    again = run_probe_script(*args[:5], "--attributes=[family]", "--write_maps=False", *args[6:])
    assert again.stdout.count("read back from") == 2 and "written to" not in again.stdout
    assert reference.stat().st_mtime_ns == stamp
    rerun = json.loads((out / "probing.json").read_text())["scores"]
    assert rerun == [s for s in results["scores"] if s["attribute"] == "family"]


def test_help_stays_fast_without_heavy_imports():
    code = (
        "import sys, timbre_lobes.__main__ as m; m.build_parser();"
        "print(sorted(k for k in ('torch', 'sklearn', 'plotly', 'speechbrain') if k in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


class Chromium:
    """Headless Chromium driven through the DevTools protocol on a pipe (its file descriptors 3 and 4)."""

    def __init__(self, binary, timeout=60):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def wire():  # in the child: the pipe ends on fds 3 and 4, kept across exec
            read_end, write_end = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-pipe"]
        self.proc = subprocess.Popen(
            [binary, *flags, "--autoplay-policy=no-user-gesture-required", "about:blank"],
            preexec_fn=wire,
            close_fds=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.timeout, self._buffer, self._id, self.events = timeout, b"", 0, []

    def _message(self, deadline):
        while b"\0" not in self._buffer:
            left = deadline - time.time()
            if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method, params=None, session=None, timeout=None):
        """Sends one DevTools command and returns its result; events met meanwhile go to ``events``."""
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.time() + (timeout or self.timeout)
        while True:
            reply = self._message(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_event(self, method, timeout=None):
        deadline = time.time() + (timeout or self.timeout)
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._message(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def errors(self):
        """Console errors, uncaught exceptions and failed loads the page reported."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                found.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                found.append(details.get("exception", {}).get("description") or details["text"])
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(params["entry"]["text"])
        return found

    def close(self):
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):
            self.send("Browser.close", timeout=10)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


#: Run in the loaded page: counts the markers drawn (not the legend's), clicks one point through
#: plotly's own click event and waits until the player has loaded the sound (or failed to).
CLICK_AND_LISTEN = """new Promise(function (resolve) {
  var gd = document.querySelector('.plotly-graph-div');
  var player = document.getElementById('%(player)s');
  var points = document.querySelectorAll('.scatterlayer .trace .points path.point').length;
  function done(extra) { resolve(Object.assign({points: points, src: player.src.slice(0, 60)}, extra)); }
  var timer = setTimeout(function () { done({timeout: true}); }, 30000);
  player.addEventListener('loadedmetadata', function () {
    clearTimeout(timer); done({duration: player.duration});
  });
  player.addEventListener('error', function () { clearTimeout(timer); done({error: player.error.code}); });
  gd.emit('plotly_click', {points: [{customdata: [%(index)d]}]});
})"""


def run_in_chromium(page, expression=None):
    """Loads ``page`` in headless Chromium, then evaluates ``expression`` (a promise): (its value, the errors)."""
    browser = Chromium(shutil.which("chromium") or shutil.which("chromium-browser"))
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Page.navigate", {"url": "file://" + os.path.abspath(page)}, session=session)
        browser.wait_event("Page.loadEventFired")
        value = None
        if expression is not None:
            params = {"expression": expression, "awaitPromise": True, "returnByValue": True}
            value = browser.send("Runtime.evaluate", params, session=session, timeout=60)["result"].get("value")
        return value, browser.errors()
    finally:
        browser.close()


def open_in_chromium(page, click_index=0):
    """Loads a map page and clicks one of its points: (what the page reported, its errors)."""
    return run_in_chromium(page, CLICK_AND_LISTEN % {"player": PLAYER_ID, "index": click_index})


needs_chromium = pytest.mark.skipif(
    not (shutil.which("chromium") or shutil.which("chromium-browser")),
    reason="headless Chromium is not installed (Debian package `chromium`; `make setup` installs it)",
)


@needs_chromium
def test_the_browser_harness_sees_console_errors(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>console.error('boom'); null.x;</script></body></html>")
    _, errors = run_in_chromium(str(page))
    assert errors[0] == "boom" and "TypeError" in errors[1]


@needs_chromium
def test_map_command_page_loads_draws_one_point_per_file_and_plays_on_click(tiny_model, probe_notes, tmp_path):
    from timbre_lobes.__main__ import main

    page = tmp_path / "maps" / "map.html"
    main(["map", str(probe_notes), "--model", str(tiny_model), "--out", str(page), "--audio", "link"])
    n_files = len(os.listdir(probe_notes / "audio"))
    report, errors = open_in_chromium(str(page), click_index=5)
    assert errors == [], errors
    assert report["points"] == n_files == 72
    # The click loaded the note, linked by a path relative to the page: its metadata gives its length.
    assert report["src"].startswith("file://") and report.get("duration") == pytest.approx(0.5, abs=0.01), report


@needs_chromium
def test_embedded_audio_map_needs_no_file_beside_it(probe_notes, tmp_path):
    paths = sorted(str(p) for p in (probe_notes / "audio").iterdir())[:20]
    rows = [{"id": os.path.basename(p), "family": FAMILIES[i % 4], "source": "acoustic"} for i, p in enumerate(paths)]
    page = tmp_path / "alone" / "map.html"
    written = write_map(str(page), np.random.default_rng(0).standard_normal((20, 2)), rows, paths, audio="embed")
    assert written == {"path": str(page), "n_points": 20, "audio": "embed"}
    report, errors = open_in_chromium(str(page), click_index=3)
    assert errors == [] and report["points"] == 20, (errors, report)
    assert report["src"].startswith("data:audio/wav;base64,")
    assert report.get("duration") == pytest.approx(0.5, abs=0.01), report
