"""DICOM Segmentation and Parametric Map output: references, geometry, dciodvfy."""

from __future__ import annotations

import shutil
import subprocess

import highdicom as hd
import numpy as np
import pydicom
import pytest

from d24fad import __version__
from d24fad.errors import InputError
from d24fad.io import Volume, read_volume, write_dicom_pmap, write_dicom_seg
from io_fixtures import (OBLIQUE, SAGITTAL, copy_alone, files_in, phantom, pydicom_data_file,
                         write_dicom_series)

DCIODVFY = shutil.which("dciodvfy")


@pytest.fixture(params=["oblique", "sagittal"])
def source(request, tmp_path):
    """An oblique series whose headers carry Laterality, and a sagittal one without it."""
    oblique = request.param == "oblique"
    write_dicom_series(tmp_path / "src", phantom((5, 12, 14)), direction=OBLIQUE if oblique else SAGITTAL,
                       spacing=(0.8, 0.6, 2.0), laterality="R" if oblique else None)
    return read_volume(tmp_path / "src")


def physical_points(indices_kji: np.ndarray, affine_kji: np.ndarray) -> np.ndarray:
    """Sorted LPS points of array indices under a (slice, row, column) affine."""
    points = indices_kji @ affine_kji[:3, :3].T + affine_kji[:3, 3]
    return points[np.lexsort(np.round(points, 3).T)]


def anomaly_map(volume: Volume) -> Volume:
    values = np.zeros(volume.shape, dtype=np.float32)
    values[2, 4:8, 5:9] = np.linspace(0.5, 1.5, 16, dtype=np.float32).reshape(4, 4)
    values[3, 0, 0] = 0.25
    return volume.with_array(values)


def source_uids(volume: Volume) -> dict[str, str]:
    return {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in volume.metadata["dicom_files"]}


def referenced_instances(dataset) -> set[str]:
    return {item.ReferencedSOPInstanceUID for series in dataset.ReferencedSeriesSequence
            for item in series.ReferencedInstanceSequence}


def assert_references_source(dataset, volume: Volume) -> None:
    assert dataset.StudyInstanceUID == volume.metadata["study_uid"]
    assert dataset.FrameOfReferenceUID == volume.metadata["frame_of_reference_uid"]
    assert dataset.SeriesInstanceUID != volume.metadata["series_uid"]
    assert dataset.SOPInstanceUID not in source_uids(volume)
    assert dataset.ReferencedSeriesSequence[0].SeriesInstanceUID == volume.metadata["series_uid"]
    assert referenced_instances(dataset) == set(source_uids(volume))


def run_dciodvfy(path) -> str:
    result = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    return result.stdout + result.stderr


def test_segmentation_reads_back_on_the_source_grid(source, tmp_path):
    mask = source.with_array((anomaly_map(source).array > 0.9).astype(np.uint8))
    path = write_dicom_seg(source, mask, tmp_path / "out" / "seg.dcm")
    assert files_in(tmp_path / "out") == ["seg.dcm"]
    seg = hd.seg.segread(path)
    assert_references_source(seg, source)
    description = seg.SegmentSequence[0]
    assert description.SegmentLabel == "Anomaly"
    algorithm = description.SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "D24FADSlicer" and algorithm.AlgorithmVersion == __version__
    # The frames, placed by their own plane positions, rebuild the mask voxel for voxel.
    # (highdicom may order the slices the other way: compare patient positions.)
    rebuilt = seg.get_volume(combine_segments=True)
    assert rebuilt.spatial_shape == source.shape
    ours_kji = source.index_to_physical_matrix[:, [2, 1, 0, 3]]
    np.testing.assert_allclose(physical_points(np.argwhere(np.asarray(rebuilt.array).reshape(source.shape)),
                                               rebuilt.affine),
                               physical_points(np.argwhere(mask.array), ours_kji), atol=1e-3)
    assert "PatientName" in seg and seg.PatientID == "PHANTOM001"  # only what referencing needs
    assert "InstitutionName" not in seg


def test_parametric_map_reads_back_float_values(source, tmp_path):
    values = anomaly_map(source)
    path = write_dicom_pmap(source, values, tmp_path / "pmap.dcm")
    pmap = pydicom.dcmread(path)
    assert pmap.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30"
    assert_references_source(pmap, source)
    frames = pmap.pixel_array.astype(np.float32)
    assert frames.shape == source.shape
    positions = [tuple(float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient)
                 for f in pmap.PerFrameFunctionalGroupsSequence]
    for frame, position in zip(frames, positions):
        k = int(round(source.physical_to_continuous_index(position)[2]))
        np.testing.assert_allclose(frame, values.array[k], rtol=1e-6)
    source_header = pydicom.dcmread(source.metadata["dicom_files"][0], stop_before_pixels=True)
    assert pmap.Laterality == source_header.get("Laterality", "")


def test_dicom_outputs_need_a_dicom_source(tmp_path):
    volume = Volume(np.zeros((2, 3, 4), dtype=np.float32), source="map.nii.gz")
    with pytest.raises(InputError, match="not a DICOM series"):
        write_dicom_seg(volume, volume, tmp_path / "seg.dcm")
    assert not (tmp_path / "seg.dcm").exists()


def test_mask_on_another_grid_is_refused(source, tmp_path):
    other = Volume(np.zeros((2, 3, 4), dtype=np.uint8))
    with pytest.raises(InputError, match="source grid"):
        write_dicom_seg(source, other, tmp_path / "seg.dcm")
    assert list(tmp_path.glob("seg*")) == []


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (Debian package dicom3tools) is not installed; "
                                             ".ci/run installs it with apt-get")
def test_dciodvfy_reports_no_errors(source, tmp_path):
    seg_path = write_dicom_seg(source, source.with_array((anomaly_map(source).array > 0.9).astype(np.uint8)),
                               tmp_path / "seg.dcm")
    # Real maps span well under 1: the display window must still be valid.
    small_range = source.with_array(anomaly_map(source).array * 0.3)
    pmap_path = write_dicom_pmap(source, small_range, tmp_path / "pmap.dcm")
    assert_dciodvfy_clean(seg_path, pmap_path)


def assert_dciodvfy_clean(*paths) -> None:
    for path in paths:
        report = run_dciodvfy(path)
        errors = [line for line in report.splitlines() if line.startswith("Error")]
        assert errors == [], f"{path.name}:\n{report}"


def test_enhanced_multiframe_source(tmp_path):
    """A real enhanced CT (one multi-frame file) as source: references and frames line up."""
    source = read_volume(copy_alone(pydicom_data_file("eCT_Supplemental.dcm"), tmp_path / "src"))
    mask = np.zeros(source.shape, dtype=np.uint8)
    mask[1, 100:140, 50:60] = 1
    seg_path = write_dicom_seg(source, source.with_array(mask), tmp_path / "seg.dcm")
    pmap_path = write_dicom_pmap(source, source.with_array(mask * np.float32(0.7)), tmp_path / "pmap.dcm")
    seg = hd.seg.segread(seg_path)
    assert referenced_instances(seg) == {pydicom.dcmread(source.metadata["dicom_files"][0]).SOPInstanceUID}
    rebuilt = seg.get_volume(combine_segments=True)
    ours_kji = source.index_to_physical_matrix[:, [2, 1, 0, 3]]
    np.testing.assert_allclose(physical_points(np.argwhere(np.asarray(rebuilt.array)), rebuilt.affine),
                               physical_points(np.argwhere(mask), ours_kji), atol=1e-3)
    if DCIODVFY is not None:
        assert_dciodvfy_clean(seg_path, pmap_path)
