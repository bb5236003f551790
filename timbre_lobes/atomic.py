"""Files that are either complete or absent: write to a temporary name, then rename.

An interrupted run must never leave a half-written manifest, trial list, result
or export that a later run would trust.
"""

import contextlib
import json
import os
import tempfile


@contextlib.contextmanager
def atomic_open(path, mode="w", **kwargs):
    """Opens a temporary file beside ``path`` and renames it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left as it was.

    Example
    -------
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> with atomic_open(os.path.join(folder, "a.txt")) as f:
    ...     _ = f.write("done")
    >>> open(os.path.join(folder, "a.txt")).read()
    'done'
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    # mkstemp creates private (0600) files; give the result the usual umask-based mode.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_json(path, obj):
    """Atomically writes ``obj`` as indented JSON."""
    with atomic_open(path, "w") as handle:
        json.dump(obj, handle, indent=2, sort_keys=False)
        handle.write("\n")
