"""Volume-node geometry: checks, LPS <-> RAS conversion, NRRD exchange with the engine.

Slicer describes a volume by its IJK-to-RAS matrix; the engine (``d24fad.io.Volume``,
SimpleITK) uses LPS spacing / origin / direction cosines. The two differ only by the
sign of the first two world axes, so the conversion is exact: flipping a sign never
rounds. Slicer also stores spacing, origin and directions separately and composes the
matrix from them, so reading and writing those three pieces round-trips bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from d24fad.errors import GeometryError, ImageReadError, InputError

# Diagonal of the RAS <-> LPS flip (its own inverse).
RAS_LPS_FLIP = np.array([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class LpsGeometry:
    """Geometry in the engine's convention: ITK order (x, y, z), LPS world."""

    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]  # 3x3 row-major; column c = direction of image axis c


def lps_geometry_of_node(volume_node) -> LpsGeometry:
    """Read the node's spacing, origin and IJK directions and express them in LPS."""
    ras_directions = np.zeros((3, 3))
    volume_node.GetIJKToRASDirections(ras_directions)
    lps_directions = RAS_LPS_FLIP[:, None] * ras_directions
    return LpsGeometry(
        spacing=tuple(float(s) for s in volume_node.GetSpacing()),
        origin=tuple(float(o) for o in RAS_LPS_FLIP * np.array(volume_node.GetOrigin())),
        direction=tuple(float(d) for d in lps_directions.ravel()),
    )


def apply_lps_geometry(volume_node, geometry: LpsGeometry) -> None:
    """Set a node's spacing, origin and directions from an LPS geometry (exact inverse)."""
    lps_directions = np.array(geometry.direction, dtype=float).reshape(3, 3)
    volume_node.SetIJKToRASDirections(RAS_LPS_FLIP[:, None] * lps_directions)
    volume_node.SetSpacing(*geometry.spacing)
    volume_node.SetOrigin(*(RAS_LPS_FLIP * np.array(geometry.origin)))


def ijk_to_ras_array(volume_node) -> np.ndarray:
    """The node's IJK-to-RAS matrix as a 4x4 numpy array."""
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def ras_to_ijk_array(volume_node) -> np.ndarray:
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volume_node.GetRASToIJKMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def voxel_array_of_node(volume_node) -> np.ndarray:
    """A copy of the node's voxels, shape [k, j, i] (the engine's and SimpleITK's order)."""
    import slicer

    return np.array(slicer.util.arrayFromVolume(volume_node))


def require_scalar_volume(volume_node, parameter: str = "inputVolume", scene=None) -> None:
    """Raise :class:`InputError` unless ``volume_node`` is a single-frame scalar volume with voxels."""
    import slicer

    if volume_node is None:
        raise InputError(f"no volume selected (parameter '{parameter}')")
    name = volume_node.GetName() if hasattr(volume_node, "GetName") else repr(volume_node)
    if not isinstance(volume_node, slicer.vtkMRMLScalarVolumeNode):
        raise InputError(
            f"'{name}' ({volume_node.GetClassName()}) is not a scalar volume (parameter '{parameter}'); "
            "select a grey-level volume")
    if isinstance(volume_node, slicer.vtkMRMLLabelMapVolumeNode):
        raise InputError(f"'{name}' is a label map, not an image (parameter '{parameter}')")
    image = volume_node.GetImageData()
    if image is None or image.GetPointData().GetScalars() is None:
        raise InputError(f"volume '{name}' has no voxel data (parameter '{parameter}')")
    if image.GetNumberOfScalarComponents() != 1:
        raise InputError(
            f"volume '{name}' has {image.GetNumberOfScalarComponents()} components per voxel "
            f"(colour or multi-frame); a single-component scalar volume is needed (parameter '{parameter}')")
    if min(image.GetDimensions()) < 1:
        raise InputError(f"volume '{name}' is empty (parameter '{parameter}')")
    scene = scene if scene is not None else volume_node.GetScene()
    if scene is not None and _is_sequence_proxy(scene, volume_node):
        raise InputError(
            f"volume '{name}' is one frame of a 4D sequence (parameter '{parameter}'); "
            "this module scores single 3D volumes: extract the frame first (Sequences module)")


def _is_sequence_proxy(scene, volume_node) -> bool:
    browsers = scene.GetNodesByClass("vtkMRMLSequenceBrowserNode")
    try:
        return any(browsers.GetItemAsObject(i).IsProxyNodeID(volume_node.GetID())
                   for i in range(browsers.GetNumberOfItems()))
    finally:
        browsers.UnRegister(None)


def write_node_nrrd(volume_node, path: str | Path) -> Path:
    """Write the node's voxels with their exact LPS geometry to an uncompressed NRRD.

    SimpleITK is used rather than Slicer's storage nodes so that the file is identical in
    the application and under slicer-core, and no storage node is added to the scene.
    """
    import SimpleITK as sitk

    geometry = lps_geometry_of_node(volume_node)
    image = sitk.GetImageFromArray(voxel_array_of_node(volume_node))
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    sitk.WriteImage(image, str(path), useCompression=False)
    return Path(path)


def read_voxel_file(path: str | Path, expected_shape, what: str) -> np.ndarray:
    """Read a volume file written by the engine; its shape must be ``expected_shape`` (the
    input's [k, j, i]) unless that is None."""
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{what} {path} was not written by the scoring run")
    try:
        array = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    except RuntimeError as exc:
        raise ImageReadError(f"cannot read {what} {path}: {exc}") from exc
    if expected_shape is not None and tuple(array.shape) != tuple(expected_shape):
        raise GeometryError(
            f"{what} {path} has shape {tuple(array.shape)}, expected the input's {tuple(expected_shape)}")
    return array


def volume_from_node(volume_node):
    """Build a ``d24fad.io.Volume`` (float32 voxels, LPS geometry) from a scalar volume node."""
    from d24fad.io import Volume

    require_scalar_volume(volume_node)
    geometry = lps_geometry_of_node(volume_node)
    return Volume(
        array=voxel_array_of_node(volume_node).astype(np.float32),
        spacing=geometry.spacing,
        origin=geometry.origin,
        direction=geometry.direction,
        modality=volume_node.GetAttribute("DICOM.Modality") or "",
        metadata={},
        source=f"slicer:{volume_node.GetID()}",
    )


def update_node_from_volume(volume_node, volume) -> None:
    """Put a ``d24fad.io.Volume``'s voxels and geometry into a scalar volume node."""
    import slicer

    apply_lps_geometry(volume_node, LpsGeometry(
        spacing=tuple(volume.spacing), origin=tuple(volume.origin), direction=tuple(np.ravel(volume.direction))))
    slicer.util.updateVolumeFromArray(volume_node, np.ascontiguousarray(volume.array))
