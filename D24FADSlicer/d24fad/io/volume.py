"""The in-memory volume every reader returns and every writer accepts.

Geometry follows ITK / SimpleITK exactly (LPS patient coordinates): the physical point of
voxel index (i, j, k) is ``origin + direction @ (spacing * (i, j, k))``, and ``array`` is
indexed ``[k, j, i]`` like ``SimpleITK.GetArrayFromImage``. For DICOM series axis 0 of the
array is the acquisition (slice) axis, sorted along the slice normal.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np

from ..errors import GeometryError


def _as_float_tuple(values, length: int, name: str) -> tuple[float, ...]:
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    if flat.size != length or not np.all(np.isfinite(flat)):
        raise GeometryError(f"volume {name} must be {length} finite numbers, got {values!r}")
    return tuple(float(v) for v in flat)


@dataclasses.dataclass
class Volume:
    """A scalar 3D image with its patient-space geometry and a little DICOM metadata."""

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    modality: Optional[str] = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        array = np.asarray(self.array)
        if array.ndim != 3:
            raise GeometryError(f"volume from {self.source or 'memory'} must be 3D [k, j, i], got shape {array.shape}")
        self.array = array
        self.spacing = _as_float_tuple(self.spacing, 3, "spacing")
        if min(self.spacing) <= 0:
            raise GeometryError(f"volume spacing must be positive, got {self.spacing}")
        self.origin = _as_float_tuple(self.origin, 3, "origin")
        self.direction = _as_float_tuple(self.direction, 9, "direction")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.array.shape)

    @property
    def direction_matrix(self) -> np.ndarray:
        """3x3 matrix whose column c is the LPS direction of ITK index axis c (i, j, k)."""
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3)

    @property
    def index_to_physical_matrix(self) -> np.ndarray:
        """4x4 affine taking (i, j, k, 1) to LPS millimetres."""
        affine = np.eye(4)
        affine[:3, :3] = self.direction_matrix * np.asarray(self.spacing)[None, :]
        affine[:3, 3] = self.origin
        return affine

    def index_to_physical(self, ijk) -> np.ndarray:
        ijk = np.asarray(ijk, dtype=np.float64)
        return self.index_to_physical_matrix[:3, :3] @ ijk + np.asarray(self.origin)

    def physical_to_continuous_index(self, point_lps) -> np.ndarray:
        """Inverse of :meth:`index_to_physical` (continuous (i, j, k))."""
        matrix = self.index_to_physical_matrix[:3, :3]
        return np.linalg.solve(matrix, np.asarray(point_lps, dtype=np.float64) - np.asarray(self.origin))

    def with_array(self, array: np.ndarray, **metadata_updates) -> "Volume":
        """A volume with the same geometry and ``array`` (same shape) as its voxels."""
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise GeometryError(f"array shape {array.shape} differs from the volume shape {self.array.shape}")
        metadata = dict(self.metadata)
        metadata.update(metadata_updates)
        return dataclasses.replace(self, array=array, metadata=metadata)

    def to_sitk(self):
        """The SimpleITK image with the same voxels and geometry."""
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(np.ascontiguousarray(self.array), isVector=False)
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    @classmethod
    def from_sitk(cls, image, modality: Optional[str] = None, metadata: Optional[dict] = None,
                  source: str = "", dtype=np.float32) -> "Volume":
        """Wrap a 3D scalar SimpleITK image (2D images become one-slice volumes)."""
        import SimpleITK as sitk

        if image.GetNumberOfComponentsPerPixel() != 1:
            raise GeometryError(f"{source or 'image'}: colour / vector voxels cannot be scored as a volume")
        if image.GetDimension() == 2:
            image = sitk.JoinSeries(image)
        if image.GetDimension() != 3:
            raise GeometryError(f"{source or 'image'}: expected a 3D image, got {image.GetDimension()}D "
                                f"of size {image.GetSize()}")
        array = sitk.GetArrayFromImage(image)
        if dtype is not None:
            array = array.astype(dtype, copy=False)
        return cls(array=array, spacing=image.GetSpacing(), origin=image.GetOrigin(),
                   direction=image.GetDirection(), modality=modality, metadata=dict(metadata or {}),
                   source=str(source))

    def same_geometry(self, other: "Volume", atol: float = 1e-4) -> bool:
        return (self.shape == other.shape
                and np.allclose(self.spacing, other.spacing, atol=atol)
                and np.allclose(self.origin, other.origin, atol=atol)
                and np.allclose(self.direction, other.direction, atol=atol))
