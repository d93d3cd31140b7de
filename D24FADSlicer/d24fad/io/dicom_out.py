"""DICOM output with highdicom: a binary Segmentation ("Anomaly") and a Parametric Map.

Both reference the source series (its instances, study and frame of reference), get new
series / instance UIDs, and carry only the patient / study attributes the standard needs to
attach them to the source study (highdicom copies exactly those).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import InputError, OutputError
from ._messages import exception_summary
from .atomic import write_with
from .volume import Volume

MANUFACTURER = "D24FADSlicer"
MODEL_NAME = "D24FAD few-shot anomaly detection"
ALGORITHM_NAME = "D24FADSlicer"


def _source_datasets(volume: Volume) -> list:
    import pydicom

    files = volume.metadata.get("dicom_files")
    if not files:
        raise InputError(f"DICOM SEG / Parametric Map output needs a DICOM input; {volume.source or 'the input'} "
                         "is not a DICOM series")
    if volume.metadata.get("geometry_missing"):
        raise InputError(f"{volume.source}: the source has no patient geometry, so a DICOM SEG / Parametric Map "
                         "could not be placed on it")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [pydicom.dcmread(path, stop_before_pixels=True) for path in files]


def _as_highdicom_volume(volume: Volume, array: np.ndarray):
    """highdicom's Volume indexes (slice, row, column) = our [k, j, i] with the same geometry."""
    import highdicom as hd

    ijk_to_lps = volume.index_to_physical_matrix
    affine = np.eye(4)
    affine[:3, 0] = ijk_to_lps[:3, 2]  # array axis 0 = ITK k
    affine[:3, 1] = ijk_to_lps[:3, 1]  # array axis 1 = ITK j (rows)
    affine[:3, 2] = ijk_to_lps[:3, 0]  # array axis 2 = ITK i (columns)
    affine[:3, 3] = ijk_to_lps[:3, 3]
    return hd.Volume(array=array, affine=affine, coordinate_system="PATIENT",
                     frame_of_reference_uid=volume.metadata.get("frame_of_reference_uid"))


def _check_same_grid(source: Volume, result: Volume, what: str) -> None:
    if not source.same_geometry(result):
        raise InputError(f"{what} must lie on the source grid of {source.source}: shape {result.shape} "
                         f"vs {source.shape}")


def _series_number(source_datasets) -> int:
    try:
        return int(source_datasets[0].get("SeriesNumber") or 0) + 1000
    except (TypeError, ValueError):
        return 1000


def _common_arguments(source_datasets) -> dict:
    import highdicom as hd

    return dict(
        series_instance_uid=hd.UID(), series_number=_series_number(source_datasets), sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer=MANUFACTURER, manufacturer_model_name=MODEL_NAME,
        software_versions=__version__, device_serial_number="0",
    )


def _save(dataset, path: str | os.PathLike, what: str) -> Path:
    def write(tmp: Path) -> None:
        try:
            dataset.save_as(tmp, enforce_file_format=True)
        except Exception as exc:
            raise OutputError(f"cannot write {what} {path}: {exception_summary(exc)}") from exc

    return write_with(path, write)


def _set_series_laterality(dataset, source_datasets) -> None:
    """Parametric Map: dciodvfy requires General Series Laterality (Type 2C) and highdicom
    leaves it out; copy the source's value, or leave it empty (unknown) as Type 2 allows.
    A SEG must not carry it (dciodvfy flags it there)."""
    dataset.Laterality = source_datasets[0].get("Laterality", "")


def build_dicom_seg(source: Volume, mask: Volume):
    """A binary highdicom Segmentation of ``mask`` (non-zero = anomaly) on the source series."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    _check_same_grid(source, mask, "the mask")
    datasets = _source_datasets(source)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=ALGORITHM_NAME, version=__version__, family=codes.cid7162.ArtificialIntelligence)
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label="Anomaly",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm)
    labels = _as_highdicom_volume(source, (np.asarray(mask.array) > 0).astype(np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seg = hd.seg.Segmentation(
            source_images=datasets, pixel_array=labels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=[segment], omit_empty_frames=False,
            content_description="D24FAD anomaly mask", content_label="ANOMALY", **_common_arguments(datasets))
    return seg


def build_dicom_pmap(source: Volume, anomaly_map: Volume):
    """A float Parametric Map of the anomaly map on the source series."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    _check_same_grid(source, anomaly_map, "the anomaly map")
    datasets = _source_datasets(source)
    values = np.asarray(anomaly_map.array, dtype=np.float32)
    low, high = float(values.min()), float(values.max())
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="ANOMALY", lut_explanation="D24FAD anomaly score (1 - cosine similarity, summed over scales)",
        unit=codes.UCUM.NoUnits, value_range=(low, high), slope=1.0, intercept=0.0)
    # Scores span about 0..2: a plain LINEAR window narrower than 1 is not permitted, so the
    # display window uses LINEAR_EXACT, which maps exactly [low, high] to the display range.
    window = hd.content.VOILUTTransformation(
        window_center=(low + high) / 2.0, window_width=max(high - low, 1e-6), window_explanation="score range",
        voi_lut_function=hd.VOILUTFunctionValues.LINEAR_EXACT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pmap = hd.pm.ParametricMap(
            source_images=datasets, pixel_array=_as_highdicom_volume(source, values),
            contains_recognizable_visual_features=False, real_world_value_mappings=[mapping],
            voi_lut_transformations=[window],
            content_description="D24FAD anomaly map", content_label="ANOMALY", **_common_arguments(datasets))
    _set_series_laterality(pmap, datasets)
    return pmap


def write_dicom_seg(source: Volume, mask: Volume, path: str | os.PathLike) -> Path:
    """Write the DICOM Segmentation of ``mask`` (same grid as ``source``) atomically."""
    return _save(build_dicom_seg(source, mask), path, "DICOM SEG")


def write_dicom_pmap(source: Volume, anomaly_map: Volume, path: str | os.PathLike) -> Path:
    """Write the DICOM Parametric Map of ``anomaly_map`` (same grid as ``source``) atomically."""
    return _save(build_dicom_pmap(source, anomaly_map), path, "DICOM Parametric Map")
