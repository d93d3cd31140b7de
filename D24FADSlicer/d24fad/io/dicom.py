"""DICOM input: folder discovery, series validation and reading.

pydicom reads the headers (grouping, sorting, validation, metadata); SimpleITK (GDCM)
decodes the pixels of single-frame series; highdicom builds the geometry of enhanced
multi-frame images from their functional groups. A series that cannot be a regular volume
is refused with an error naming the files and the reason: a wrong geometry is never
produced silently.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import D24FADError, DicomError, GeometryError, ImageReadError
from ._messages import exception_summary
from .volume import Volume

log = logging.getLogger(__name__)

# Objects that are DICOM but not images one could score (reports, annotations, plans ...).
NON_IMAGE_MODALITIES = frozenset({
    "SR", "SEG", "RTSTRUCT", "RTPLAN", "RTRECORD", "RTDOSE", "PR", "KO", "REG", "FID", "DOC",
    "ECG", "HD", "AU", "PLAN", "RWV",
})

# Geometry tolerances: IPP values are decimal strings rounded by scanners.
ORIENTATION_TOLERANCE = 1e-3
MIN_STEP_TOLERANCE_MM = 0.01
RELATIVE_STEP_TOLERANCE = 0.02


def read_header(path: str | os.PathLike):
    """The pydicom header of ``path`` without pixels, or None when it is not DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return pydicom.dcmread(path, stop_before_pixels=True)
        except InvalidDicomError:
            return None


@dataclasses.dataclass
class SeriesInfo:
    """One series found in a folder (what ``d24fad series`` lists)."""

    series_uid: str
    modality: Optional[str]
    description: str
    study_uid: Optional[str]
    series_number: Optional[int]
    files: list[str]
    rows: Optional[int]
    columns: Optional[int]
    slice_count: int
    orientation: str
    is_image: bool
    note: str = ""

    def summary(self) -> dict:
        data = dataclasses.asdict(self)
        data["files"] = len(self.files)
        return data


@dataclasses.dataclass
class DicomScan:
    """Result of walking a folder: series found and files skipped (with the reason)."""

    folder: str
    series: list[SeriesInfo]
    skipped: list[tuple[str, str]]
    # Headers read during the scan, reused when a series is read (large series: half the I/O).
    headers: dict[str, object] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def image_series(self) -> list[SeriesInfo]:
        return [s for s in self.series if s.is_image]


def _number_of_frames(header) -> int:
    try:
        return max(1, int(header.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def orientation_label(image_orientation: Optional[Sequence[float]]) -> str:
    """axial / coronal / sagittal from ImageOrientationPatient; 'oblique (near X)' if tilted."""
    if image_orientation is None or len(image_orientation) != 6:
        return "unknown"
    row = np.asarray(image_orientation[:3], dtype=float)
    col = np.asarray(image_orientation[3:], dtype=float)
    normal = np.cross(row, col)
    dominant = int(np.argmax(np.abs(normal)))
    label = ("sagittal", "coronal", "axial")[dominant]
    # Within about 1 degree of a patient axis counts as that plane.
    if abs(normal[dominant]) < np.cos(np.deg2rad(1.0)):
        return f"oblique (near {label})"
    return label


def _series_note(modality: Optional[str], has_pixels: bool, is_image: bool) -> str:
    if is_image:
        return ""
    if not has_pixels:
        return "DICOM objects without image pixels, ignored for scoring"
    return f"non-image object ({modality}), ignored for scoring"


def scan_dicom_folder(folder: str | os.PathLike) -> DicomScan:
    """Walk ``folder`` recursively and group its DICOM files by SeriesInstanceUID."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageReadError(f"DICOM folder {folder} does not exist or is not a folder")
    groups: dict[str, list[tuple[str, object]]] = {}
    skipped: list[tuple[str, str]] = []
    for root, _dirs, names in os.walk(folder):
        for name in sorted(names):
            path = os.path.join(root, name)
            try:
                header = read_header(path)
            except Exception as exc:  # truncated or corrupt DICOM: note it, keep scanning
                skipped.append((path, f"unreadable DICOM header ({type(exc).__name__}: {exc})"))
                continue
            if header is None:
                skipped.append((path, "not a DICOM file"))
                continue
            uid = str(header.get("SeriesInstanceUID", "") or "")
            if not uid:
                skipped.append((path, "DICOM file without SeriesInstanceUID"))
                continue
            groups.setdefault(uid, []).append((path, header))
    series = [_describe_series(uid, members) for uid, members in groups.items()]
    series.sort(key=lambda s: (not s.is_image, s.series_number if s.series_number is not None else 1 << 30,
                               s.series_uid))
    headers = {path: header for members in groups.values() for path, header in members}
    return DicomScan(folder=str(folder), series=series, skipped=skipped, headers=headers)


def find_dicom_series(folder: str | os.PathLike) -> list[SeriesInfo]:
    """Series found under ``folder`` (image series first, then non-image objects)."""
    return scan_dicom_folder(folder).series


def _describe_series(uid: str, members: list[tuple[str, object]]) -> SeriesInfo:
    first = members[0][1]
    modality = str(first.get("Modality", "") or "") or None
    has_pixels = all("Rows" in h and "Columns" in h for _, h in members)
    is_image = has_pixels and (modality or "").upper() not in NON_IMAGE_MODALITIES
    frames = sum(_number_of_frames(h) for _, h in members)
    try:
        series_number = int(first.get("SeriesNumber")) if first.get("SeriesNumber") not in (None, "") else None
    except (TypeError, ValueError):
        series_number = None
    return SeriesInfo(
        series_uid=uid,
        modality=modality,
        description=str(first.get("SeriesDescription", "") or ""),
        study_uid=str(first.get("StudyInstanceUID", "") or "") or None,
        series_number=series_number,
        files=sorted(path for path, _ in members),
        rows=int(first.Rows) if "Rows" in first else None,
        columns=int(first.Columns) if "Columns" in first else None,
        slice_count=frames,
        orientation=orientation_label(_image_orientation(first)),
        is_image=is_image,
        note=_series_note(modality, has_pixels, is_image),
    )


def _image_orientation(header) -> Optional[list[float]]:
    value = header.get("ImageOrientationPatient")
    if value is None:
        # Enhanced multi-frame images keep it in the shared functional groups.
        try:
            value = header.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient
        except (AttributeError, IndexError, KeyError):
            return None
    try:
        values = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return values if len(values) == 6 else None


def select_series(scan: DicomScan, series_uid: Optional[str] = None) -> SeriesInfo:
    """The series to read: the one with ``series_uid``, or the only image series."""
    if not scan.series:
        reasons = "; ".join(sorted({reason for _, reason in scan.skipped})) or "the folder is empty"
        raise DicomError(f"no DICOM series found in {scan.folder} ({reasons})")
    if series_uid is not None:
        for info in scan.series:
            if info.series_uid == series_uid:
                if not info.is_image:
                    raise DicomError(f"series {series_uid} in {scan.folder} is a {info.note}")
                return info
        available = ", ".join(s.series_uid for s in scan.image_series) or "none"
        raise DicomError(f"--series-uid {series_uid} not found in {scan.folder} (image series: {available})")
    images = scan.image_series
    if not images:
        kinds = ", ".join(sorted({s.modality or "?" for s in scan.series}))
        raise DicomError(f"{scan.folder} holds only non-image DICOM objects ({kinds}); nothing to score")
    if len(images) > 1:
        listing = "; ".join(f"{s.series_uid} ({s.modality}, {s.description or 'no description'}, "
                            f"{s.slice_count} slices)" for s in images)
        raise DicomError(f"{scan.folder} contains {len(images)} image series; choose one with "
                         f"--series-uid: {listing}")
    return images[0]


# --------------------------------------------------------------------------------------
# Reading one series


def read_dicom_folder(folder: str | os.PathLike, series_uid: Optional[str] = None) -> Volume:
    scan = scan_dicom_folder(folder)
    return read_series(select_series(scan, series_uid), scan.headers)


def read_dicom_file(path: str | os.PathLike, series_uid: Optional[str] = None) -> Volume:
    """A multi-frame file as a volume; a single-frame file as the series it belongs to."""
    header = _checked_header(path)
    if _number_of_frames(header) > 1:
        return read_multiframe(path, header)
    uid = str(header.get("SeriesInstanceUID", "") or "")
    if series_uid is not None and uid != series_uid:
        raise DicomError(f"{path} belongs to series {uid or '(none)'}, not --series-uid {series_uid}")
    scan = scan_dicom_folder(Path(path).parent)
    for info in scan.series:
        if info.series_uid == uid and os.path.abspath(path) in {os.path.abspath(f) for f in info.files}:
            if not info.is_image:
                raise DicomError(f"{path} is a {info.note}")
            return read_series(info, scan.headers)
    raise DicomError(f"{path}: DICOM file without SeriesInstanceUID cannot be placed in a series")


def _checked_header(path):
    try:
        header = read_header(path)
    except Exception as exc:
        raise DicomError(f"{path}: unreadable DICOM file ({type(exc).__name__}: {exc})") from exc
    if header is None:
        raise ImageReadError(f"{path} is not a DICOM file")
    return header


@dataclasses.dataclass
class _Slice:
    path: str
    header: object
    position: np.ndarray  # ImagePositionPatient (LPS mm)


def read_series(info: SeriesInfo, known_headers: Optional[dict] = None) -> Volume:
    """Validate and read one image series (single-frame files or one multi-frame file)."""
    known_headers = known_headers or {}
    headers = [(path, known_headers.get(path) or read_header(path)) for path in info.files]
    multiframe = [path for path, h in headers if _number_of_frames(h) > 1]
    if multiframe:
        if len(headers) == 1:
            return read_multiframe(headers[0][0], headers[0][1])
        raise DicomError(f"series {info.series_uid} mixes {len(multiframe)} multi-frame files with other files "
                         f"(e.g. {multiframe[0]}); read one multi-frame file at a time")
    if len(headers) == 1 and headers[0][1].get("ImagePositionPatient") is None:
        return _read_single_plane(headers[0][0], headers[0][1])
    slices = _validated_slices(info, headers)
    geometry = _series_geometry(slices)
    array = _read_pixels([s.path for s in slices], info.series_uid)
    metadata = _metadata(slices[0].header)
    metadata["dicom_files"] = [s.path for s in slices]
    metadata["sop_instance_uids"] = [str(s.header.get("SOPInstanceUID", "")) for s in slices]
    return Volume(array=array, modality=metadata.get("modality"), metadata=metadata,
                  source=str(Path(slices[0].path).parent), **geometry)


def _require_same(values: dict[str, object], what: str, series_uid: str) -> None:
    distinct: dict[object, list[str]] = {}
    for path, value in values.items():
        distinct.setdefault(value, []).append(path)
    if len(distinct) > 1:
        examples = "; ".join(f"{value!r} in {paths[0]}" + (f" (+{len(paths) - 1} more)" if len(paths) > 1 else "")
                             for value, paths in distinct.items())
        raise GeometryError(f"series {series_uid} has inconsistent {what}: {examples}")


def _validated_slices(info: SeriesInfo, headers: list[tuple[str, object]]) -> list[_Slice]:
    uid = info.series_uid
    _require_same({p: (int(h.Rows), int(h.Columns)) for p, h in headers}, "image sizes (Rows, Columns)", uid)
    _require_same({p: int(h.get("SamplesPerPixel", 1) or 1) for p, h in headers}, "SamplesPerPixel", uid)
    if int(headers[0][1].get("SamplesPerPixel", 1) or 1) != 1:
        raise DicomError(f"series {uid} is a colour series ({headers[0][0]}); only scalar volumes can be scored")
    missing = [p for p, h in headers if h.get("ImagePositionPatient") is None or _image_orientation(h) is None]
    if missing:
        raise GeometryError(f"series {uid}: {len(missing)} file(s) lack ImagePositionPatient/"
                            f"ImageOrientationPatient (e.g. {missing[0]}); cannot build a volume")
    orientations = {p: np.asarray(_image_orientation(h)) for p, h in headers}
    reference_path, reference = next(iter(orientations.items()))
    for path, value in orientations.items():
        if np.max(np.abs(value - reference)) > ORIENTATION_TOLERANCE:
            raise GeometryError(f"series {uid} mixes orientations: {_rounded(reference)} in {reference_path} "
                                f"but {_rounded(value)} in {path}")
    spacings = {p: tuple(round(float(v), 4) for v in h.get("PixelSpacing", [1.0, 1.0])) for p, h in headers}
    _require_same(spacings, "PixelSpacing", uid)
    normal = np.cross(reference[:3], reference[3:])
    slices = [_Slice(path, h, np.asarray([float(v) for v in h.ImagePositionPatient])) for path, h in headers]
    slices.sort(key=lambda s: float(s.position @ normal))
    _check_positions(slices, normal, uid)
    return slices


def _rounded(values) -> list[float]:
    return [round(float(v), 5) for v in values]


def _check_positions(slices: list[_Slice], normal: np.ndarray, uid: str) -> None:
    if len(slices) < 2:
        return
    positions = np.asarray([s.position @ normal for s in slices])
    steps = np.diff(positions)
    for a, b, step in zip(slices[:-1], slices[1:], steps):
        if step < MIN_STEP_TOLERANCE_MM:
            raise GeometryError(
                f"series {uid}: {a.path} and {b.path} are at the same position ({_rounded(a.position)}); "
                "several acquisitions, echoes or time points mixed in one series (4D) cannot be one volume")
    expected = float(np.median(steps))
    tolerance = max(MIN_STEP_TOLERANCE_MM, RELATIVE_STEP_TOLERANCE * expected)
    for a, b, step in zip(slices[:-1], slices[1:], steps):
        if abs(step - expected) > tolerance:
            kind = "missing slice(s)" if step > expected else "uneven slice spacing"
            raise GeometryError(f"series {uid}: {kind} between {a.path} and {b.path} "
                                f"(gap {step:.3f} mm, expected {expected:.3f} mm)")
        in_plane_shift = (b.position - a.position) - step * normal
        if np.linalg.norm(in_plane_shift) > tolerance:
            raise GeometryError(f"series {uid}: slices {a.path} and {b.path} are shifted in-plane by "
                                f"{np.linalg.norm(in_plane_shift):.3f} mm (gantry tilt or sheared stack); "
                                "a regular volume would misplace voxels")


def _series_geometry(slices: list[_Slice]) -> dict:
    header = slices[0].header
    orientation = np.asarray(_image_orientation(header))
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    row_spacing, column_spacing = (float(v) for v in header.get("PixelSpacing", [1.0, 1.0]))
    if len(slices) > 1:
        step = float((slices[-1].position - slices[0].position) @ normal) / (len(slices) - 1)
    else:
        step = _nominal_slice_step(header)
    direction = np.column_stack([row_dir, col_dir, normal])
    # ITK x spacing is the distance between columns (PixelSpacing[1]), y between rows.
    return {"spacing": (column_spacing, row_spacing, step), "origin": tuple(slices[0].position),
            "direction": tuple(direction.reshape(-1))}


def _nominal_slice_step(header) -> float:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        try:
            value = float(header.get(keyword))
        except (TypeError, ValueError):
            continue
        if value > 0:
            return value
    return 1.0


def _read_pixels(paths: list[str], series_uid: str) -> np.ndarray:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(paths)
    reader.SetOutputPixelType(sitk.sitkFloat32)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise DicomError(f"series {series_uid}: pixel data cannot be decoded ({exception_summary(exc)}); "
                         f"files {paths[0]} ... {paths[-1]}") from exc
    array = sitk.GetArrayFromImage(image).astype(np.float32, copy=False)
    if array.shape[0] != len(paths):
        raise DicomError(f"series {series_uid}: expected {len(paths)} slices, decoded {array.shape[0]}")
    return array



def _read_single_plane(path: str, header) -> Volume:
    """A lone image without patient position (CR, DX, secondary capture) as a 1-slice volume."""
    from .images import read_image_2d

    array = read_image_2d(path)
    if array.ndim != 2:
        raise DicomError(f"{path} is a colour image; only scalar images can be scored as a volume")
    row_spacing, column_spacing = _pixel_spacing(header)
    metadata = _metadata(header)
    metadata["dicom_files"] = [path]
    metadata["geometry_missing"] = True
    return Volume(array=array[None], spacing=(column_spacing, row_spacing, 1.0),
                  modality=metadata.get("modality"), metadata=metadata, source=str(path))


def _pixel_spacing(header) -> tuple[float, float]:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = header.get(keyword)
        if value is not None and len(value) == 2:
            try:
                return float(value[0]), float(value[1])
            except (TypeError, ValueError):
                pass
    return 1.0, 1.0


def read_multiframe(path: str | os.PathLike, header=None) -> Volume:
    """An enhanced (multi-frame) CT/MR/... file as a volume with geometry from its functional groups."""
    import highdicom as hd

    path = str(path)
    header = header if header is not None else _checked_header(path)
    if int(header.get("SamplesPerPixel", 1) or 1) != 1:
        raise DicomError(f"{path} is a colour multi-frame image; only scalar volumes can be scored")
    metadata = _metadata(header)
    metadata["dicom_files"] = [path]
    if not _has_plane_geometry(header):
        # Pixels are fine, but where they lie in the patient is not recorded: say so loudly.
        log.warning("%s: no patient geometry (frame of reference / plane positions); "
                    "using unit spacing and identity orientation", path)
        return _multiframe_without_geometry(path, header, metadata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            hd_volume = hd.imread(path).get_volume()
        except (D24FADError, MemoryError):
            raise
        except Exception as exc:
            # Geometry is recorded but is not a regular grid (uneven or mixed frames).
            raise GeometryError(f"{path}: frames do not form a regular volume ({exception_summary(exc)})") from exc
    array = np.asarray(hd_volume.array, dtype=np.float32)
    if array.ndim != 3:
        raise DicomError(f"{path}: multi-frame image is not a scalar 3D volume (shape {array.shape})")
    affine = np.asarray(hd_volume.affine, dtype=np.float64)
    # highdicom indexes (slice, row, column) = ITK (k, j, i): column c of ITK's matrix is
    # the affine column of array axis 2 - c.
    columns = [affine[:3, 2], affine[:3, 1], affine[:3, 0]]
    spacing = tuple(float(np.linalg.norm(c)) for c in columns)
    direction = np.column_stack([c / s for c, s in zip(columns, spacing)])
    return Volume(array=array, spacing=spacing, origin=tuple(affine[:3, 3]), direction=tuple(direction.reshape(-1)),
                  modality=metadata.get("modality"), metadata=metadata, source=path)


def _has_plane_geometry(header) -> bool:
    """True when a multi-frame header records a frame of reference and frame positions."""
    if not header.get("FrameOfReferenceUID"):
        return False
    for keyword in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        groups = header.get(keyword)
        if groups and "PlanePositionSequence" in groups[0]:
            return True
    return False


def _multiframe_without_geometry(path: str, header, metadata: dict) -> Volume:
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(path, sitk.sitkFloat32)
    except RuntimeError as exc:
        raise DicomError(f"{path}: pixel data cannot be decoded ({exception_summary(exc)})") from exc
    metadata["geometry_missing"] = True
    array = sitk.GetArrayFromImage(image).astype(np.float32, copy=False)
    if array.ndim != 3:
        raise DicomError(f"{path}: multi-frame image is not a scalar 3D volume (shape {array.shape})")
    row_spacing, column_spacing = _pixel_spacing(header)
    return Volume(array=array, spacing=(column_spacing, row_spacing, _nominal_slice_step(header)),
                  modality=metadata.get("modality"), metadata=metadata, source=path)


def _first_value(value):
    if value is None:
        return None
    try:
        return float(value[0]) if not isinstance(value, (str, bytes)) and len(value) else float(value)
    except TypeError:
        return float(value)
    except (ValueError, IndexError):
        return None


def _metadata(header) -> dict:
    """Non-identifying header fields the rest of the pipeline and the writers need."""
    def text(keyword):
        value = header.get(keyword)
        return str(value) if value not in (None, "") else None

    metadata = {
        "modality": text("Modality"),
        "body_part": text("BodyPartExamined"),
        "series_uid": text("SeriesInstanceUID"),
        "study_uid": text("StudyInstanceUID"),
        "frame_of_reference_uid": text("FrameOfReferenceUID"),
        "series_description": text("SeriesDescription"),
        "series_number": text("SeriesNumber"),
        "sop_class_uid": text("SOPClassUID"),
        "photometric_interpretation": text("PhotometricInterpretation"),
    }
    try:
        metadata["window_center"] = _first_value(header.get("WindowCenter"))
        metadata["window_width"] = _first_value(header.get("WindowWidth"))
    except Exception:  # malformed window values are optional information only
        metadata["window_center"] = metadata["window_width"] = None
    return {key: value for key, value in metadata.items() if value is not None}
