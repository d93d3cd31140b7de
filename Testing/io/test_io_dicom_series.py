"""DICOM series: discovery, geometry equal to SimpleITK's reading, real files, map round trips."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from d24fad.io import Volume, find_dicom_series, read_volume, write_volume
from d24fad.io.dicom import scan_dicom_folder
from io_fixtures import (AXIAL, AXIAL_REVERSED, CORONAL, OBLIQUE, SAGITTAL, copy_alone, copy_real_series, phantom,
                         pydicom_data_file, pydicom_test_file, write_dicom_series, write_sr)

ORIENTATIONS = {"axial": AXIAL, "coronal": CORONAL, "sagittal": SAGITTAL, "oblique": OBLIQUE,
                "axial_reversed": AXIAL_REVERSED}


def sitk_series(folder):
    """SimpleITK's own reading of a series folder (GDCM sorts the files)."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def assert_same_geometry_as_sitk(volume: Volume, image) -> None:
    assert volume.array.shape == sitk.GetArrayFromImage(image).shape
    np.testing.assert_allclose(volume.spacing, image.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(volume.origin, image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(volume.direction, image.GetDirection(), atol=1e-5)
    np.testing.assert_array_equal(volume.array, sitk.GetArrayFromImage(image).astype(np.float32))


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_written_series_geometry_equals_simpleitk(tmp_path, orientation):
    voxels = phantom()
    spacing = (0.7, 0.9, 2.5)
    origin = (-40.0, -30.0, 10.0)
    files = write_dicom_series(tmp_path / "series", voxels, spacing=spacing, origin=origin,
                               direction=ORIENTATIONS[orientation], rescale=(2.0, -10.0), seed=3)
    volume = read_volume(tmp_path / "series")
    assert_same_geometry_as_sitk(volume, sitk_series(tmp_path / "series"))
    assert volume.modality == "MR"
    assert sorted(volume.metadata["dicom_files"]) == sorted(str(f) for f in files)
    # Every written slice is found at its own patient position, rescaled.
    direction = ORIENTATIONS[orientation]
    for k in range(voxels.shape[0]):
        point = np.asarray(origin) + direction[:, 2] * spacing[2] * k
        index = volume.physical_to_continuous_index(point)
        assert np.allclose(index[:2], 0, atol=1e-4)
        np.testing.assert_array_equal(volume.array[int(round(index[2]))], voxels[k] * 2.0 - 10.0)
    np.testing.assert_allclose(volume.spacing, spacing, atol=1e-5)


@pytest.mark.parametrize("suffix", ["nii.gz", "nrrd"])
@pytest.mark.parametrize("orientation", ["oblique", "sagittal"])
def test_map_write_read_back_is_voxel_exact(tmp_path, suffix, orientation):
    write_dicom_series(tmp_path / "series", phantom(), direction=ORIENTATIONS[orientation], spacing=(0.6, 0.8, 3.0))
    volume = read_volume(tmp_path / "series")
    rng = np.random.default_rng(1)
    anomaly = volume.with_array(rng.random(volume.shape, dtype=np.float32))
    write_volume(anomaly, tmp_path / f"map.{suffix}")
    back = read_volume(tmp_path / f"map.{suffix}")
    assert back.same_geometry(volume, atol=1e-5)
    np.testing.assert_array_equal(back.array, anomaly.array)
    mask = volume.with_array((anomaly.array > 0.5).astype(np.uint8))
    write_volume(mask, tmp_path / f"mask.{suffix}")
    assert sitk.ReadImage(str(tmp_path / f"mask.{suffix}")).GetPixelID() == sitk.sitkUInt8
    np.testing.assert_array_equal(read_volume(tmp_path / f"mask.{suffix}").array, mask.array)


def test_discovery_groups_series_and_notes_non_image_objects(tmp_path):
    first = write_dicom_series(tmp_path / "a", phantom((3, 8, 8)), modality="CT", seed=1)
    write_dicom_series(tmp_path / "nested" / "b", phantom((4, 8, 10)), direction=CORONAL, seed=2)
    write_sr(tmp_path / "reports")
    (tmp_path / "notes.txt").write_text("not dicom")
    scan = scan_dicom_folder(tmp_path)
    images = scan.image_series
    assert sorted((s.modality, s.slice_count, s.columns, s.rows, s.orientation) for s in images) == [
        ("CT", 3, 8, 8, "axial"), ("MR", 4, 10, 8, "coronal")]
    non_image = [s for s in scan.series if not s.is_image]
    assert [s.modality for s in non_image] == ["SR"] and "ignored" in non_image[0].note
    assert any(path.endswith("notes.txt") for path, _ in scan.skipped)
    ct = next(s for s in images if s.modality == "CT")
    assert sorted(ct.files) == sorted(str(f) for f in first)
    chosen = read_volume(tmp_path, series_uid=ct.series_uid)
    assert chosen.shape == (3, 8, 8) and chosen.modality == "CT"
    assert len(find_dicom_series(tmp_path)) == 3


def test_one_file_of_a_series_reads_the_whole_series(tmp_path):
    files = write_dicom_series(tmp_path / "s", phantom((5, 8, 9)))
    assert read_volume(files[2]).shape == (5, 8, 9)


def test_real_ct_series_from_pydicom_matches_simpleitk(tmp_path):
    folder = copy_real_series("SmartScore - Gated 0.5 sec", tmp_path / "ct")
    volume = read_volume(folder)
    assert volume.modality == "CT" and volume.shape == (5, 16, 16)
    assert_same_geometry_as_sitk(volume, sitk_series(folder))


@pytest.mark.parametrize("name, modality, shape", [("CT_small.dcm", "CT", (1, 128, 128)),
                                                   ("MR_small.dcm", "MR", (1, 64, 64))])
def test_real_single_slices_read_with_rescale_and_geometry(tmp_path, name, modality, shape):
    import pydicom

    path = copy_alone(pydicom_test_file(name), tmp_path / "one")
    volume = read_volume(path)
    assert volume.modality == modality and volume.shape == shape
    image = sitk.ReadImage(str(path))
    np.testing.assert_allclose(volume.origin, image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(volume.spacing[:2], image.GetSpacing()[:2], atol=1e-6)
    dataset = pydicom.dcmread(path)
    expected = dataset.pixel_array * float(dataset.get("RescaleSlope", 1)) + float(dataset.get("RescaleIntercept", 0))
    np.testing.assert_array_equal(volume.array[0], expected.astype(np.float32))


def test_real_enhanced_multiframe_ct_matches_simpleitk(tmp_path):
    path = copy_alone(pydicom_data_file("eCT_Supplemental.dcm"), tmp_path / "mf")
    volume = read_volume(path)
    image = sitk.ReadImage(str(path))
    assert volume.shape == (2, 512, 512) and volume.modality == "CT"
    np.testing.assert_allclose(volume.spacing, image.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(volume.origin, image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(volume.direction, image.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(volume.array, sitk.GetArrayFromImage(image).astype(np.float32))


def test_multiframe_without_patient_geometry_is_flagged_not_hidden(tmp_path, caplog):
    path = copy_alone(pydicom_data_file("emri_small.dcm"), tmp_path / "mf")
    volume = read_volume(path)
    assert volume.shape == (10, 64, 64)
    assert volume.metadata["geometry_missing"] is True
    assert "no patient geometry" in caplog.text


@pytest.mark.parametrize("suffix", ["nii", "nii.gz", "nrrd", "mha", "mhd"])
def test_itk_formats_keep_oblique_geometry(tmp_path, suffix):
    image = sitk.GetImageFromArray(phantom((4, 6, 5)).astype(np.int16))
    image.SetSpacing((0.5, 0.75, 2.5))
    image.SetOrigin((12.0, -3.0, 40.0))
    image.SetDirection(tuple(OBLIQUE.reshape(-1)))
    sitk.WriteImage(image, str(tmp_path / f"v.{suffix}"))
    volume = read_volume(tmp_path / f"v.{suffix}")
    assert volume.array.dtype == np.float32
    np.testing.assert_array_equal(volume.array, phantom((4, 6, 5)))
    np.testing.assert_allclose(volume.spacing, (0.5, 0.75, 2.5), atol=1e-6)
    np.testing.assert_allclose(volume.origin, (12.0, -3.0, 40.0), atol=1e-5)
    np.testing.assert_allclose(volume.direction, OBLIQUE.reshape(-1), atol=1e-6)
