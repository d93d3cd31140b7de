"""Support (normal reference) slices: view offset -> slice index, validation, storage.

A reference is a (volume, slice index) pair. The index counts along one of the
volume's own IJK axes: the acquisition axis (K) or the IJK axis closest to the
anatomical axis asked for (axial -> S, coronal -> A, sagittal -> R). That is also how
the engine's ``--axis`` option picks slices from the same file, so an index chosen here
names the same slice in the background run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from d24fad.errors import InputError, SupportSetError

from .geometry import ijk_to_ras_array, ras_to_ijk_array, require_scalar_volume

AXES = ("acquisition", "axial", "coronal", "sagittal")

# The paper's smallest setting is 2-shot; one reference gives the learn-to-weight
# attention nothing to weigh. 4 references is where its results level off.
MIN_SUPPORT_SLICES = 2
RECOMMENDED_SUPPORT_SLICES = 4

# What the engine CLI accepts (d24fad score): slices of the scored volume are required,
# slices of at most one other volume may be added (--support-input).
MAX_OTHER_SUPPORT_VOLUMES = 1

# Row of the RAS world axis each anatomical plane is stacked along.
_RAS_ROW_OF_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}

# cos(2 degrees): a slice view within this of the volume's planes counts as aligned.
_ALIGNED_COSINE = float(np.cos(np.deg2rad(2.0)))


@dataclass(frozen=True)
class SupportReference:
    """One normal reference slice: which volume node, which slice index along the axis."""

    volume_node_id: str
    index: int


def require_axis(axis: str) -> str:
    if axis not in AXES:
        raise InputError(f"unknown axis '{axis}' (parameter 'axis'); choose one of {', '.join(AXES)}")
    return axis


def ijk_axis_of(volume_node, axis: str) -> int:
    """Which IJK axis (0 = I, 1 = J, 2 = K) slices are stacked along for ``axis``."""
    require_axis(axis)
    if axis == "acquisition":
        return 2
    directions = ijk_to_ras_array(volume_node)[:3, :3]
    directions = directions / np.linalg.norm(directions, axis=0)
    return int(np.argmax(np.abs(directions[_RAS_ROW_OF_AXIS[axis]])))


def slice_count(volume_node, axis: str) -> int:
    dims_ijk = volume_node.GetImageData().GetDimensions()
    return int(dims_ijk[ijk_axis_of(volume_node, axis)])


def require_index_in_volume(volume_node, axis: str, index: int) -> int:
    count = slice_count(volume_node, axis)
    if not 0 <= int(index) < count:
        raise SupportSetError(
            f"support slice {index} is outside volume '{volume_node.GetName()}' "
            f"({count} slices along the {axis} axis, valid 0..{count - 1})")
    return int(index)


def slice_index_at_ras(volume_node, axis: str, ras_point) -> int:
    """Index of the slice of ``volume_node`` along ``axis`` containing a point given in the
    volume's own RAS frame (see :func:`world_to_volume_ras`)."""
    ijk = ras_to_ijk_array(volume_node) @ np.append(np.asarray(ras_point, dtype=float), 1.0)
    index = int(np.floor(ijk[ijk_axis_of(volume_node, axis)] + 0.5))
    return require_index_in_volume(volume_node, axis, index)


def world_to_volume_ras(volume_node, world_points) -> np.ndarray:
    """World RAS points (what slice views show) in the volume's own RAS frame.

    Equal unless the volume sits under a transform (e.g. after registration); then the
    points go through the inverse of that transform, linear or not.
    """
    return _through_parent_transform(volume_node, world_points, to_world=False)


def _through_parent_transform(volume_node, points, to_world: bool) -> np.ndarray:
    points = np.atleast_2d(np.asarray(points, dtype=float))
    parent = volume_node.GetParentTransformNode()
    if parent is None:
        return points
    import slicer
    import vtk

    transform = vtk.vtkGeneralTransform()
    source, target = (parent, None) if to_world else (None, parent)
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(source, target, transform)
    return np.array([transform.TransformPoint(*point) for point in points])


def _view_plane_in_volume_frame(volume_node, slice_node) -> tuple[np.ndarray, np.ndarray]:
    """(centre, unit normal) of a slice view's plane in the volume's RAS frame."""
    slice_to_ras = _slice_to_ras_array(slice_node)
    centre = slice_to_ras[:3, 3]
    normal = slice_to_ras[:3, 2] / np.linalg.norm(slice_to_ras[:3, 2])
    mapped_centre, mapped_tip = world_to_volume_ras(volume_node, [centre, centre + normal])
    direction = mapped_tip - mapped_centre
    return mapped_centre, direction / np.linalg.norm(direction)


def slice_view_is_aligned(volume_node, slice_node, axis: str) -> bool:
    """True when the view's normal is parallel to the volume's slice-stacking axis."""
    _, normal = _view_plane_in_volume_frame(volume_node, slice_node)
    stacking = ijk_to_ras_array(volume_node)[:3, ijk_axis_of(volume_node, axis)]
    stacking = stacking / np.linalg.norm(stacking)
    return abs(float(normal @ stacking)) >= _ALIGNED_COSINE


def slice_index_of_view(volume_node, slice_node, axis: str) -> int:
    """Index of the volume slice a slice view shows (the view must show that axis's planes).

    The view's plane passes through its SliceToRAS origin, so that point's coordinate
    along the stacking axis is the view's offset in the volume's own grid. For an
    oblique volume the caller first turns the view onto the volume's planes
    (``vtkMRMLSliceNode.RotateToVolumePlane``), as the module's widget does.
    """
    if not slice_view_is_aligned(volume_node, slice_node, axis):
        raise SupportSetError(
            f"slice view '{slice_node.GetName()}' does not show {axis} planes of '{volume_node.GetName()}'; "
            f"pick the view that shows them or change the axis (parameter 'axis')")
    centre, _ = _view_plane_in_volume_frame(volume_node, slice_node)
    return slice_index_at_ras(volume_node, axis, centre)


def slice_center_ras(volume_node, axis: str, index: int) -> np.ndarray:
    """World RAS position of the centre of slice ``index`` (where "jump to" moves the views)."""
    require_index_in_volume(volume_node, axis, index)
    dims_ijk = np.array(volume_node.GetImageData().GetDimensions(), dtype=float)
    ijk = (dims_ijk - 1.0) / 2.0
    ijk[ijk_axis_of(volume_node, axis)] = index
    local = (ijk_to_ras_array(volume_node) @ np.append(ijk, 1.0))[:3]
    return _through_parent_transform(volume_node, local, to_world=True)[0]


def _slice_to_ras_array(slice_node) -> np.ndarray:
    matrix = slice_node.GetSliceToRAS()
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def validate_support_set(scene, references, axis: str, minimum: int = MIN_SUPPORT_SLICES) -> list[SupportReference]:
    """Check count, volumes and indices; return the references without duplicates, in order."""
    require_axis(axis)
    unique = list(dict.fromkeys(references))
    if len(unique) < minimum:
        raise SupportSetError(
            f"{len(unique)} support slice(s) given, at least {minimum} are needed "
            f"(parameter 'supportSlices'; {RECOMMENDED_SUPPORT_SLICES} recommended)")
    for reference in unique:
        volume_node = scene.GetNodeByID(reference.volume_node_id)
        if volume_node is None:
            raise SupportSetError(
                f"support volume '{reference.volume_node_id}' is not in the scene (parameter 'supportSlices')")
        require_scalar_volume(volume_node, parameter="supportSlices", scene=scene)
        require_index_in_volume(volume_node, axis, reference.index)
    return unique


def support_set_to_json(references) -> str:
    """Serialise for the parameter node (a string survives scene save and reload)."""
    return json.dumps([asdict(r) for r in references])


def support_set_from_json(text: str) -> list[SupportReference]:
    if not text:
        return []
    try:
        return [SupportReference(str(item["volume_node_id"]), int(item["index"])) for item in json.loads(text)]
    except (ValueError, KeyError, TypeError) as exc:
        raise SupportSetError(f"stored support set is not readable (parameter 'supportSet'): {exc}") from exc


def require_engine_support_layout(own_slices: int, other_volumes: int, parameter: str = "supportSlices") -> None:
    """Refuse support sets the engine CLI cannot take, with a message saying what to change."""
    if own_slices < 1:
        raise SupportSetError(
            f"tag at least one normal slice of the scored volume itself (parameter '{parameter}'); "
            "the engine takes references from another volume only in addition to those")
    if other_volumes > MAX_OTHER_SUPPORT_VOLUMES:
        raise SupportSetError(
            f"references come from {other_volumes} other volumes; the engine accepts at most "
            f"{MAX_OTHER_SUPPORT_VOLUMES} (parameter '{parameter}')")
