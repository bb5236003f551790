"""What every ``*_prepare.py`` shares: manifests written whole, input signatures, the up-to-date check."""

import csv
import json
import os

from timbre_lobes.atomic import atomic_open


def write_manifest(rows, path, fields, extra_keys="raise"):
    """Atomically writes ``rows`` (dicts) as a SpeechBrain CSV manifest of the columns ``fields``.

    ``extra_keys``: ``"raise"`` (a row key that is not a column is a ValueError) or ``"ignore"``.
    """
    with atomic_open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction=extra_keys)
        writer.writeheader()
        writer.writerows(rows)


def file_signature(path):
    """``[size in bytes, modification time in whole seconds]`` of an input file, to notice when it changes."""
    stat = os.stat(path)
    return [stat.st_size, int(stat.st_mtime)]


def preparation_done(options_path, options, outputs):
    """True when every output exists and ``options_path`` holds exactly ``options`` (a preparation's stamp).

    A preparation writes its options file last, so a run cut short, or one made
    with other options or inputs, is never taken for done.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> stamp = os.path.join(folder, "opt.json")
    >>> preparation_done(stamp, {"seed": 1}, [])
    False
    >>> _ = open(stamp, "w").write('{"seed": 1}')
    >>> preparation_done(stamp, {"seed": 1}, []), preparation_done(stamp, {"seed": 2}, [])
    (True, False)
    """
    if not all(os.path.isfile(p) for p in [*outputs, options_path]):
        return False
    try:
        with open(options_path) as handle:
            return json.load(handle) == options
    except (OSError, json.JSONDecodeError):
        return False
