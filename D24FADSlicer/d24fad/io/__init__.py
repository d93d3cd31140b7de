"""Medical image input and output (DICOM, NIfTI/NRRD/MHA, 2D images) for d24fad.

Readers return :class:`Volume` (3D, SimpleITK geometry) or 2D float32 arrays; writers put
results back in the source geometry, atomically. DICOM SEG / Parametric Map writers live in
:mod:`d24fad.io.dicom_out` (imported lazily: highdicom is slow to import).
"""

from __future__ import annotations

from .dicom import SeriesInfo, find_dicom_series, scan_dicom_folder
from .images import list_images, load_image_2d, read_image_2d
from .readers import read_volume
from .volume import Volume
from .writers import read_slice_scores_csv, write_slice_scores_csv, write_volume


def write_dicom_seg(*args, **kwargs):
    from .dicom_out import write_dicom_seg as _write

    return _write(*args, **kwargs)


def write_dicom_pmap(*args, **kwargs):
    from .dicom_out import write_dicom_pmap as _write

    return _write(*args, **kwargs)


__all__ = [
    "SeriesInfo", "Volume", "find_dicom_series", "list_images", "load_image_2d", "read_image_2d",
    "read_slice_scores_csv", "read_volume", "scan_dicom_folder", "write_dicom_pmap", "write_dicom_seg",
    "write_slice_scores_csv", "write_volume",
]
