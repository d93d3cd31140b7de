"""Fixtures for the I/O and pipeline tests: DICOM series written with pydicom, real files
from pydicom's and pydicom-data's test sets, and a tiny detector.

Importable by name (``from io_fixtures import ...``); Testing/pipeline/conftest.py puts
this folder on ``sys.path``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pytest

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def rotation_matrix(axis: Sequence[float], degrees: float) -> np.ndarray:
    """Rodrigues rotation: an orthonormal direction matrix for oblique test series."""
    axis = np.asarray(axis, dtype=float)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(degrees)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


# Column c = LPS direction of index axis c (columns i, rows j, slices k); right-handed as in
# DICOM, where the slice normal is row x column.
AXIAL = np.eye(3)
CORONAL = np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])  # rows run head -> feet
SAGITTAL = np.array([[0, 0, -1.0], [1.0, 0, 0], [0, -1.0, 0]])
OBLIQUE = rotation_matrix([1.0, 0.4, 0.2], 25.0)
# Slices written against the normal (files numbered feet -> head on a head -> feet normal).
AXIAL_REVERSED = np.diag([1.0, 1.0, -1.0])


def _base_dataset(sop_class: str, modality: str, study_uid: str, series_uid: str, frame_uid: str):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientName = "Phantom^Test"
    ds.PatientID = "PHANTOM001"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_uid
    ds.StudyDate = "20260101"
    ds.StudyTime = "120000"
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.SeriesNumber = 3
    ds.Manufacturer = "d24fad-tests"
    ds.PositionReferenceIndicator = ""
    return ds


def write_dicom_series(folder: Path, voxels: np.ndarray, spacing=(0.7, 0.9, 2.5), origin=(-40.0, -30.0, 10.0),
                       direction: np.ndarray = AXIAL, modality: str = "MR", series_uid: Optional[str] = None,
                       study_uid: Optional[str] = None, rescale=(1.0, 0.0), seed: int = 0,
                       body_part: Optional[str] = None, laterality: Optional[str] = None) -> list[Path]:
    """Write ``voxels`` [k, j, i] (stored values, int16) as one file per slice, in shuffled
    order under random names, with exact patient geometry."""
    from pydicom.uid import generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    voxels = np.asarray(voxels)
    rng = np.random.default_rng(seed)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_uid = generate_uid()
    direction = np.asarray(direction, dtype=float)
    sop_class = CT_IMAGE_STORAGE if modality == "CT" else MR_IMAGE_STORAGE
    paths = []
    for k in rng.permutation(voxels.shape[0]):
        ds = _base_dataset(sop_class, modality, study_uid, series_uid, frame_uid)
        position = np.asarray(origin) + direction[:, 2] * spacing[2] * k
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in np.concatenate([direction[:, 0], direction[:, 1]])]
        ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]
        ds.SliceThickness = f"{spacing[2]:.6f}"
        ds.InstanceNumber = int(k) + 1
        ds.Rows, ds.Columns = voxels.shape[1], voxels.shape[2]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = f"{rescale[0]:g}", f"{rescale[1]:g}"
        if modality == "CT":
            ds.KVP = "120"
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        else:
            ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "SE", "NONE", "", "2D"
            ds.EchoTime, ds.RepetitionTime, ds.EchoTrainLength = "10", "500", "1"
            ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        if body_part:
            ds.BodyPartExamined = body_part
        if laterality is not None:
            ds.Laterality = laterality
        ds.PixelData = np.ascontiguousarray(voxels[k].astype(np.int16)).tobytes()
        path = folder / f"{rng.integers(1 << 40):012x}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_sr(folder: Path, study_uid: Optional[str] = None) -> Path:
    """A minimal Basic Text SR (a non-image object that discovery must ignore)."""
    from pydicom.uid import generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ds = _base_dataset(BASIC_TEXT_SR, "SR", study_uid or generate_uid(), generate_uid(), generate_uid())
    path = folder / "report.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def phantom(shape=(6, 20, 24), seed: int = 0) -> np.ndarray:
    """Stored values with distinct structure per slice (so a wrong slice order shows)."""
    rng = np.random.default_rng(seed)
    k, j, i = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return (100 * k + 3 * j + i + rng.integers(0, 3, size=shape)).astype(np.int16)


def pydicom_test_file(name: str) -> Path:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not installed")
    return Path(path)


def pydicom_data_file(name: str) -> Path:
    """A file of the pydicom-data package (installed by requirements/dev.txt)."""
    import data_store

    path = Path(data_store.__file__).parent / "data" / name
    if not path.is_file():
        pytest.skip(f"pydicom-data file {name} is missing (pip install pydicom-data)")
    return path


def copy_alone(source: Path, folder: Path) -> Path:
    """Copy one file into its own folder (pydicom's test folder mixes copies of one series)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.name
    shutil.copyfile(source, target)
    return target


def copy_real_series(description: str, folder: Path) -> Path:
    """Copy one series of pydicom's dicomdirtests (real scanner headers) into ``folder``."""
    from d24fad.io import find_dicom_series

    root = pydicom_test_file("dicomdirtests/DICOMDIR").parent
    series = next(s for s in find_dicom_series(root) if s.description == description)
    for path in series.files:
        copy_alone(Path(path), Path(folder))
    return Path(folder)


def folder_snapshot(folder: Path) -> dict[str, float]:
    """Every path under ``folder`` with its mtime: to assert that nothing was written."""
    return {str(p): p.stat().st_mtime for p in Path(folder).rglob("*")} if Path(folder).exists() else {}


def files_in(folder: Path) -> list[str]:
    return sorted(os.path.relpath(p, folder) for p in Path(folder).rglob("*") if p.is_file())


# ---------------------------------------------------------------------------- detector


@pytest.fixture(scope="session")
def tiny_model():
    """A tiny random network (resnet18 teacher, 64 px): shapes and plumbing, not quality."""
    import torch

    from d24fad.config import ModelConfig
    from d24fad.models.d24fad import D24FADModel

    torch.manual_seed(0)
    return D24FADModel(ModelConfig(teacher="resnet18", teacher_weights="random", image_size=64,
                                   decoder_depths=(1, 1, 1)))


@pytest.fixture
def tiny_detector(tiny_model):
    from d24fad.detector import FewShotDetector

    return FewShotDetector(tiny_model, device="cpu", dtype="fp32")


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_model, tmp_path_factory) -> Path:
    from d24fad.checkpoint import save_checkpoint

    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_checkpoint(path, tiny_model)
    return path
