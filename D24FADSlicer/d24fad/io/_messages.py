"""Short, user-facing error messages for library failures on bad input files."""

from __future__ import annotations

import contextlib
from typing import Iterator

from ..errors import D24FADError, ImageReadError


def exception_summary(exc: BaseException) -> str:
    """The last non-empty line of ``exc``'s message (SimpleITK's are long), or its class name."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


@contextlib.contextmanager
def decoder_failures_as_read_errors(path) -> Iterator[None]:
    """Any decoder exception on ``path`` becomes an :class:`ImageReadError` naming it.

    Bad files make third-party decoders raise almost anything (ValueError, struct.error,
    RuntimeError, ...); the user must get one typed error, never a crash.
    """
    try:
        yield
    except (D24FADError, MemoryError):
        raise
    except Exception as exc:
        raise ImageReadError(f"cannot read {path}: {type(exc).__name__}: {exception_summary(exc)}") from exc


def require_finite_voxels(array, path) -> None:
    """Empty or NaN / infinite data would silently poison every score: refuse it."""
    import numpy as np

    if array.size == 0:
        raise ImageReadError(f"{path} holds no pixels")
    if not np.all(np.isfinite(array)):
        raise ImageReadError(f"{path} contains NaN or infinite values")
