"""Files and folders that are either complete or absent: write to a temporary name, then rename.

An interrupted run must never leave a half-written manifest, trial list, result
or export that a later run would trust.
"""

import contextlib
import json
import os
import shutil
import tempfile


def _umask():
    """The process's umask (read by setting and restoring it)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


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
    os.chmod(tmp, 0o666 & ~_umask())
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


def write_report(folder, stem, record, text):
    """Writes a benchmark's ``<stem>.json`` (``record``) and ``<stem>.md`` (``text``) into ``folder``, atomically.

    The folder is created when missing. Returns the two paths.
    """
    os.makedirs(folder, exist_ok=True)
    json_path, md_path = os.path.join(folder, f"{stem}.json"), os.path.join(folder, f"{stem}.md")
    write_json(json_path, record)
    with atomic_open(md_path) as handle:
        handle.write(text)
    return json_path, md_path


@contextlib.contextmanager
def replaced_folder(final):
    """Yields a new temporary folder beside ``final``; when the block ends without error it replaces ``final``.

    The replacement is atomic: an existing ``final`` is kept until the new
    folder is in place (it is renamed aside, the new folder renamed onto
    ``final``, then the old one removed; if that rename fails the old folder is
    put back). On an error inside the block, or during the swap, the temporary
    folder is removed and ``final`` is left as it was. The parent of ``final``
    is created if needed; the new folder gets the usual umask-based permissions
    (not ``mkdtemp``'s private ones).

    Arguments
    ---------
    final : str or os.PathLike
        The folder to create or replace.

    Yields
    ------
    str
        The absolute path of the temporary folder to fill (a hidden
        ``.<name>.tmp-*`` sibling of ``final``).

    Example
    -------
    >>> import tempfile, os
    >>> final = os.path.join(tempfile.mkdtemp(), "corpus")
    >>> with replaced_folder(final) as tmp:
    ...     _ = open(os.path.join(tmp, "a.txt"), "w").write("done")
    >>> os.listdir(final), os.listdir(os.path.dirname(final))
    (['a.txt'], ['corpus'])
    """
    final = os.path.abspath(os.fspath(final))
    parent, name = os.path.split(final)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{name}.tmp-")
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        _swap_in(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(new, final):
    """Renames the complete folder ``new`` onto ``final``, keeping the old one until it is in place."""
    if not os.path.exists(final):
        os.rename(new, final)
        return
    parent, name = os.path.split(final)
    old = tempfile.mkdtemp(dir=parent, prefix=f".{name}.old-")
    os.rmdir(old)
    os.rename(final, old)
    try:
        os.rename(new, final)
    except BaseException:
        os.rename(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)


def save_figure(fig, path, dpi=100):
    """Saves a matplotlib figure to ``path`` atomically (a picture cut short never replaces one) and closes it."""
    import matplotlib.pyplot as plt

    tmp = f"{path}.tmp{os.path.splitext(path)[1]}"
    try:
        fig.savefig(tmp, dpi=dpi)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)
