"""Slices of a volume along a scoring axis, and slice index <-> physical position.

Axes:
- ``acquisition``: array axis 0 (ITK index k), the slice axis of a DICOM series.
- ``axial`` / ``coronal`` / ``sagittal``: the array axis whose direction is closest to the
  patient's S / A / R axis. Slices are always whole array planes (no resampling); for an
  oblique volume the closest axis is used.

Positions are millimetres along the slice normal, as 3D Slicer's slice views show their
offset: for axial / coronal / sagittal the RAS coordinate S / A / R of the slice centre;
for ``acquisition`` the signed distance of the slice plane along the volume's third
direction column (LPS), i.e. ``dot(plane point, normal)``. For a point picked in a viewer,
:func:`physical_point_to_slice_index` needs no convention at all.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import InputError
from .io.volume import Volume

AXES = ("acquisition", "axial", "coronal", "sagittal")
# Patient axis of each anatomical plane's normal: LPS component, and the sign turning it into RAS.
_PLANE_NORMALS = {"axial": (2, 1.0), "coronal": (1, -1.0), "sagittal": (0, -1.0)}


def _check_axis(axis: str) -> str:
    if axis not in AXES:
        raise InputError(f"--axis {axis!r} is not one of {', '.join(AXES)}")
    return axis


def itk_axis(volume: Volume, axis: str) -> int:
    """ITK index axis (0 = i, 1 = j, 2 = k) that the slices of ``axis`` are stacked along."""
    _check_axis(axis)
    if axis == "acquisition":
        return 2
    lps_component, _ = _PLANE_NORMALS[axis]
    return int(np.argmax(np.abs(volume.direction_matrix[lps_component, :])))


def array_axis(volume: Volume, axis: str) -> int:
    """numpy axis of ``volume.array`` ([k, j, i]) for the scoring ``axis``."""
    return 2 - itk_axis(volume, axis)


def slice_count(volume: Volume, axis: str = "acquisition") -> int:
    return int(volume.array.shape[array_axis(volume, axis)])


def check_slice_index(volume: Volume, axis: str, index: int, what: str = "slice index") -> int:
    count = slice_count(volume, axis)
    if not isinstance(index, (int, np.integer)) or not 0 <= int(index) < count:
        raise InputError(f"{what} {index} is out of range: {axis} axis of {volume.source or 'the volume'} "
                         f"has slices 0..{count - 1}")
    return int(index)


def get_slice(volume: Volume, axis: str, index: int, array: np.ndarray | None = None) -> np.ndarray:
    """2D slice ``index`` along ``axis`` (of ``array`` if given: a map with the volume's shape)."""
    index = check_slice_index(volume, axis, index)
    source = volume.array if array is None else array
    return np.take(source, index, axis=array_axis(volume, axis))


def set_slice(target: np.ndarray, volume: Volume, axis: str, index: int, values: np.ndarray) -> None:
    """Write a 2D slice into ``target`` (shaped like ``volume.array``) in place."""
    index = check_slice_index(volume, axis, index)
    view = np.moveaxis(target, array_axis(volume, axis), 0)
    view[index] = values


def stack_slices(volume: Volume, axis: str, slices: Sequence[np.ndarray], dtype=np.float32) -> np.ndarray:
    """Put one 2D array per slice (in index order) back into an array shaped like the volume."""
    if len(slices) != slice_count(volume, axis):
        raise InputError(f"expected {slice_count(volume, axis)} slices along {axis}, got {len(slices)}")
    stacked = np.stack([np.asarray(s, dtype=dtype) for s in slices], axis=0)
    return np.ascontiguousarray(np.moveaxis(stacked, 0, array_axis(volume, axis)))


def slice_normal_lps(volume: Volume, axis: str) -> np.ndarray:
    """Unit vector (LPS) along which positions are measured for ``axis``."""
    _check_axis(axis)
    if axis == "acquisition":
        return volume.direction_matrix[:, 2].copy()
    lps_component, ras_sign = _PLANE_NORMALS[axis]
    normal = np.zeros(3)
    normal[lps_component] = ras_sign
    return normal


def _slice_centre_index(volume: Volume, axis: str, index: float) -> np.ndarray:
    c = itk_axis(volume, axis)
    size_ijk = np.asarray(volume.shape[::-1], dtype=np.float64)
    centre = (size_ijk - 1.0) / 2.0
    centre[c] = index
    return centre


def slice_index_to_position(volume: Volume, axis: str, index: float) -> float:
    """Position in mm of slice ``index`` along ``axis`` (see the module docstring)."""
    point = volume.index_to_physical(_slice_centre_index(volume, axis, float(index)))
    return float(point @ slice_normal_lps(volume, axis))


def slice_positions(volume: Volume, axis: str) -> np.ndarray:
    return np.asarray([slice_index_to_position(volume, axis, i) for i in range(slice_count(volume, axis))])


def position_to_slice_index(volume: Volume, axis: str, position_mm: float) -> int:
    """Nearest slice index to ``position_mm``; error when outside the volume by > half a slice."""
    first = slice_index_to_position(volume, axis, 0)
    step = slice_index_to_position(volume, axis, 1) - first
    count = slice_count(volume, axis)
    if abs(step) < 1e-9:
        raise InputError(f"the {axis} axis of {volume.source or 'the volume'} is parallel to its slices; "
                         "positions cannot address slices")
    continuous = (float(position_mm) - first) / step
    index = int(np.floor(continuous + 0.5))
    if not -0.5 <= continuous <= count - 0.5:
        raise InputError(f"position {position_mm:.3f} mm is outside the {axis} slices of "
                         f"{volume.source or 'the volume'} ({first:.3f} .. {first + step * (count - 1):.3f} mm)")
    return min(max(index, 0), count - 1)


def physical_point_to_slice_index(volume: Volume, axis: str, point_lps: Sequence[float]) -> int:
    """Index of the slice along ``axis`` containing the LPS point (e.g. a viewer's cursor)."""
    continuous = volume.physical_to_continuous_index(point_lps)[itk_axis(volume, axis)]
    index = int(np.floor(continuous + 0.5))
    return check_slice_index(volume, axis, index, what=f"point {list(point_lps)} gives slice")
