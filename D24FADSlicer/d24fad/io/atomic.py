"""Atomic file output: write to a temporary file in the destination folder, then rename.

A crash, a cancel or an exception mid-write never leaves a half-written output behind,
and an existing file is only replaced once the new content is complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from ..errors import OutputError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(destination: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``destination``; rename it into place on success.

    ``suffix`` defaults to the destination's full suffix (``.nii.gz`` stays ``.nii.gz``) so
    that writers choosing a format from the file name still work.
    """
    destination = Path(destination)
    folder = destination.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {folder}: {exc}") from exc
    if suffix is None:
        suffix = "".join(destination.suffixes)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=f".part{suffix}", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates files readable by their owner only; outputs get the usual permissions.
    os.chmod(tmp, 0o666 & ~_current_umask())
    try:
        yield tmp
        os.replace(tmp, destination)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_bytes_atomic(destination: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(destination) as tmp:
        tmp.write_bytes(data)
    return Path(destination)


def write_text_atomic(destination: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(destination, text.encode("utf-8"))


def write_with(destination: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` and move the result to ``destination`` atomically."""
    with atomic_path(destination) as tmp:
        writer(tmp)
    return Path(destination)


@contextlib.contextmanager
def atomic_directory(destination: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Build a whole output folder in a sibling temporary folder, then move it into place.

    Used when a job writes several files that only make sense together: either all of
    them appear, or none does. With ``overwrite`` an existing folder is replaced only
    after the new one is complete.
    """
    destination = Path(destination)
    if destination.exists() and not destination.is_dir():
        raise OutputError(f"output path {destination} exists and is not a folder")
    if destination.exists() and any(destination.iterdir()) and not overwrite:
        raise OutputError(f"output folder {destination} is not empty (use --overwrite to replace it)")
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {destination.parent}: {exc}") from exc
    tmp = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".part", dir=destination.parent))
    os.chmod(tmp, 0o777 & ~_current_umask())
    try:
        yield tmp
        if destination.exists():
            backup = destination.with_name(f".{destination.name}.old")
            if backup.exists():
                shutil.rmtree(backup)
            os.replace(destination, backup)
            os.replace(tmp, destination)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(tmp, destination)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
