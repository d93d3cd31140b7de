"""THE preprocessing path shared by training, the CLI and the Slicer module.

1. ``normalize_intensity``: raw intensities -> float32 in [0, 1], by modality (CT window
   presets, MR / PET / US percentiles per volume excluding background, X-ray percentiles,
   photographs min-max) or by explicit override.
2. ``SquareFit`` / ``to_model_input``: a 2D slice -> the model's ``[3, S, S]`` input, aspect
   preserved by padding to a square (no distortion), then resized; ``SquareFit.inverse``
   brings an ``[S, S]`` map back onto the original slice grid.

MONAI's transforms do the scaling, padding, resizing and cropping.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from .errors import InputError

# CT windows as (level, width) in Hounsfield units.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "soft": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
}
# Other explicit modes a user can ask for.
INTENSITY_MODES = ("auto", "percentile", "minmax", "dicom", "none")
WINDOW_CHOICES = tuple(CT_WINDOWS) + INTENSITY_MODES
PERCENTILE_RANGE = (0.5, 99.5)

PERCENTILE_FOREGROUND_MODALITIES = frozenset({"MR", "PT", "NM", "US"})
XRAY_MODALITIES = frozenset({"CR", "DX", "DR", "MG", "XA", "RF", "RG", "PX", "IO"})
HEAD_BODY_PARTS = ("HEAD", "BRAIN", "SKULL")
CHEST_BODY_PARTS = ("CHEST", "LUNG", "THORAX")

_CUSTOM_WINDOW = re.compile(r"^\s*(?P<width>[-+]?\d+(\.\d*)?)\s*/\s*(?P<level>[-+]?\d+(\.\d*)?)\s*$")

WindowSpec = Union[str, tuple[float, float], None]


@dataclasses.dataclass(frozen=True)
class IntensityPlan:
    """How raw values were mapped to [0, 1] (recorded in run.json)."""

    mode: str  # "window", "percentile", "percentile_foreground", "minmax", "none"
    low: float
    high: float
    reason: str


def _as_numpy(data) -> np.ndarray:
    """MONAI returns MetaTensors; the engine works in numpy."""
    if hasattr(data, "detach"):
        data = data.detach().cpu().numpy()
    return np.asarray(data)


def parse_window(window: WindowSpec) -> tuple[str, Optional[tuple[float, float]]]:
    """``("window", (low, high))`` for presets and ``"W/L"``; ``(mode, None)`` otherwise."""
    if window is None:
        return "auto", None
    if isinstance(window, (tuple, list)):
        if len(window) != 2:
            raise InputError(f"--window as numbers must be (width, level), got {window!r}")
        width, level = float(window[0]), float(window[1])
        return "window", _window_bounds(level, width, window)
    text = str(window).strip().lower()
    if text in CT_WINDOWS:
        level, width = CT_WINDOWS[text]
        return "window", _window_bounds(level, width, window)
    if text in INTENSITY_MODES:
        return text, None
    match = _CUSTOM_WINDOW.match(text)
    if match:
        return "window", _window_bounds(float(match["level"]), float(match["width"]), window)
    raise InputError(f"--window {window!r} is not one of {', '.join(WINDOW_CHOICES)} nor 'W/L' "
                     "(width/level, e.g. 400/40)")


def _window_bounds(level: float, width: float, original) -> tuple[float, float]:
    if not (np.isfinite(level) and np.isfinite(width)) or width <= 0:
        raise InputError(f"--window {original!r}: width must be positive and finite")
    return level - width / 2.0, level + width / 2.0


def plan_intensity(array: np.ndarray, modality: Optional[str] = None, window: WindowSpec = "auto",
                   metadata: Optional[Mapping] = None) -> IntensityPlan:
    """Choose the intensity mapping for ``array`` (whole volume or image)."""
    metadata = metadata or {}
    mode, bounds = parse_window(window)
    modality = (modality or metadata.get("modality") or "").upper() or None
    if mode == "window":
        return IntensityPlan("window", bounds[0], bounds[1], f"window {window}")
    if mode == "auto":
        mode, bounds, reason = _automatic_mode(modality, metadata)
        if bounds is not None:
            return IntensityPlan("window", bounds[0], bounds[1], reason)
    else:
        reason = f"--window {mode}"
    if mode == "dicom":
        center, width = metadata.get("window_center"), metadata.get("window_width")
        if center is None or width is None:
            raise InputError("--window dicom: the input has no WindowCenter / WindowWidth")
        low, high = _window_bounds(float(center), float(width), window)
        return IntensityPlan("window", low, high, "DICOM window center/width")
    if mode == "none":
        return IntensityPlan("none", 0.0, 1.0, reason)
    if mode == "minmax":
        return IntensityPlan("minmax", float(np.min(array)), float(np.max(array)), reason)
    values = array
    if mode == "percentile_foreground":
        # Background (air around the body) sits at the minimum; it would drag the low percentile.
        foreground = array[array > np.min(array)]
        values = foreground if foreground.size else array
    low, high = np.percentile(values, PERCENTILE_RANGE)
    return IntensityPlan(mode, float(low), float(high), reason)


def _automatic_mode(modality: Optional[str], metadata: Mapping):
    if modality == "CT":
        body_part = str(metadata.get("body_part") or "").upper()
        if any(part in body_part for part in HEAD_BODY_PARTS):
            preset = "brain"
        elif any(part in body_part for part in CHEST_BODY_PARTS):
            preset = "lung"
        else:
            preset = "soft"
        level, width = CT_WINDOWS[preset]
        return "window", (level - width / 2, level + width / 2), f"CT {preset} window (auto)"
    if modality in PERCENTILE_FOREGROUND_MODALITIES:
        return "percentile_foreground", None, f"{modality}: 0.5-99.5 % percentiles of the foreground (auto)"
    if modality in XRAY_MODALITIES:
        return "percentile", None, f"{modality}: 0.5-99.5 % percentiles (auto)"
    return "minmax", None, f"{modality or 'unknown modality'}: min-max (auto)"


def apply_intensity_plan(array: np.ndarray, plan: IntensityPlan) -> np.ndarray:
    from monai.transforms import ScaleIntensityRange

    array = np.asarray(array, dtype=np.float32)
    if plan.mode == "none":
        return np.clip(array, 0.0, 1.0).astype(np.float32)
    if not plan.high > plan.low:
        # A constant image carries no contrast: map it to 0 rather than divide by zero.
        return np.zeros_like(array, dtype=np.float32)
    scale = ScaleIntensityRange(a_min=plan.low, a_max=plan.high, b_min=0.0, b_max=1.0, clip=True)
    return _as_numpy(scale(array)).astype(np.float32, copy=False)


def normalize_intensity(array: np.ndarray, modality: Optional[str] = None, window: WindowSpec = "auto",
                        metadata: Optional[Mapping] = None) -> np.ndarray:
    """Raw intensities -> float32 in [0, 1]; see :func:`plan_intensity` for the rules."""
    array = np.asarray(array, dtype=np.float32)
    if array.size == 0:
        raise InputError("normalize_intensity: the array is empty")
    if not np.all(np.isfinite(array)):
        raise InputError("normalize_intensity: the array contains NaN or infinite values")
    return apply_intensity_plan(array, plan_intensity(array, modality, window, metadata))


@dataclasses.dataclass(frozen=True)
class SquareFit:
    """Geometry from one slice shape to the model's S x S square and back.

    Forward: pad (zeros, centred; the odd pixel goes after) to a square of side
    ``max(height, width)``, then resize to ``size``. Inverse: resize back to the square,
    then crop the padding away, so a map lands on exactly the slice's pixels.
    """

    height: int
    width: int
    size: int

    @classmethod
    def for_shape(cls, shape: Sequence[int], size: int) -> "SquareFit":
        height, width = int(shape[0]), int(shape[1])
        if height < 1 or width < 1 or int(size) < 1:
            raise InputError(f"cannot fit a {height}x{width} image to a {size}x{size} model input")
        return cls(height, width, int(size))

    @property
    def side(self) -> int:
        return max(self.height, self.width)

    @property
    def pad_top(self) -> int:
        return (self.side - self.height) // 2

    @property
    def pad_left(self) -> int:
        return (self.side - self.width) // 2

    def forward(self, image: np.ndarray) -> np.ndarray:
        """HxW -> SxS, HxWx3 -> SxSx3 (float32)."""
        from monai.transforms import Resize, SpatialPad

        channels_first = self._channels_first(image, (self.height, self.width))
        padded = SpatialPad(spatial_size=(self.side, self.side), method="symmetric", mode="constant")(channels_first)
        resize = Resize(spatial_size=(self.size, self.size), mode="bilinear", anti_aliasing=self.side > self.size)
        return self._channels_last(_as_numpy(resize(padded)), np.ndim(image) == 3)

    def inverse(self, square_map: np.ndarray) -> np.ndarray:
        """SxS (or SxSx3) -> map on the original HxW grid."""
        from monai.transforms import Resize, SpatialCrop

        channels_first = self._channels_first(square_map, (self.size, self.size))
        resize = Resize(spatial_size=(self.side, self.side), mode="bilinear", anti_aliasing=self.size > self.side)
        crop = SpatialCrop(roi_start=(self.pad_top, self.pad_left),
                           roi_end=(self.pad_top + self.height, self.pad_left + self.width))
        return self._channels_last(_as_numpy(crop(resize(channels_first))), np.ndim(square_map) == 3)

    @staticmethod
    def _channels_first(image: np.ndarray, expected: tuple[int, int]) -> np.ndarray:
        image = np.asarray(image, dtype=np.float32)
        if image.ndim == 2:
            image = image[None]
        elif image.ndim == 3 and image.shape[-1] == 3:
            image = np.moveaxis(image, -1, 0)
        else:
            raise InputError(f"expected an HxW or HxWx3 image, got shape {image.shape}")
        if tuple(image.shape[1:]) != tuple(expected):
            raise InputError(f"image of shape {image.shape[1:]} does not match the fitted shape {expected}")
        return np.ascontiguousarray(image)

    @staticmethod
    def _channels_last(image: np.ndarray, colour: bool) -> np.ndarray:
        image = image.astype(np.float32, copy=False)
        return np.moveaxis(image, 0, -1).copy() if colour else image[0].copy()


def to_model_input(image01: np.ndarray, size: int) -> tuple[np.ndarray, SquareFit]:
    """A [0, 1] image (HxW grey or HxWx3 RGB) -> ``[3, S, S]`` float32 in [0, 1] and its fit."""
    image01 = np.asarray(image01, dtype=np.float32)
    fit = SquareFit.for_shape(image01.shape[:2], size)
    square = np.clip(fit.forward(image01), 0.0, 1.0)
    if square.ndim == 2:
        chw = np.repeat(square[None], 3, axis=0)
    else:
        chw = np.moveaxis(square, -1, 0)
    return np.ascontiguousarray(chw, dtype=np.float32), fit


def batch_to_model_input(images: Sequence[np.ndarray], size: int) -> tuple[np.ndarray, list[SquareFit]]:
    """Several [0, 1] images -> ``[N, 3, S, S]`` and one :class:`SquareFit` each."""
    if len(images) == 0:
        return np.zeros((0, 3, int(size), int(size)), dtype=np.float32), []
    converted = [to_model_input(image, size) for image in images]
    return np.stack([c[0] for c in converted]), [c[1] for c in converted]


# --------------------------------------------------------------------------------------
# Body (tissue) mask: where an anomaly can be. Air around the patient is never a finding,
# yet a model compares it with the supports like any other pixel; slices that show only
# air (above the head, beyond the feet) would otherwise outrank every real finding.

CT_BODY_THRESHOLD_HU = -500.0  # between air (-1000) and fat (-100); lungs are enclosed, then filled
MIN_BODY_FRACTION = 0.01  # a slice with less tissue than this is treated as empty


def body_mask(array: np.ndarray, modality: Optional[str] = None) -> np.ndarray:
    """Boolean mask of the patient's body in a raw (not normalised) 2D image or 3D volume.

    CT in Hounsfield units: tissue above -500 HU. Other images: Otsu's threshold between
    background and foreground (SimpleITK). Holes enclosed in each 2D plane (lungs, bowel
    gas, ventricles) are filled plane by plane along axis 0, and specks are removed.
    """
    import SimpleITK as sitk
    from scipy import ndimage

    data = np.nan_to_num(np.asarray(array, dtype=np.float32))
    if data.size == 0 or float(data.max()) <= float(data.min()):
        return np.zeros(data.shape, dtype=bool)
    if (modality or "").upper() == "CT" and float(data.min()) < CT_BODY_THRESHOLD_HU:
        threshold = CT_BODY_THRESHOLD_HU
    else:
        otsu = sitk.OtsuThresholdImageFilter()
        otsu.Execute(sitk.GetImageFromArray(data))
        # Otsu on images dominated by dark background lands high; halve the way down so
        # that dim tissue (grey matter, fat-suppressed regions) stays inside the body.
        threshold = float(data.min()) + 0.5 * (otsu.GetThreshold() - float(data.min()))
    mask = data > threshold
    planes = mask[None] if mask.ndim == 2 else mask
    filled = np.empty_like(planes)
    for k, plane in enumerate(planes):
        plane = ndimage.binary_opening(plane, iterations=1)
        filled[k] = ndimage.binary_fill_holes(plane)
    return filled[0] if mask.ndim == 2 else filled
