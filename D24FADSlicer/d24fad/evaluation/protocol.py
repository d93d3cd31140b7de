"""The evaluation protocol: support draws, every test image scored, metrics per draw.

For each test task and each K: ``draws`` support sets of K images are drawn from the task's
normal *training* images (``numpy.random.default_rng([seed, crc32(task), K])``: the same
draws for every method, every run). All test images are scored against each support set;
nothing is dropped. Maps are smoothed per image (engine functions). Metrics per draw:

image_auroc, image_ap                          always
pixel_auroc, aupro, best_dice,                 when the task has masks
calibrated_dice / _sensitivity / _specificity  at the threshold taken from the supports alone
                                               (leave-one-out maps among the K supports; NaN for K = 1)
seconds_per_image                              features + maps of one query, measured in this run

Means and standard deviations over the draws are what reports show.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ..data.datasets import EvaluationImages
from ..errors import InputError
from . import metrics
from .baselines import Features, ScoringMethod, extract_features

DEFAULT_SHOTS: tuple[int, ...] = (1, 2, 4, 8)
QUERY_CHUNK = 32


@dataclass(frozen=True)
class ProtocolSettings:
    shots: tuple[int, ...] = DEFAULT_SHOTS
    draws: int = 5
    seed: int = 0
    calibration_quantile: float = 0.999
    example_shots: int = 4  # K whose first draw provides the ROC curves and heat-map examples

    def __post_init__(self) -> None:
        if not self.shots or min(self.shots) < 1:
            raise InputError(f"shots {self.shots}: need at least one K >= 1")
        if self.draws < 1:
            raise InputError(f"draws={self.draws}: must be at least 1")


def draw_supports(pool_size: int, shots: int, draws: int, seed: int, task: str) -> list[np.ndarray]:
    """``draws`` sets of ``shots`` distinct indices into a pool of normal images."""
    if shots > pool_size:
        raise InputError(f"task {task}: K={shots} support images requested but only {pool_size} normal training images")
    rng = np.random.default_rng([seed, zlib.crc32(task.encode("utf-8")), shots])
    return [np.sort(rng.choice(pool_size, size=shots, replace=False)) for _ in range(draws)]


def maps_in_chunks(method: ScoringMethod, query: Features, support: Features) -> torch.Tensor:
    parts = [method.maps(query.take(range(s, min(s + QUERY_CHUNK, len(query)))), support) for s in range(0, len(query), QUERY_CHUNK)]
    return torch.cat(parts)


def draw_metrics(
    labels: np.ndarray,
    scores: np.ndarray,
    masks: Optional[np.ndarray],
    maps: np.ndarray,
    threshold: float,
) -> dict[str, float]:
    """All metrics of one support draw."""
    result = {
        "image_auroc": metrics.image_auroc(labels, scores),
        "image_ap": metrics.average_precision(labels, scores),
    }
    if masks is not None:
        at_threshold = metrics.metrics_at_threshold(masks, maps, threshold)
        result.update(
            pixel_auroc=metrics.pixel_auroc(masks, maps),
            aupro=metrics.aupro(masks, maps),
            best_dice=metrics.best_dice(masks, maps),
            calibrated_dice=at_threshold.dice,
            calibrated_sensitivity=at_threshold.sensitivity,
            calibrated_specificity=at_threshold.specificity,
        )
    return result


@dataclass
class TaskEvaluation:
    """Per-draw metrics of every method and K on one task, plus material for figures."""

    task: str
    n_test: int
    per_draw: dict[str, dict[int, list[dict[str, float]]]] = field(default_factory=dict)
    example_shots: Optional[int] = None
    roc_inputs: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # method -> (labels, scores)
    example_maps: dict[str, np.ndarray] = field(default_factory=dict)  # method -> [n_examples, S, S]
    example_indices: Optional[np.ndarray] = None  # into the test set


def _feature_seconds(model, images: np.ndarray, with_student: bool) -> float:
    """Seconds per image for the features a method needs (teacher only, or both)."""
    started = time.perf_counter()
    with torch.inference_mode():
        batch = torch.as_tensor(images[:QUERY_CHUNK], dtype=torch.float32)
        teacher = model.eval().encode(batch)
        if with_student:
            model.decode(teacher[-1])
    return (time.perf_counter() - started) / max(1, batch.shape[0])


def evaluate_task(
    methods: Sequence[ScoringMethod],
    support_pool: np.ndarray,
    test_set: EvaluationImages,
    settings: ProtocolSettings,
    progress: Optional[Callable[[int, int], None]] = None,
    n_examples: int = 4,
) -> TaskEvaluation:
    """Score every test image of a task with every method, K and support draw."""
    if len(test_set) == 0:
        raise InputError(f"task {test_set.task}: no test images")
    models = {id(m.model): m.model for m in methods}
    pool_features = {key: extract_features(model, support_pool) for key, model in models.items()}
    test_features = {key: extract_features(model, test_set.images) for key, model in models.items()}
    feature_seconds = {
        (key, with_student): _feature_seconds(model, test_set.images, with_student)
        for key, model in models.items()
        for with_student in (True, False)
    }
    example_shots = settings.example_shots if settings.example_shots in settings.shots else max(settings.shots)
    bad = np.flatnonzero(test_set.labels == 1)
    evaluation = TaskEvaluation(test_set.task, len(test_set), example_shots=example_shots, example_indices=bad[:n_examples])
    total = len(settings.shots) * settings.draws * len(methods)
    done = 0
    for shots in settings.shots:
        for draw, indices in enumerate(draw_supports(len(support_pool), shots, settings.draws, settings.seed, test_set.task)):
            for method in methods:
                key = id(method.model)
                support = pool_features[key].take(indices)
                started = time.perf_counter()
                maps = maps_in_chunks(method, test_features[key], support)
                scores = method.scores(maps).numpy()
                seconds = (time.perf_counter() - started) / len(test_set) + feature_seconds[(key, method.uses_student)]
                threshold = float("nan")
                if test_set.masks is not None and shots >= 2:
                    threshold = metrics.support_threshold(method.leave_one_out_maps(support).numpy(), settings.calibration_quantile)
                maps_np = maps.numpy()
                result = draw_metrics(test_set.labels, scores, test_set.masks, maps_np, threshold)
                result["seconds_per_image"] = seconds
                evaluation.per_draw.setdefault(method.name, {}).setdefault(shots, []).append(result)
                if shots == example_shots and draw == 0:
                    evaluation.roc_inputs[method.name] = (test_set.labels.copy(), scores)
                    evaluation.example_maps[method.name] = maps_np[evaluation.example_indices]
                done += 1
                if progress is not None:
                    progress(done, total)
    return evaluation


def summarise(values: Sequence[dict[str, float]]) -> dict[str, dict[str, Optional[float]]]:
    """metric -> {mean, std, n} over draws (NaN draws are left out; all-NaN gives None)."""
    summary = {}
    for metric in values[0]:
        column = np.array([v[metric] for v in values], dtype=np.float64)
        finite = column[np.isfinite(column)]
        if finite.size == 0:
            summary[metric] = {"mean": None, "std": None, "n": 0}
        else:
            std = float(finite.std(ddof=1)) if finite.size > 1 else 0.0
            summary[metric] = {"mean": float(finite.mean()), "std": std, "n": int(finite.size)}
    return summary
