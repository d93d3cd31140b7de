"""Scoring axes, slice extraction and slice index <-> physical position."""

from __future__ import annotations

import numpy as np
import pytest

from d24fad import slicing
from d24fad.errors import InputError
from d24fad.io import Volume, read_volume, write_volume
from io_fixtures import CORONAL, OBLIQUE, SAGITTAL, phantom, write_dicom_series


def make_volume(direction, shape=(6, 20, 24), spacing=(0.7, 0.9, 2.5), origin=(-40.0, -30.0, 10.0)):
    return Volume(phantom(shape).astype(np.float32), spacing=spacing, origin=origin,
                  direction=tuple(np.asarray(direction, dtype=float).reshape(-1)))


@pytest.mark.parametrize("direction, expected", [
    (np.eye(3), {"acquisition": 0, "axial": 0, "coronal": 1, "sagittal": 2}),
    (CORONAL, {"acquisition": 0, "axial": 1, "coronal": 0, "sagittal": 2}),
    (SAGITTAL, {"acquisition": 0, "axial": 1, "coronal": 2, "sagittal": 0}),
])
def test_patient_axes_pick_the_matching_array_axis(direction, expected):
    volume = make_volume(direction)
    for axis, array_axis in expected.items():
        assert slicing.array_axis(volume, axis) == array_axis
        assert slicing.slice_count(volume, axis) == volume.shape[array_axis]


def test_get_and_set_slice_and_stack():
    volume = make_volume(SAGITTAL)
    coronal = slicing.get_slice(volume, "coronal", 3)
    np.testing.assert_array_equal(coronal, volume.array[:, :, 3])
    target = np.zeros(volume.shape, dtype=np.float32)
    slicing.set_slice(target, volume, "coronal", 3, coronal)
    np.testing.assert_array_equal(target[:, :, 3], coronal)
    count = slicing.slice_count(volume, "axial")
    stacked = slicing.stack_slices(volume, "axial", [slicing.get_slice(volume, "axial", i) for i in range(count)])
    np.testing.assert_array_equal(stacked, volume.array)


def test_positions_follow_patient_coordinates():
    volume = make_volume(np.eye(3))  # axial LPS: k goes superior, j posterior, i left
    # axial offset = S = LPS z; coronal offset = A = -LPS y; sagittal offset = R = -LPS x.
    assert slicing.slice_index_to_position(volume, "axial", 2) == pytest.approx(10.0 + 2 * 2.5)
    assert slicing.slice_index_to_position(volume, "acquisition", 2) == pytest.approx(15.0)
    assert slicing.slice_index_to_position(volume, "coronal", 4) == pytest.approx(-(-30.0 + 4 * 0.9))
    assert slicing.slice_index_to_position(volume, "sagittal", 5) == pytest.approx(-(-40.0 + 5 * 0.7))


@pytest.mark.parametrize("direction", [np.eye(3), CORONAL, SAGITTAL, OBLIQUE])
@pytest.mark.parametrize("axis", slicing.AXES)
def test_index_position_round_trip(direction, axis):
    volume = make_volume(direction)
    for index in range(slicing.slice_count(volume, axis)):
        position = slicing.slice_index_to_position(volume, axis, index)
        assert slicing.position_to_slice_index(volume, axis, position) == index
        # A viewer click anywhere in the slice plane finds the same slice.
        ijk = np.asarray(volume.shape[::-1], dtype=float) / 3.0
        ijk[slicing.itk_axis(volume, axis)] = index
        assert slicing.physical_point_to_slice_index(volume, axis, volume.index_to_physical(ijk)) == index


def test_out_of_range_positions_and_indices():
    volume = make_volume(np.eye(3))
    with pytest.raises(InputError, match="outside"):
        slicing.position_to_slice_index(volume, "axial", 1000.0)
    with pytest.raises(InputError, match=r"0\.\.5"):
        slicing.get_slice(volume, "acquisition", 6)
    with pytest.raises(InputError, match="--axis"):
        slicing.slice_count(volume, "diagonal")


@pytest.mark.parametrize("direction", [OBLIQUE, CORONAL])
@pytest.mark.parametrize("axis", ["acquisition", "axial", "sagittal"])
def test_marker_in_tagged_slice_lands_at_the_same_place_after_map_round_trip(tmp_path, direction, axis):
    """A marker set in slice i (found from its position) is in that slice of the re-read map,
    and at the same physical point."""
    write_dicom_series(tmp_path / "dicom", phantom(), direction=direction)
    volume = read_volume(tmp_path / "dicom")
    count = slicing.slice_count(volume, axis)
    index = count // 2 + 1
    position = slicing.slice_index_to_position(volume, axis, index)
    marker_map = np.zeros(volume.shape, dtype=np.float32)
    tagged = slicing.position_to_slice_index(volume, axis, position)
    plane = np.zeros_like(slicing.get_slice(volume, axis, tagged))
    plane[3, 4] = 1.0
    slicing.set_slice(marker_map, volume, axis, tagged, plane)
    marker_point = volume.index_to_physical(np.argwhere(marker_map == 1.0)[0][::-1].astype(float))
    write_volume(volume.with_array(marker_map), tmp_path / "marker.nrrd")
    back = read_volume(tmp_path / "marker.nrrd")
    assert slicing.get_slice(back, axis, index)[3, 4] == 1.0
    assert slicing.slice_index_to_position(back, axis, index) == pytest.approx(position, abs=1e-4)
    found = back.index_to_physical(np.argwhere(back.array == 1.0)[0][::-1].astype(float))
    np.testing.assert_allclose(found, marker_point, atol=1e-4)
