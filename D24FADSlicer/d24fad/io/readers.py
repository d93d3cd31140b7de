"""``read_volume``: one entry point for DICOM folders / files, NIfTI, NRRD and MetaImage."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import GeometryError, ImageReadError
from ._messages import decoder_failures_as_read_errors, exception_summary, require_finite_voxels
from .volume import Volume

ITK_VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")

# A header may claim any size; refuse before allocating (2**31 voxels = 8 GiB of float32).
MAX_VOXELS = 2**31


def has_itk_volume_suffix(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(ITK_VOLUME_SUFFIXES)


def read_volume(path: str | os.PathLike, series_uid: Optional[str] = None) -> Volume:
    """Read a DICOM folder or file, NIfTI, NRRD or MHA/MHD file as a float32 :class:`Volume`."""
    from . import dicom

    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"input {path} does not exist")
    with decoder_failures_as_read_errors(path):
        if path.is_dir():
            volume = dicom.read_dicom_folder(path, series_uid)
        elif has_itk_volume_suffix(path):
            volume = _read_itk_volume(path)
        else:
            volume = dicom.read_dicom_file(path, series_uid)
    require_finite_voxels(volume.array, path)
    return volume


def _read_itk_volume(path: Path) -> Volume:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise ImageReadError(f"cannot read image header of {path}: {exception_summary(exc)}") from exc
    size = tuple(reader.GetSize())
    if reader.GetNumberOfComponents() != 1:
        raise GeometryError(f"{path} has {reader.GetNumberOfComponents()} components per voxel; "
                            "only scalar volumes can be scored")
    # A trailing singleton dimension (x, y, z, 1) is a 3D volume stored as 4D.
    while len(size) > 3 and size[-1] == 1:
        size = size[:-1]
    if len(size) > 3:
        raise GeometryError(f"{path} is a {len(size)}D image of size {tuple(reader.GetSize())}; "
                            "only 3D volumes can be scored (split the time points first)")
    if int(np.prod(size, dtype=np.int64)) > MAX_VOXELS:
        raise ImageReadError(f"{path} claims {size} voxels, more than can be scored")
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise ImageReadError(f"cannot read voxels of {path}: {exception_summary(exc)}") from exc
    if image.GetDimension() == 4:
        image = image[:, :, :, 0]
    if str(path).lower().endswith((".nii", ".nii.gz")):
        _refuse_nifti_nans(path)
    return Volume.from_sitk(image, modality=None, metadata={"format": path.name.split(".", 1)[-1]},
                            source=str(path))


def _refuse_nifti_nans(path: Path) -> None:
    """ITK's NIfTI reader silently turns NaN voxels into 0; nibabel sees the stored values."""
    import nibabel

    image = nibabel.load(str(path))
    if np.issubdtype(image.get_data_dtype(), np.floating) or image.dataobj.slope != 1 or image.dataobj.inter != 0:
        if not np.all(np.isfinite(np.asanyarray(image.dataobj))):
            raise ImageReadError(f"{path} contains NaN or infinite voxel values")
