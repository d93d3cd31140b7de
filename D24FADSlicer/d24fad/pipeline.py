"""End-to-end scoring used by the CLI and the Slicer module.

``score_volume``: normalise the volume once, turn the tagged normal slices into the support
set, score every slice along the axis in batches, and put each slice's map back on the
source voxels. ``score_image_folder``: the same for a folder of 2D images against a folder
of normal images.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np

from . import slicing
from .errors import InputError, SupportSetError
from .io.images import Image2D, list_images, load_image_2d
from .io.volume import Volume
from .preprocess import (MIN_BODY_FRACTION, IntensityPlan, WindowSpec, apply_intensity_plan, batch_to_model_input,
                         body_mask, plan_intensity)

ProgressCallback = Callable[[int, int], None]
CancelCheck = Callable[[], bool]
ThresholdSpec = Union[float, str, None]

# Slices converted to model input at a time: bounds memory for long series.
QUERY_CHUNK_BATCHES = 4


@dataclasses.dataclass
class SupportRef:
    """Normal reference slices: ``indices`` along the scoring axis of ``volume``."""

    volume: Volume
    indices: Sequence[int]


@dataclasses.dataclass
class VolumeScoreResult:
    volume: Volume  # the scored volume (geometry source of every output)
    axis: str
    anomaly_map: np.ndarray  # float32, same shape as volume.array
    slice_indices: np.ndarray  # int64 [n_slices]
    slice_positions_mm: np.ndarray  # float64 [n_slices]
    slice_scores: np.ndarray  # float32 [n_slices]
    weights: np.ndarray  # float32 [n_slices, n_scales, K]
    threshold: Optional[float]
    supports: list[dict]  # [{"source": ..., "indices": [...]}]
    intensity: IntensityPlan
    slice_body_fraction: Optional[np.ndarray] = None  # [n_slices]; None when not restricted to the body

    @property
    def map_volume(self) -> Volume:
        """The anomaly map as a Volume with the input's exact geometry."""
        return self.volume.with_array(self.anomaly_map.astype(np.float32, copy=False), content="d24fad anomaly map")

    def mask_volume(self, threshold: Optional[float] = None) -> Volume:
        """uint8 mask (1 = anomalous) of map >= threshold (default: the result's threshold)."""
        threshold = self.threshold if threshold is None else threshold
        if threshold is None:
            raise InputError("a mask needs a threshold: pass --threshold T or --threshold auto")
        mask = (self.anomaly_map >= float(threshold)).astype(np.uint8)
        return self.volume.with_array(mask, content="d24fad anomaly mask", threshold=float(threshold))

    def top_slices(self, count: int = 5) -> list[tuple[int, float, float]]:
        """(index, position_mm, score) of the highest-scoring slices, best first."""
        order = np.argsort(-self.slice_scores, kind="stable")[:count]
        return [(int(self.slice_indices[i]), float(self.slice_positions_mm[i]), float(self.slice_scores[i]))
                for i in order]


def _normalized_array(volume: Volume, window: WindowSpec) -> tuple[np.ndarray, IntensityPlan]:
    plan = plan_intensity(volume.array, volume.modality, window, volume.metadata)
    return apply_intensity_plan(volume.array, plan), plan


def _check_support_indices(support: SupportRef, axis: str) -> list[int]:
    count = slicing.slice_count(support.volume, axis)
    indices = [int(i) for i in support.indices]
    if not indices:
        raise SupportSetError(f"no support slices given for {support.volume.source or 'the volume'}")
    for index in indices:
        if not 0 <= index < count:
            raise SupportSetError(f"support slice index {index} is out of range for "
                                  f"{support.volume.source or 'the volume'}: valid {axis} indices are 0..{count - 1}")
    return indices


def _support_images(query: Volume, query_normalized: np.ndarray, supports: Sequence[SupportRef], axis: str,
                    window: WindowSpec) -> tuple[list[np.ndarray], list[dict]]:
    if not supports:
        raise SupportSetError("the support set is empty: tag at least one normal slice")
    images, described = [], []
    for support in supports:
        indices = _check_support_indices(support, axis)
        if support.volume is query:
            normalized = query_normalized
        else:
            # Each normal volume is normalised on its own statistics, like the query.
            normalized, _ = _normalized_array(support.volume, window)
        images.extend(slicing.get_slice(support.volume, axis, i, array=normalized) for i in indices)
        described.append({"source": support.volume.source, "indices": indices,
                          "same_as_input": support.volume is query})
    return images, described


def parse_threshold(threshold: ThresholdSpec) -> Union[float, str, None]:
    """A finite float, "auto" (calibrate on the supports), or None; bad values raise."""
    if threshold is None:
        return None
    if isinstance(threshold, str):
        if threshold.strip().lower() == "auto":
            return "auto"
        try:
            threshold = float(threshold)
        except ValueError:
            raise InputError(f"--threshold {threshold!r}: expected a number or 'auto'") from None
    threshold = float(threshold)
    if not np.isfinite(threshold):
        raise InputError(f"--threshold {threshold}: must be finite")
    return threshold


def _resolve_threshold(threshold: ThresholdSpec, detector) -> Optional[float]:
    threshold = parse_threshold(threshold)
    if threshold == "auto":
        return float(detector.calibrate_threshold())
    return threshold


class _ChunkProgress:
    """Turns the detector's per-chunk (done, total) into progress over all queries."""

    def __init__(self, progress: Optional[ProgressCallback], total: int):
        self.progress, self.total, self.offset = progress, total, 0

    def __call__(self, done: int, _chunk_total: int) -> None:
        if self.progress is not None:
            self.progress(self.offset + done, self.total)


def _score_images(detector, images01: Sequence, batch_size: int, progress: Optional[ProgressCallback],
                  should_cancel: Optional[CancelCheck]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Score [0, 1] images of any shapes: maps on each image's own grid, scores, weights.

    ``images01`` may be a lazy sequence (items loaded on access) to bound memory.
    """
    size = detector.image_size
    total = len(images01)
    chunk = max(1, batch_size) * QUERY_CHUNK_BATCHES
    reporter = _ChunkProgress(progress, total)
    maps, scores, weights = [], [], []
    for start in range(0, total, chunk):
        batch, fits = batch_to_model_input([images01[i] for i in range(start, min(start + chunk, total))], size)
        reporter.offset = start
        result = detector.score(batch, batch_size=batch_size, progress=reporter, should_cancel=should_cancel)
        maps.extend(fit.inverse(square) for fit, square in zip(fits, result.maps))
        scores.append(np.asarray(result.scores, dtype=np.float32))
        weights.append(np.asarray(result.weights, dtype=np.float32))
    return maps, np.concatenate(scores), np.concatenate(weights)


class _SliceSequence:
    """The normalised slices of a volume along an axis, extracted only when scored."""

    def __init__(self, volume: Volume, axis: str, normalized: np.ndarray):
        self.volume, self.axis, self.normalized = volume, axis, normalized

    def __len__(self) -> int:
        return slicing.slice_count(self.volume, self.axis)

    def __getitem__(self, index: int) -> np.ndarray:
        return slicing.get_slice(self.volume, self.axis, index, array=self.normalized)


def _restrict_to_body(volume: Volume, axis: str, maps: list[np.ndarray], reduction: str,
                      topk_fraction: float) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Zero each slice's map outside the body and score the slice on body pixels only.

    Returns (maps, slice scores, body fraction per slice); a slice with less than
    MIN_BODY_FRACTION of body pixels scores 0 (nothing there can be a finding).
    """
    body = body_mask(volume.array, volume.modality)
    restricted, scores, fractions = [], [], []
    for index, slice_map in enumerate(maps):
        inside = slicing.get_slice(volume, axis, index, array=body).astype(bool)
        fraction = float(inside.mean()) if inside.size else 0.0
        if fraction < MIN_BODY_FRACTION:
            inside = np.zeros_like(inside)  # too little tissue to judge: the whole slice is left out
        slice_map = np.where(inside, slice_map, 0.0).astype(np.float32)
        values = slice_map[inside]
        if values.size == 0:
            score = 0.0
        elif reduction == "max":
            score = float(values.max())
        else:
            count = max(1, int(np.ceil(topk_fraction * values.size)))
            score = float(np.sort(values)[-count:].mean())
        restricted.append(slice_map)
        scores.append(score)
        fractions.append(fraction)
    return restricted, np.asarray(scores, dtype=np.float32), np.asarray(fractions, dtype=np.float32)


def score_volume(volume: Volume, supports: Sequence[SupportRef], detector, axis: str = "acquisition",
                 window: WindowSpec = "auto", batch_size: int = 16, progress: Optional[ProgressCallback] = None,
                 should_cancel: Optional[CancelCheck] = None, threshold: ThresholdSpec = None,
                 body_only: bool = True) -> VolumeScoreResult:
    """Score every slice of ``volume`` along ``axis`` against the support slices.

    ``body_only`` (default): maps are zeroed outside the patient's body and slice scores
    use body pixels only (see :func:`d24fad.preprocess.body_mask`).
    """
    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size}: must be at least 1")
    count = slicing.slice_count(volume, axis)
    normalized, plan = _normalized_array(volume, window)
    support_images, described = _support_images(volume, normalized, supports, axis, window)
    support_batch, _ = batch_to_model_input(support_images, detector.image_size)
    detector.set_support(support_batch)

    maps, scores, weights = _score_images(detector, _SliceSequence(volume, axis, normalized), batch_size,
                                          progress, should_cancel)
    body_fraction = None
    if body_only:
        config = getattr(detector, "config", None)
        maps, scores, body_fraction = _restrict_to_body(volume, axis, maps,
                                                        getattr(config, "score_reduction", "max"),
                                                        getattr(config, "topk_fraction", 0.01))
    return VolumeScoreResult(
        volume=volume, axis=axis,
        anomaly_map=slicing.stack_slices(volume, axis, maps),
        slice_indices=np.arange(count, dtype=np.int64),
        slice_positions_mm=slicing.slice_positions(volume, axis),
        slice_scores=scores, weights=weights,
        threshold=_resolve_threshold(threshold, detector),
        supports=described, intensity=plan, slice_body_fraction=body_fraction,
    )


# --------------------------------------------------------------------------------------
# 2D image folders


@dataclasses.dataclass
class ImageFolderResult:
    support_paths: list[Path]
    query_paths: list[Path]
    query_images01: list[np.ndarray]  # normalised query images (for overlays)
    maps: list[np.ndarray]  # float32, each on its query image's grid
    scores: np.ndarray  # float32 [n_queries]
    weights: np.ndarray  # float32 [n_queries, n_scales, K]
    threshold: Optional[float]


def load_image01(path: Path, window: WindowSpec = "auto") -> np.ndarray:
    """An image file as float32 in [0, 1] through the shared intensity rules."""
    image: Image2D = load_image_2d(path)
    return apply_intensity_plan(image.array, plan_intensity(image.array, image.modality, window, image.metadata))


def choose_support_files(support_dir: str | Path, shots: Optional[int]) -> list[Path]:
    """The first ``shots`` images of the folder in name order (all when ``shots`` is None)."""
    files = list_images(support_dir)
    if shots is None:
        return files
    if int(shots) < 1:
        raise SupportSetError(f"--shots {shots}: must be at least 1")
    if int(shots) > len(files):
        raise SupportSetError(f"--shots {shots} is larger than the {len(files)} images in the support folder "
                              f"{support_dir}")
    return files[: int(shots)]


def score_image_folder(support_dir: str | Path, query_dir: str | Path, detector, shots: Optional[int] = None,
                       window: WindowSpec = "auto", batch_size: int = 16,
                       progress: Optional[ProgressCallback] = None, should_cancel: Optional[CancelCheck] = None,
                       threshold: ThresholdSpec = None) -> ImageFolderResult:
    """Score every image of ``query_dir`` against normal images of ``support_dir``."""
    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size}: must be at least 1")
    support_paths = choose_support_files(support_dir, shots)
    query_paths = list_images(query_dir)
    supports, _ = batch_to_model_input([load_image01(p, window) for p in support_paths], detector.image_size)
    detector.set_support(supports)
    queries01 = [load_image01(p, window) for p in query_paths]
    maps, scores, weights = _score_images(detector, queries01, batch_size, progress, should_cancel)
    return ImageFolderResult(support_paths=support_paths, query_paths=query_paths, query_images01=queries01,
                             maps=maps, scores=scores, weights=weights,
                             threshold=_resolve_threshold(threshold, detector))
