"""Node geometry conversion and support-slice mapping on real MRML nodes."""

from __future__ import annotations

import numpy as np
import pytest
import slicer

from slicer_fixtures import add_volume, ijk_to_ras, rotation
from D24FADSlicerLib import geometry, support
from d24fad.errors import InputError, SupportSetError

# A head-first supine axial series as DICOM gives it: I -> left-to-right screen (R -> L
# is -R in RAS), J -> anterior-to-posterior, K -> inferior-to-superior.
AXIAL_DIRECTIONS = np.diag([-1.0, -1.0, 1.0])
# Coronal acquisition: I -> -R, J -> -S (rows go down), K -> A.
CORONAL_DIRECTIONS = np.array([[-1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])


def oblique_matrix():
    return ijk_to_ras((0.8, 0.9, 2.5), (12.5, -40.25, 7.0), rotation((1, 2, 0.5), 27.0) @ AXIAL_DIRECTIONS)


def slice_node_through(scene, normal, point, name="Red"):
    """A slice view whose plane has ``normal`` and passes through RAS ``point``."""
    node = slicer.vtkMRMLSliceNode()
    node.SetName(name)
    scene.AddNode(node)
    normal = np.asarray(normal, float) / np.linalg.norm(normal)
    helper = np.array([0.0, 1.0, 0.0]) if abs(normal[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x_axis = np.cross(helper, normal)
    x_axis /= np.linalg.norm(x_axis)
    node.SetSliceToRASByNTP(*normal, *x_axis, *point, 0)
    return node


@pytest.mark.parametrize("matrix", [
    ijk_to_ras((0.7, 0.8, 3.0), (100.0, 80.0, -60.0), AXIAL_DIRECTIONS),
    oblique_matrix(),
])
def test_lps_geometry_round_trips_ijk_to_ras_exactly(scene, matrix):
    source = add_volume(scene, np.zeros((4, 5, 6), np.int16), matrix)
    copy = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    lps = geometry.lps_geometry_of_node(source)
    geometry.apply_lps_geometry(copy, lps)
    assert np.array_equal(geometry.ijk_to_ras_array(copy), geometry.ijk_to_ras_array(source))
    # LPS differs from RAS by the sign of x and y only.
    assert lps.origin == pytest.approx((-matrix[0, 3], -matrix[1, 3], matrix[2, 3]))
    assert lps.spacing == pytest.approx(tuple(np.linalg.norm(matrix[:3, :3], axis=0)))


def test_nrrd_written_for_engine_has_lps_geometry_and_voxels(scene, tmp_path):
    import SimpleITK as sitk

    voxels = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    node = add_volume(scene, voxels, oblique_matrix())
    path = geometry.write_node_nrrd(node, tmp_path / "input.nrrd")
    image = sitk.ReadImage(str(path))
    assert np.array_equal(sitk.GetArrayFromImage(image), voxels)
    lps = geometry.lps_geometry_of_node(node)
    assert image.GetSpacing() == pytest.approx(lps.spacing)
    assert image.GetOrigin() == pytest.approx(lps.origin)
    assert image.GetDirection() == pytest.approx(lps.direction)
    # Physical point of a voxel agrees with the node's IJK-to-RAS after the LPS flip.
    ras = geometry.ijk_to_ras_array(node) @ np.array([5, 4, 3, 1.0])
    lps_point = image.TransformIndexToPhysicalPoint((5, 4, 3))
    assert lps_point == pytest.approx((-ras[0], -ras[1], ras[2]))


def test_read_voxel_file_refuses_wrong_shape_and_missing_file(tmp_path):
    import SimpleITK as sitk

    path = tmp_path / "map.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 4), np.float32)), str(path))
    assert geometry.read_voxel_file(path, (2, 3, 4), "anomaly map").shape == (2, 3, 4)
    with pytest.raises(InputError, match="map.nrrd"):
        geometry.read_voxel_file(path, (3, 3, 4), "anomaly map")
    with pytest.raises(InputError, match="absent.nrrd"):
        geometry.read_voxel_file(tmp_path / "absent.nrrd", (2, 3, 4), "anomaly map")


@pytest.mark.parametrize("directions, expected_axis", [
    (AXIAL_DIRECTIONS, {"acquisition": 2, "axial": 2, "coronal": 1, "sagittal": 0}),
    (CORONAL_DIRECTIONS, {"acquisition": 2, "axial": 1, "coronal": 2, "sagittal": 0}),
])
def test_anatomical_axes_pick_the_closest_ijk_axis(scene, directions, expected_axis):
    node = add_volume(scene, np.zeros((7, 8, 9), np.float32), ijk_to_ras((1, 1, 1), (0, 0, 0), directions))
    assert {axis: support.ijk_axis_of(node, axis) for axis in support.AXES} == expected_axis
    assert support.slice_count(node, "sagittal") == 9


@pytest.mark.parametrize("axis, normal, ijk_axis", [
    ("axial", (0, 0, 1), 2),
    ("coronal", (0, 1, 0), 1),
    ("sagittal", (1, 0, 0), 0),
])
def test_view_offset_maps_to_slice_index_for_each_plane(scene, axis, normal, ijk_axis):
    matrix = ijk_to_ras((0.7, 0.8, 3.0), (100.0, 80.0, -60.0), AXIAL_DIRECTIONS)
    node = add_volume(scene, np.zeros((12, 13, 14), np.float32), matrix)
    for index in (0, 5, [13, 12, 11][ijk_axis]):
        ijk = np.array([6.0, 6.0, 5.0, 1.0])
        ijk[ijk_axis] = index
        center = (matrix @ ijk)[:3]
        # Anywhere in the plane, and up to just under half a slice off it, is the same slice.
        spacing = np.linalg.norm(matrix[:3, ijk_axis])
        shift = 0.45 * spacing * np.asarray(normal, float)
        for point in (center, center + shift, center - shift):
            view = slice_node_through(scene, normal, point)
            assert support.slice_index_of_view(node, view, axis) == index


def test_view_offset_maps_to_slice_index_for_oblique_volume_after_rotating_view(scene):
    matrix = oblique_matrix()
    node = add_volume(scene, np.zeros((10, 11, 12), np.float32), matrix)
    view = slice_node_through(scene, (0, 0, 1), (0, 0, 0))
    assert not support.slice_view_is_aligned(node, view, "acquisition")
    with pytest.raises(SupportSetError, match="Red"):
        support.slice_index_of_view(node, view, "acquisition")
    view.RotateToVolumePlane(node)
    for index in (0, 4, 9):
        target = (matrix @ np.array([3.0, 8.0, index, 1.0]))[:3]
        view.JumpSliceByOffsetting(*target)
        assert support.slice_view_is_aligned(node, view, "acquisition")
        assert support.slice_index_of_view(node, view, "acquisition") == index


def test_view_outside_volume_and_index_outside_are_refused(scene):
    node = add_volume(scene, np.zeros((5, 6, 7), np.float32), np.eye(4))
    with pytest.raises(SupportSetError, match="outside"):
        support.slice_index_of_view(node, slice_node_through(scene, (0, 0, 1), (0, 0, 9.0)), "axial")
    with pytest.raises(SupportSetError, match="valid 0..4"):
        support.require_index_in_volume(node, "acquisition", 5)
    with pytest.raises(InputError, match="axis"):
        support.ijk_axis_of(node, "diagonal")


def test_slice_center_is_inside_the_slice(scene):
    matrix = oblique_matrix()
    node = add_volume(scene, np.zeros((10, 11, 12), np.float32), matrix)
    center = support.slice_center_ras(node, "acquisition", 7)
    assert support.slice_index_at_ras(node, "acquisition", center) == 7


def test_support_set_validation_and_json_round_trip(scene):
    first = add_volume(scene, np.zeros((5, 6, 7), np.float32), np.eye(4), name="first")
    other = add_volume(scene, np.zeros((9, 6, 7), np.float32), np.eye(4), name="other patient")
    references = [support.SupportReference(first.GetID(), 1), support.SupportReference(other.GetID(), 8),
                  support.SupportReference(first.GetID(), 1)]
    unique = support.validate_support_set(scene, references, "acquisition")
    assert unique == references[:2]
    assert support.support_set_from_json(support.support_set_to_json(unique)) == unique
    with pytest.raises(SupportSetError, match="at least 2"):
        support.validate_support_set(scene, references[:1], "acquisition")
    with pytest.raises(SupportSetError, match="'first'"):
        support.validate_support_set(scene, [references[0], support.SupportReference(first.GetID(), 5)],
                                     "acquisition")
    with pytest.raises(SupportSetError, match="vtkMRMLScalarVolumeNode999"):
        support.validate_support_set(scene, [references[0], support.SupportReference("vtkMRMLScalarVolumeNode999", 0)],
                                     "acquisition")
    with pytest.raises(SupportSetError, match="supportSet"):
        support.support_set_from_json("[{]")


def test_volume_from_node_and_back_preserves_voxels_and_ijk_to_ras(scene):
    voxels = np.random.default_rng(1).normal(size=(4, 5, 6)).astype(np.float32)
    node = add_volume(scene, voxels, oblique_matrix(), name="oblique MR")
    volume = geometry.volume_from_node(node)
    assert volume.array.dtype == np.float32 and np.array_equal(volume.array, voxels)
    # The engine's voxel-to-LPS affine is the node's IJK-to-RAS with x and y negated.
    assert np.allclose(np.diag([-1, -1, 1, 1]) @ geometry.ijk_to_ras_array(node), volume.index_to_physical_matrix)
    copy = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    geometry.update_node_from_volume(copy, volume)
    assert np.array_equal(geometry.ijk_to_ras_array(copy), geometry.ijk_to_ras_array(node))
    assert np.array_equal(slicer.util.arrayFromVolume(copy), voxels)


@pytest.mark.parametrize("directions", [AXIAL_DIRECTIONS, CORONAL_DIRECTIONS,
                                        rotation((1, 2, 0.5), 27.0) @ AXIAL_DIRECTIONS,
                                        rotation((0, 1, 0), 50.0) @ CORONAL_DIRECTIONS])
def test_slice_indices_agree_with_the_engine_slicing(scene, directions):
    """The module and the engine must name the same slice by the same index."""
    from d24fad import slicing

    matrix = ijk_to_ras((0.8, 0.9, 2.5), (12.5, -40.25, 7.0), directions)
    node = add_volume(scene, np.zeros((9, 10, 11), np.float32), matrix)
    volume = geometry.volume_from_node(node)
    rng = np.random.default_rng(3)
    for axis in support.AXES:
        assert support.ijk_axis_of(node, axis) == slicing.itk_axis(volume, axis)
        assert support.slice_count(node, axis) == slicing.slice_count(volume, axis)
        for _ in range(10):
            ijk = rng.uniform(0, [10, 9, 8])
            ras = (matrix @ np.append(ijk, 1.0))[:3]
            expected = slicing.physical_point_to_slice_index(volume, axis, ras * [-1, -1, 1])
            assert support.slice_index_at_ras(node, axis, ras) == expected


def test_view_mapping_and_jump_target_follow_a_parent_transform(scene):
    """A registered volume sits under a transform: views show world coordinates."""
    import vtk

    matrix = oblique_matrix()
    node = add_volume(scene, np.zeros((10, 11, 12), np.float32), matrix)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    to_parent = np.eye(4)
    to_parent[:3, :3] = rotation((0, 0, 1), 35.0)
    to_parent[:3, 3] = (15.0, -7.0, 22.0)
    vtk_matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            vtk_matrix.SetElement(r, c, to_parent[r, c])
    transform.SetMatrixTransformToParent(vtk_matrix)
    node.SetAndObserveTransformNodeID(transform.GetID())
    for index in (2, 7):
        world = (to_parent @ matrix @ np.array([4.0, 6.0, index, 1.0]))[:3]
        normal = to_parent[:3, :3] @ matrix[:3, 2]
        view = slice_node_through(scene, normal, world)
        assert support.slice_view_is_aligned(node, view, "acquisition")
        assert support.slice_index_of_view(node, view, "acquisition") == index
        jump = support.slice_center_ras(node, "acquisition", index)
        assert support.slice_index_of_view(node, slice_node_through(scene, normal, jump), "acquisition") == index
