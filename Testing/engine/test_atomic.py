"""Atomic outputs: all or nothing, with ordinary file permissions."""

from __future__ import annotations

import os
import stat

import pytest

from d24fad.errors import OutputError
from d24fad.io.atomic import atomic_directory, write_text_atomic


def test_file_appears_whole_with_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "sub" / "a.txt", "hello")
    finally:
        os.umask(old)
    assert path.read_text() == "hello"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["a.txt"]


def test_failed_directory_leaves_nothing_and_keeps_the_old_one(tmp_path):
    out = tmp_path / "out"
    with atomic_directory(out) as tmp:
        (tmp / "first.txt").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_directory(out, overwrite=True) as tmp:
            (tmp / "second.txt").write_text("2")
            raise RuntimeError("crash mid-write")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert [p.name for p in out.iterdir()] == ["first.txt"]


def test_non_empty_folder_needs_overwrite(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("keep")
    with pytest.raises(OutputError, match="not empty"):
        with atomic_directory(tmp_path / "out"):
            pass
    assert (tmp_path / "out" / "x").read_text() == "keep"
