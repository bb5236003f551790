"""timbre_lobes.atomic.replaced_folder: a folder that is either the complete new one or the old one."""

import os
import stat

import pytest

from timbre_lobes.atomic import replaced_folder


def _write(folder, name, text):
    with open(os.path.join(folder, name), "w") as handle:
        handle.write(text)


def _tree(folder):
    return {name: open(os.path.join(folder, name)).read() for name in sorted(os.listdir(folder))}


def test_replaced_folder_creates_the_folder_and_its_parent(tmp_path):
    final = tmp_path / "deep" / "corpus"
    with replaced_folder(final) as tmp:
        assert os.path.dirname(tmp) == str(final.parent)
        assert os.path.basename(tmp).startswith(".corpus.tmp-")
        assert not final.exists()  # nothing is visible before the block ends
        _write(tmp, "a.txt", "new")
    assert _tree(final) == {"a.txt": "new"}
    assert os.listdir(final.parent) == ["corpus"]  # nothing left behind
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(final).st_mode) == 0o777 & ~umask  # not mkdtemp's 0700


def test_replaced_folder_replaces_an_existing_folder_as_a_whole(tmp_path):
    final = tmp_path / "model"
    final.mkdir()
    _write(final, "old.txt", "old")
    _write(final, "shared.txt", "old")
    with replaced_folder(final) as tmp:
        _write(tmp, "shared.txt", "new")
        assert _tree(final) == {"old.txt": "old", "shared.txt": "old"}  # kept until the new one is in place
    assert _tree(final) == {"shared.txt": "new"}  # no file of the old folder survives
    assert os.listdir(tmp_path) == ["model"]


def test_replaced_folder_keeps_the_old_folder_on_an_error_in_the_block(tmp_path):
    final = tmp_path / "model"
    final.mkdir()
    _write(final, "old.txt", "old")
    with pytest.raises(RuntimeError, match="midway"), replaced_folder(final) as tmp:
        _write(tmp, "half.txt", "half")
        raise RuntimeError("midway")
    assert _tree(final) == {"old.txt": "old"}
    assert os.listdir(tmp_path) == ["model"]


def test_replaced_folder_creates_nothing_on_an_error_without_an_old_folder(tmp_path):
    with pytest.raises(KeyboardInterrupt), replaced_folder(tmp_path / "model") as tmp:
        _write(tmp, "half.txt", "half")
        raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_replaced_folder_puts_the_old_folder_back_when_the_swap_fails(tmp_path, monkeypatch):
    final = tmp_path / "model"
    final.mkdir()
    _write(final, "old.txt", "old")
    real_rename = os.rename
    calls = []

    def rename(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the old folder moved aside, the new one about to move in
            raise OSError("disk gone")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="disk gone"), replaced_folder(final) as tmp:
        _write(tmp, "new.txt", "new")
    monkeypatch.undo()
    assert len(calls) == 3  # aside, (failed) in, back
    assert _tree(final) == {"old.txt": "old"}
    assert os.listdir(tmp_path) == ["model"]
