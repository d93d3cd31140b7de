"""Heat-map overlays (anomaly map over the image) written as PNG with Pillow."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import InputError
from .io.atomic import write_with

# "hot"-like colour ramp: black -> dark red -> red -> yellow -> white, at these map fractions.
_RAMP_POSITIONS = np.array([0.0, 0.35, 0.6, 0.85, 1.0])
_RAMP_COLOURS = np.array([[0, 0, 0], [128, 0, 0], [255, 32, 0], [255, 220, 0], [255, 255, 255]], dtype=np.float64)
OVERLAY_ALPHA = 0.6
# Small slices (a 2 mm brain slice is about 100 px) are enlarged by a whole factor to be legible.
MIN_PNG_SIDE = 256


# Screen "down" and "right" in LPS for each plane, radiological convention: axial and coronal
# show the patient's right on the left of the image; sagittal faces left (anterior on the left).
_SCREEN_AXES_LPS = {
    "axial": (np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0])),
    "coronal": (np.array([0.0, 0.0, -1.0]), np.array([1.0, 0.0, 0.0])),
    "sagittal": (np.array([0.0, 0.0, -1.0]), np.array([0.0, 1.0, 0.0])),
}


def orient_for_display(volume, axis: str, plane: np.ndarray) -> np.ndarray:
    """Flip / transpose a slice from :func:`d24fad.slicing.get_slice` so that it looks as a
    radiologist expects (anterior or superior up, patient right on the image's left)."""
    from .slicing import itk_axis

    normal_axis = itk_axis(volume, axis)
    columns = volume.direction_matrix
    anatomical = ("sagittal", "coronal", "axial")[int(np.argmax(np.abs(columns[:, normal_axis])))]
    down, right = _SCREEN_AXES_LPS[anatomical]
    # get_slice keeps array order: rows follow the larger in-plane ITK axis, columns the smaller.
    col_axis, row_axis = sorted({0, 1, 2} - {normal_axis})
    row_dir, col_dir = columns[:, row_axis], columns[:, col_axis]
    if abs(col_dir @ down) > abs(row_dir @ down):
        plane, row_dir, col_dir = plane.T, col_dir, row_dir
    if row_dir @ down < 0:
        plane = plane[::-1]
    if col_dir @ right < 0:
        plane = plane[:, ::-1]
    return np.ascontiguousarray(plane)


def scale_to_unit(values: np.ndarray, vmin: Optional[float] = None, vmax: Optional[float] = None) -> np.ndarray:
    """Map values linearly to [0, 1] between vmin and vmax (defaults: the array's range)."""
    values = np.asarray(values, dtype=np.float64)
    vmin = float(values.min()) if vmin is None else float(vmin)
    vmax = float(values.max()) if vmax is None else float(vmax)
    if vmax <= vmin:
        return np.zeros_like(values)
    return np.clip((values - vmin) / (vmax - vmin), 0.0, 1.0)


def heat_colours(unit_values: np.ndarray) -> np.ndarray:
    """[0, 1] values -> RGB float colours (H x W x 3, 0..255) on the hot ramp."""
    return np.stack([np.interp(unit_values, _RAMP_POSITIONS, _RAMP_COLOURS[:, c]) for c in range(3)], axis=-1)


def overlay_rgb(image01: np.ndarray, anomaly_map: np.ndarray, vmin: Optional[float] = None,
                vmax: Optional[float] = None, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """uint8 RGB: the image in grey (or its colours) with the map blended in where it is high."""
    image01 = np.asarray(image01, dtype=np.float64)
    base = np.repeat(image01[..., None], 3, axis=-1) if image01.ndim == 2 else image01
    if base.shape[:2] != np.shape(anomaly_map):
        raise InputError(f"map shape {np.shape(anomaly_map)} differs from image shape {base.shape[:2]}")
    unit = scale_to_unit(anomaly_map, vmin, vmax)
    # Opacity grows with the score, so normal tissue stays readable under the overlay.
    weight = (alpha * unit)[..., None]
    blended = (1.0 - weight) * np.clip(base, 0.0, 1.0) * 255.0 + weight * heat_colours(unit)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def save_overlay_png(path: str | os.PathLike, image01: np.ndarray, anomaly_map: np.ndarray,
                     vmin: Optional[float] = None, vmax: Optional[float] = None) -> Path:
    """Write the overlay of ``anomaly_map`` on ``image01`` as a PNG (atomically)."""
    from PIL import Image

    image = Image.fromarray(overlay_rgb(image01, anomaly_map, vmin, vmax), mode="RGB")
    factor = max(1, -(-MIN_PNG_SIDE // max(image.size)))
    if factor > 1:
        image = image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
    return write_with(path, lambda tmp: image.save(tmp, format="PNG"))
