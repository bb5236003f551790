"""Shared fixtures: a tiny NSynth-format corpus made on the fly, and paths to shared samples."""

import json
import os
import sys

import pytest

# Re-exported for ``from conftest import make_nsynth_corpus``; new code imports timbre_lobes.data.synthetic.
from timbre_lobes.data.synthetic import make_nsynth_corpus, synth_note  # noqa: F401

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")
sys.path.insert(0, os.path.join(REPO, "recipes", "NSynth"))


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A 14-instrument, 168-note NSynth-format corpus of 1 s synthetic notes."""
    return make_nsynth_corpus(str(tmp_path_factory.mktemp("nsynth")))


@pytest.fixture(scope="session")
def shared_nsynth():
    """The 400 real NSynth test notes beside the repository."""
    folder = os.path.join(SHARED_DATA, "nsynth-test-dev")
    if not os.path.isdir(folder):
        pytest.fail(f"shared NSynth sample missing: {folder}")
    return folder


def load_module(path, name=None):
    """A script that is no package module (``benchmarks/*.py``, a recipe's script), imported from its path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name or os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rewrite_examples(root, change, splits=("train", "valid", "test")):
    """Applies ``change(metadata)`` to every note record of a corpus's ``examples.json`` files, in place."""
    for split in splits:
        path = os.path.join(root, f"nsynth-{split}", "examples.json")
        with open(path) as handle:
            examples = json.load(handle)
        for meta in examples.values():
            change(meta)
        with open(path, "w") as handle:
            json.dump(examples, handle)
