"""Synthetic lesions with exact masks, for building abnormal test images and validation sets.

Real abnormal cases with pixel annotations are scarce, so benchmarks and model selection
use real normal images with a synthetic lesion added. Four kinds are offered:

``hyper``       a brighter mass: soft border, irregular outline, its own fine texture
``hypo``        a darker mass (cyst, hemorrhage, necrosis), same construction
``texture``     a local texture change whose mean intensity stays close to the tissue's
``distortion``  a structural distortion: a local elastic warp (mass effect), no new intensity

Every kind changes the image only where the returned mask is True, so the mask is an exact
ground truth of the changed region. All randomness comes from the ``numpy.random.Generator``
the caller passes in: the same generator state gives the same lesion.

Supported layouts (float arrays in [0, 1]): 2D grey ``(H, W)``, 2D colour ``(H, W, 3)``,
and volumes ``(k, j, i)``. A 3-dimensional array whose last axis has length 3 is read as a
colour image; a volume must have more than 3 voxels along its last axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from ..errors import InputError

LESION_KINDS: tuple[str, ...] = ("hyper", "hypo", "texture", "distortion")

# Lesion radius, as a fraction of the smallest spatial size, when the caller gives none.
_RADIUS_FRACTION_RANGE = (0.06, 0.14)
_MIN_RADIUS_PX = 3.0
# Intensity window where "tissue" lies: lesions are placed there, not in the black
# background of an MRI slice or the white glass of a histology slide.
_TISSUE_RANGE = (0.08, 0.93)
# A warp displacement below this many pixels is invisible after resampling.
_MIN_VISIBLE_DISPLACEMENT_PX = 0.5


@dataclass(frozen=True)
class _Layout:
    """Where the spatial axes and the optional colour axis are in the input array."""

    spatial_shape: tuple[int, ...]
    has_channels: bool


def synthesize_lesion(
    image: np.ndarray,
    rng: np.random.Generator,
    kind: str = "auto",
    center: Optional[Sequence[float]] = None,
    radius: Optional[float] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(image_with_lesion, mask)`` for a float image in [0, 1].

    ``kind`` is one of :data:`LESION_KINDS` or ``"auto"`` (drawn from ``rng``). ``center``
    gives the spatial index of the lesion centre (default: a random point in tissue);
    ``radius`` its mean radius in pixels (default: 6-14 % of the smallest spatial size).
    The mask is a boolean array of the spatial shape; pixels outside it are bit-identical
    to the input. The input array is never modified.
    """
    layout = _check_image(image)
    if not isinstance(rng, np.random.Generator):
        raise InputError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    kind = _choose_kind(kind, rng)
    radius = _choose_radius(radius, layout.spatial_shape, rng)
    grey = image.mean(axis=-1) if layout.has_channels else image
    center = _choose_center(center, grey, radius, rng, prefer_structure=(kind == "distortion"))

    box = _bounding_box(center, radius * 1.8, layout.spatial_shape)
    local_center = np.array(center, dtype=float) - np.array([s.start for s in box], dtype=float)
    patch = np.asarray(image[box], dtype=np.float64)
    box_shape = patch.shape[: len(layout.spatial_shape)]
    if kind == "distortion":
        new_patch, local_mask = _warp_patch(patch, layout.has_channels, local_center, radius, rng)
    else:
        alpha = _soft_blob(box_shape, local_center, radius, rng)
        local_mask = alpha > 0
        target = _lesion_target(patch, alpha, layout.has_channels, kind, radius, rng)
        weight = alpha[..., None] if layout.has_channels else alpha
        new_patch = (1.0 - weight) * patch + weight * target

    output = np.array(image, copy=True)
    mask = np.zeros(layout.spatial_shape, dtype=bool)
    mask[box] = local_mask
    keep = local_mask[..., None] if layout.has_channels else local_mask
    output[box] = np.where(keep, np.clip(new_patch, 0.0, 1.0), patch).astype(image.dtype)
    return output, mask


def _check_image(image: np.ndarray) -> _Layout:
    if not isinstance(image, np.ndarray) or not np.issubdtype(image.dtype, np.floating):
        raise InputError("image must be a floating-point numpy array with values in [0, 1]")
    if image.ndim == 2:
        layout = _Layout(image.shape, has_channels=False)
    elif image.ndim == 3 and image.shape[-1] == 3:
        layout = _Layout(image.shape[:2], has_channels=True)
    elif image.ndim == 3:
        layout = _Layout(image.shape, has_channels=False)
    else:
        raise InputError(f"image must be (H, W), (H, W, 3) or (k, j, i); got shape {image.shape}")
    if min(layout.spatial_shape) < 8:
        raise InputError(f"image is too small for a lesion: spatial shape {layout.spatial_shape}")
    if not np.all(np.isfinite(image)) or image.min() < 0.0 or image.max() > 1.0:
        raise InputError("image values must be finite and within [0, 1]")
    return layout


def _choose_kind(kind: str, rng: np.random.Generator) -> str:
    if kind == "auto":
        return LESION_KINDS[int(rng.integers(len(LESION_KINDS)))]
    if kind not in LESION_KINDS:
        raise InputError(f"kind must be 'auto' or one of {LESION_KINDS}, got {kind!r}")
    return kind


def _choose_radius(radius: Optional[float], spatial_shape: tuple[int, ...], rng) -> float:
    smallest = float(min(spatial_shape))
    if radius is None:
        return max(_MIN_RADIUS_PX, smallest * float(rng.uniform(*_RADIUS_FRACTION_RANGE)))
    radius = float(radius)
    if not np.isfinite(radius) or radius < _MIN_RADIUS_PX or radius > smallest / 2:
        raise InputError(
            f"radius must be between {_MIN_RADIUS_PX} and half the smallest image size "
            f"({smallest / 2:g}) pixels, got {radius:g}"
        )
    return radius


def _choose_center(center, grey: np.ndarray, radius: float, rng, prefer_structure: bool) -> tuple[float, ...]:
    if center is not None:
        center = tuple(float(c) for c in center)
        if len(center) != grey.ndim or any(not 0 <= c <= s - 1 for c, s in zip(center, grey.shape)):
            raise InputError(f"center {center} is not a spatial index inside image shape {grey.shape}")
        return center
    # Prefer points whose whole neighbourhood is tissue, then any tissue, then anywhere
    # away from the border: a lesion in the air around a head is not a lesion.
    smooth = ndimage.uniform_filter(grey.astype(np.float64), size=3)
    tissue = (smooth > _TISSUE_RANGE[0]) & (smooth < _TISSUE_RANGE[1])
    depth = ndimage.distance_transform_edt(np.pad(tissue, 1))[tuple(slice(1, -1) for _ in grey.shape)]
    inside = np.ones_like(tissue)
    margin = int(np.ceil(radius))
    for axis, size in enumerate(grey.shape):
        index = np.arange(size)
        shape = [1] * grey.ndim
        shape[axis] = size
        inside &= ((index >= margin) & (index < size - margin)).reshape(shape)
    deep_tissue = inside & (depth >= radius)
    preferences = [deep_tissue, inside & tissue, inside]
    if prefer_structure:
        # A warp of a flat region changes nothing: put distortions where there are edges.
        structure = ndimage.gaussian_filter(ndimage.gaussian_gradient_magnitude(smooth, 1.0), radius / 2)
        if deep_tissue.any():
            preferences.insert(0, deep_tissue & (structure >= np.percentile(structure[deep_tissue], 75)))
    for candidates in preferences:
        points = np.argwhere(candidates)
        if len(points):
            return tuple(float(v) for v in points[int(rng.integers(len(points)))])
    return tuple((s - 1) / 2.0 for s in grey.shape)


def _bounding_box(center, half_size: float, spatial_shape) -> tuple[slice, ...]:
    return tuple(
        slice(max(0, int(np.floor(c - half_size))), min(s, int(np.ceil(c + half_size)) + 1))
        for c, s in zip(center, spatial_shape)
    )


def _smooth_noise(shape: tuple[int, ...], sigma: float, rng) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to zero mean and unit standard deviation."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=sigma, mode="reflect")
    return (noise - noise.mean()) / (noise.std() + 1e-12)


def _random_rotation(ndim: int, rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((ndim, ndim)))
    return q * np.sign(np.diag(r))


def _normalised_distance(shape, center, radius: float, rng) -> np.ndarray:
    """Distance to ``center`` in units of a random rotated ellipsoid with mean radius ``radius``,
    with an irregular (noise-perturbed) outline; 1.0 is the lesion boundary."""
    ndim = len(shape)
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=float) for s in shape], indexing="ij"), axis=-1)
    offsets = (grid - np.asarray(center)) @ _random_rotation(ndim, rng)
    semi_axes = radius * rng.uniform(0.7, 1.3, size=ndim)
    distance = np.sqrt(np.sum((offsets / semi_axes) ** 2, axis=-1))
    lobulation = 0.18 * _smooth_noise(shape, sigma=max(1.0, radius / 2.5), rng=rng)
    return distance * (1.0 + lobulation)


def _soft_blob(shape, center, radius: float, rng) -> np.ndarray:
    """Blending weight: 1 in the core, a smooth ramp over the border, exactly 0 outside."""
    distance = _normalised_distance(shape, center, radius, rng)
    border_width = rng.uniform(0.2, 0.45)
    t = np.clip((1.0 - distance) / border_width, 0.0, 1.0)
    alpha = t * t * (3.0 - 2.0 * t)
    # The lobulated outline can pinch off specks far from the mass: one lesion, one piece.
    return np.where(_central_component(alpha > 0, center), alpha, 0.0)


def _central_component(support: np.ndarray, center) -> np.ndarray:
    labels, count = ndimage.label(support)
    if count <= 1:
        return support
    at_center = labels[tuple(int(round(c)) for c in center)]
    if at_center == 0:
        at_center = 1 + int(np.argmax(ndimage.sum_labels(support, labels, range(1, count + 1))))
    return labels == at_center


def _lesion_target(patch, alpha, has_channels: bool, kind: str, radius: float, rng) -> np.ndarray:
    """The intensity the lesion tends to in its core (same shape as ``patch``)."""
    spatial = alpha.shape
    inside = alpha > 0
    tissue_mean = patch[inside].mean(axis=0)  # per channel for colour images
    texture = _smooth_noise(spatial, sigma=rng.uniform(0.6, 1.5), rng=rng)
    if has_channels:
        texture = texture[..., None]
        tint = np.clip(1.0 + rng.normal(0.0, 0.25, size=3), 0.4, 1.6)
    else:
        tint = 1.0
    if kind == "texture":
        # Same mean, different grain: coarser or finer noise with a visible amplitude.
        amplitude = rng.uniform(0.08, 0.16)
        coarse = _smooth_noise(spatial, sigma=max(1.0, radius / rng.uniform(3.0, 6.0)), rng=rng)
        coarse = coarse[..., None] if has_channels else coarse
        smoothed = ndimage.gaussian_filter(patch, sigma=(1.5,) * len(spatial) + ((0,) if has_channels else ()))
        return smoothed + amplitude * (0.6 * texture + 0.8 * coarse)
    contrast = rng.uniform(0.18, 0.35)
    if kind == "hyper":
        core = tissue_mean + contrast * tint
    else:
        core = tissue_mean * (1.0 - contrast * tint * 1.6) - 0.05
    core = np.clip(core, 0.03, 0.97)
    return core + rng.uniform(0.03, 0.07) * texture


def _warp_patch(patch, has_channels: bool, center, radius: float, rng):
    """Elastic mass effect: tissue pushed outwards (or pulled in) around ``center``, plus a
    smooth random component. Returns the warped patch and the mask of moved pixels."""
    spatial = patch.shape[:-1] if has_channels else patch.shape
    ndim = len(spatial)
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=float) for s in spatial], indexing="ij"))
    offsets = grid - np.asarray(center).reshape((ndim,) + (1,) * ndim)
    distance = np.sqrt(np.sum(offsets**2, axis=0)) + 1e-9
    envelope = np.clip(1.0 - distance / (1.6 * radius), 0.0, 1.0) ** 2
    strength = radius * rng.uniform(0.35, 0.6) * (1 if rng.random() < 0.7 else -1)
    radial = strength * envelope * np.sin(np.pi * np.clip(distance / (1.6 * radius), 0, 1)) * offsets / distance
    random_part = np.stack([_smooth_noise(spatial, sigma=radius / 2.0, rng=rng) for _ in range(ndim)])
    displacement = radial + 0.15 * radius * envelope * random_part
    moved = np.sqrt(np.sum(displacement**2, axis=0)) >= _MIN_VISIBLE_DISPLACEMENT_PX
    # Sample the source image at (x - displacement): content moves along the displacement.
    coordinates = grid - displacement
    channels = [patch[..., c] for c in range(patch.shape[-1])] if has_channels else [patch]
    warped = [ndimage.map_coordinates(ch, coordinates, order=1, mode="nearest") for ch in channels]
    new_patch = np.stack(warped, axis=-1) if has_channels else warped[0]
    return new_patch, moved
