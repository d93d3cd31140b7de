"""Each bad input raises its typed error naming the file, and leaves every file untouched."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from d24fad.errors import D24FADError, DicomError, GeometryError, ImageReadError
from d24fad.io import read_image_2d, read_volume
from io_fixtures import (copy_real_series, folder_snapshot, phantom, pydicom_data_file, pydicom_test_file, write_dicom_series,
                         write_sr)


def expect_error(path, error_type, *fragments, **kwargs):
    """read_volume(path) raises ``error_type`` whose message holds ``fragments``; nothing changes."""
    root = Path(path) if Path(path).is_dir() else Path(path).parent
    before = folder_snapshot(root)
    with pytest.raises(error_type) as caught:
        read_volume(path, **kwargs)
    for fragment in fragments:
        assert fragment in str(caught.value)
    assert folder_snapshot(root) == before
    return caught.value


def test_empty_folder(tmp_path):
    expect_error(tmp_path, DicomError, "no DICOM series", str(tmp_path))


def test_missing_path(tmp_path):
    expect_error(tmp_path / "nope.nii.gz", ImageReadError, "does not exist")


def test_folder_with_only_report_and_segmentation(tmp_path):
    write_sr(tmp_path)
    shutil.copyfile(pydicom_data_file("liver.dcm"), tmp_path / "liver_seg.dcm")
    error = expect_error(tmp_path, DicomError, "only non-image DICOM objects")
    assert "SEG" in str(error) and "SR" in str(error)


def test_two_series_mixed_without_uid(tmp_path):
    write_dicom_series(tmp_path, phantom((3, 8, 8)), seed=1)
    write_dicom_series(tmp_path, phantom((3, 8, 8)), seed=2)
    expect_error(tmp_path, DicomError, "2 image series", "--series-uid")


def test_unknown_series_uid(tmp_path):
    write_dicom_series(tmp_path, phantom((3, 8, 8)))
    expect_error(tmp_path, DicomError, "1.2.3.4", series_uid="1.2.3.4")


def test_missing_slice_in_the_middle(tmp_path):
    files = write_dicom_series(tmp_path, phantom((6, 8, 8)), spacing=(1.0, 1.0, 2.0))
    import pydicom

    middle = next(f for f in files if pydicom.dcmread(f).InstanceNumber == 3)
    middle.unlink()
    expect_error(tmp_path, GeometryError, "missing slice", "gap 4.000 mm", "expected 2.000 mm")


def test_real_series_with_gap_is_refused(tmp_path):
    """pydicom's 'Routine Brain' CT keeps 4 of many slices: a gap of 202.5 mm."""
    copy_real_series("Routine Brain", tmp_path)
    expect_error(tmp_path, GeometryError, "missing slice")


def test_mixed_orientations_in_one_series(tmp_path):
    """A real localizer series of pydicom's test set mixes orientations."""
    copy_real_series("T/S/C RF FAST PILOT", tmp_path)
    expect_error(tmp_path, GeometryError, "mixes orientations")


def test_inconsistent_sizes(tmp_path):
    import pydicom

    files = write_dicom_series(tmp_path, phantom((4, 8, 8)))
    odd = pydicom.dcmread(files[1])
    odd.Rows, odd.Columns = 4, 16  # same byte count, different shape
    odd.save_as(files[1])
    expect_error(tmp_path, GeometryError, "inconsistent image sizes", files[1].name)


def test_duplicate_positions_are_4d(tmp_path):
    import pydicom
    from pydicom.uid import generate_uid

    files = write_dicom_series(tmp_path, phantom((3, 8, 8)))
    twin = pydicom.dcmread(files[0])
    twin.SOPInstanceUID = generate_uid()
    twin.file_meta.MediaStorageSOPInstanceUID = twin.SOPInstanceUID
    twin.save_as(tmp_path / "echo2.dcm")
    expect_error(tmp_path, GeometryError, "same position", "4D")


def test_truncated_dicom_file(tmp_path):
    source = pydicom_test_file("CT_small.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(source[: len(source) // 2])
    with pytest.raises(D24FADError) as caught:
        read_volume(tmp_path / "cut.dcm")
    assert "cut.dcm" in str(caught.value)
    with pytest.raises(ImageReadError, match="cut.dcm"):
        read_image_2d(tmp_path / "cut.dcm")


def test_non_dicom_junk(tmp_path):
    (tmp_path / "junk.dcm").write_bytes(b"this is not an image" * 50)
    expect_error(tmp_path / "junk.dcm", ImageReadError, "junk.dcm", "not a DICOM file")
    with pytest.raises(ImageReadError, match="neither a known image format"):
        read_image_2d(tmp_path / "junk.dcm")
    (tmp_path / "junk.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ImageReadError, match="junk.png"):
        read_image_2d(tmp_path / "junk.png")


def test_folder_of_junk_only(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"\x00" * 300)
    expect_error(tmp_path, DicomError, "no DICOM series", "not a DICOM file")


def test_4d_nifti(tmp_path):
    image = sitk.GetImageFromArray(np.zeros((3, 4, 5, 6), dtype=np.float32), isVector=False)
    assert image.GetDimension() == 4
    sitk.WriteImage(image, str(tmp_path / "fmri.nii.gz"))
    expect_error(tmp_path / "fmri.nii.gz", GeometryError, "4D", "fmri.nii.gz")


def test_nifti_with_nans(tmp_path):
    array = np.ones((4, 5, 6), dtype=np.float32)
    array[2, 2, 2] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(array), str(tmp_path / "nan.nii.gz"))
    expect_error(tmp_path / "nan.nii.gz", ImageReadError, "NaN", "nan.nii.gz")


def test_vector_image_is_not_a_volume(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5, 6, 3), dtype=np.uint8), isVector=True),
                    str(tmp_path / "rgb.nrrd"))
    expect_error(tmp_path / "rgb.nrrd", GeometryError, "components")


def test_multiframe_2d_request_is_refused():
    with pytest.raises(DicomError, match="multi-frame"):
        read_image_2d(pydicom_data_file("emri_small.dcm"))


def test_sheared_stack_gantry_tilt_is_refused(tmp_path):
    """Each slice shifted in-plane (CT gantry tilt): a regular grid would misplace voxels."""
    import pydicom

    files = write_dicom_series(tmp_path, phantom((4, 8, 8)), spacing=(1.0, 1.0, 2.0))
    for path in files:
        dataset = pydicom.dcmread(path)
        position = [float(v) for v in dataset.ImagePositionPatient]
        position[1] += 0.5 * (dataset.InstanceNumber - 1)  # 0.5 mm per slice, posterior
        dataset.ImagePositionPatient = [f"{v:.6f}" for v in position]
        dataset.save_as(path)
    expect_error(tmp_path, GeometryError, "shifted in-plane", "gantry tilt")


def test_multiframe_with_uneven_frames_is_refused(tmp_path):
    """An enhanced CT whose second frame is moved: its frames no longer form a regular grid."""
    import pydicom

    dataset = pydicom.dcmread(pydicom_data_file("eCT_Supplemental.dcm"))
    position = dataset.PerFrameFunctionalGroupsSequence[1].PlanePositionSequence[0]
    position.ImagePositionPatient = [float(position.ImagePositionPatient[0]) + 7.0,
                                     *position.ImagePositionPatient[1:]]
    dataset.save_as(tmp_path / "uneven.dcm")
    expect_error(tmp_path / "uneven.dcm", GeometryError, "regular volume", "uneven.dcm")
