"""Writers for results in the source geometry: maps / masks (NIfTI, NRRD) and per-slice CSV."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import OutputError
from ._messages import exception_summary
from .atomic import write_text_atomic, write_with
from .volume import Volume

MAP_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")


def write_volume(volume_like_map: Volume, path: str | os.PathLike, compress: bool = True) -> Path:
    """Write ``volume_like_map`` with its exact geometry; the format follows the suffix.

    float arrays are written as float32, boolean / integer masks as uint8.
    """
    import SimpleITK as sitk

    path = Path(path)
    if not str(path).lower().endswith(MAP_SUFFIXES):
        raise OutputError(f"map file {path} must end with one of {', '.join(MAP_SUFFIXES)}")
    array = np.asarray(volume_like_map.array)
    if array.dtype == bool or np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.uint8)
    else:
        array = array.astype(np.float32)
    image = volume_like_map.with_array(array).to_sitk()

    def write(tmp: Path) -> None:
        try:
            sitk.WriteImage(image, str(tmp), useCompression=compress)
        except RuntimeError as exc:
            raise OutputError(f"cannot write {path}: {exception_summary(exc)}") from exc

    return write_with(path, write)


def slice_scores_csv_text(indices: Sequence[int], positions_mm: Sequence[float], scores: Sequence[float]) -> str:
    if not (len(indices) == len(positions_mm) == len(scores)):
        raise OutputError(f"slice score columns differ in length: {len(indices)} indices, "
                          f"{len(positions_mm)} positions, {len(scores)} scores")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["index", "position_mm", "score"])
    for index, position, score in zip(indices, positions_mm, scores):
        writer.writerow([int(index), f"{float(position):.4f}", f"{float(score):.6g}"])
    return buffer.getvalue()


def write_slice_scores_csv(path: str | os.PathLike, indices: Sequence[int], positions_mm: Sequence[float],
                           scores: Sequence[float]) -> Path:
    """CSV with one row per slice: ``index,position_mm,score``."""
    return write_text_atomic(path, slice_scores_csv_text(indices, positions_mm, scores))


def read_slice_scores_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`write_slice_scores_csv` (used by the Slicer module and the tests)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    indices = np.asarray([int(r["index"]) for r in rows], dtype=np.int64)
    positions = np.asarray([float(r["position_mm"]) for r in rows], dtype=np.float64)
    scores = np.asarray([float(r["score"]) for r in rows], dtype=np.float32)
    return indices, positions, scores


def image_scores_csv_text(names: Sequence[str], scores: Sequence[float]) -> str:
    """CSV text with one row per scored 2D image: ``image,score``."""
    if len(names) != len(scores):
        raise OutputError(f"{len(names)} image names but {len(scores)} scores")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", "score"])
    for name, score in zip(names, scores):
        writer.writerow([name, f"{float(score):.6g}"])
    return buffer.getvalue()
