"""2D images: PNG / JPEG / TIFF / BMP through Pillow, single-frame DICOM through pydicom.

DICOM pixels get the modality LUT (rescale slope / intercept), MONOCHROME1 is inverted so
that bright always means dense, palette and YBR colour become RGB.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import DicomError, ImageReadError
from ._messages import decoder_failures_as_read_errors, require_finite_voxels

PILLOW_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
IMAGE_SUFFIXES = PILLOW_SUFFIXES | {".dcm", ".dicom", ".ima"}


@dataclasses.dataclass
class Image2D:
    """Pixels (float32, HxW or HxWx3) with the modality and a little metadata."""

    array: np.ndarray
    modality: Optional[str]
    metadata: dict[str, Any]
    source: str


def read_image_2d(path: str | os.PathLike) -> np.ndarray:
    """Pixels of a 2D image as float32, HxW (grey) or HxWx3 (RGB)."""
    return load_image_2d(path).array


def load_image_2d(path: str | os.PathLike) -> Image2D:
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image {path} does not exist or is not a file")
    suffix = path.suffix.lower()
    with decoder_failures_as_read_errors(path):
        image = _read_with_pillow(path) if suffix in PILLOW_SUFFIXES else _read_dicom_image(path)
    require_finite_voxels(image.array, path)
    return image


def _read_with_pillow(path: Path) -> Image2D:
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            image.seek(0)  # multi-page TIFF: the first page is the image
            mode = image.mode
            if mode in ("1", "L", "P;L", "I;16", "I;16B", "I;16L", "I", "F"):
                array = np.asarray(image)
            elif mode == "LA":
                array = np.asarray(image.convert("L"))
            else:
                array = np.asarray(image.convert("RGB"))
    array = array.astype(np.float32)
    return Image2D(array=array, modality=None, metadata={"format": path.suffix.lower().lstrip(".")},
                   source=str(path))


def _read_dicom_image(path: Path) -> Image2D:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_color_lut, apply_modality_lut

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            dataset = pydicom.dcmread(path)
        except InvalidDicomError as exc:
            raise ImageReadError(f"{path} is neither a known image format (PNG, JPEG, TIFF, BMP) nor DICOM") from exc
        if "PixelData" not in dataset:
            raise DicomError(f"{path} is a DICOM object without pixel data "
                             f"({dataset.get('Modality', 'unknown modality')})")
        frames = int(dataset.get("NumberOfFrames", 1) or 1)
        if frames > 1:
            raise DicomError(f"{path} is a multi-frame DICOM ({frames} frames): read it as a volume")
        pixels = dataset.pixel_array
        photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2"))
        if photometric == "PALETTE COLOR":
            pixels = apply_color_lut(pixels, dataset)
        elif int(dataset.get("SamplesPerPixel", 1) or 1) == 1:
            pixels = apply_modality_lut(pixels, dataset)
    array = np.asarray(pixels, dtype=np.float32)
    if photometric == "MONOCHROME1":
        # Low values are displayed white: invert so that bright means dense, like MONOCHROME2.
        array = array.max() + array.min() - array
    if array.ndim == 3 and array.shape[-1] != 3:
        raise DicomError(f"{path}: unsupported pixel layout {array.shape}")
    metadata = {"photometric_interpretation": photometric, "format": "dicom"}
    body_part = dataset.get("BodyPartExamined")
    if body_part:
        metadata["body_part"] = str(body_part)
    modality = str(dataset.get("Modality", "") or "") or None
    return Image2D(array=array, modality=modality, metadata=metadata, source=str(path))


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in ``folder`` (sorted by name; hidden files skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageReadError(f"image folder {folder} does not exist or is not a folder")
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ImageReadError(f"image folder {folder} contains no images "
                             f"({', '.join(sorted(s for s in IMAGE_SUFFIXES))})")
    return files
