"""Validation data carved from the TRAINING tasks, for model selection.

The reference implementation picked its "best" checkpoint by test AUROC (NOTES flaw 1).
Here each training task sets aside a fraction of its normal training images; validation
scores those images and copies of them with synthetic lesions (d24fad.data.lesions)
against a fixed support draw from the task's remaining images. The held-out task is never
involved.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from ..data.datasets import EvaluationImages
from ..data.lesions import synthesize_lesion
from ..errors import InputError
from ..evaluation.baselines import L2WMaps, extract_features
from ..evaluation.metrics import image_auroc, pixel_auroc
from ..evaluation.protocol import maps_in_chunks
from ..models.d24fad import D24FADModel


def task_rng(seed: int, task: str, purpose: int) -> np.random.Generator:
    """A generator for one task and purpose, independent of the task list's order."""
    return np.random.default_rng([seed, zlib.crc32(task.encode("utf-8")), purpose])


def split_pool(n_images: int, val_fraction: float, seed: int, task: str) -> tuple[np.ndarray, np.ndarray]:
    """(training indices, validation indices) of a task's normal training images."""
    if not 0 <= val_fraction < 1:
        raise InputError(f"--val-fraction {val_fraction}: must be in [0, 1)")
    n_val = int(round(val_fraction * n_images))
    if val_fraction > 0:
        n_val = max(n_val, 2)  # AUROC needs at least a couple of normal images
    if n_images - n_val < 3:
        raise InputError(f"task {task}: {n_images} training images are too few to set {n_val} aside for validation")
    order = task_rng(seed, task, purpose=0).permutation(n_images)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def with_synthetic_lesions(images: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Copies of [N, 3, S, S] images with one lesion each, and the masks [N, S, S]."""
    damaged, masks = [], []
    for image in images:
        hwc = np.moveaxis(image, 0, -1)
        grey = bool(np.allclose(hwc[..., 0], hwc[..., 1]) and np.allclose(hwc[..., 0], hwc[..., 2]))
        if grey:
            # A grey image stays grey: the lesion goes into the one channel, then is repeated.
            out, mask = synthesize_lesion(np.ascontiguousarray(hwc[..., 0]), rng)
            out = np.repeat(out[None], 3, axis=0)
        else:
            out, mask = synthesize_lesion(np.ascontiguousarray(hwc), rng)
            out = np.moveaxis(out, -1, 0)
        damaged.append(out)
        masks.append(mask)
    return np.stack(damaged).astype(np.float32), np.stack(masks)


@dataclass
class ValidationTask:
    supports: np.ndarray  # [K, 3, S, S]
    test: EvaluationImages


def build_validation_task(task: str, pool: np.ndarray, val_images: np.ndarray, shots: int, seed: int) -> ValidationTask:
    """Normal validation images + lesioned copies, and a fixed support draw from ``pool``."""
    shots = min(shots, len(pool))
    supports = pool[np.sort(task_rng(seed, task, purpose=1).choice(len(pool), size=shots, replace=False))]
    damaged, masks = with_synthetic_lesions(val_images, task_rng(seed, task, purpose=2))
    n = len(val_images)
    test = EvaluationImages(
        task=task,
        images=np.concatenate([val_images, damaged]),
        labels=np.r_[np.zeros(n, np.int64), np.ones(n, np.int64)],
        names=[f"val{i:03d}" for i in range(n)] + [f"val{i:03d}+lesion" for i in range(n)],
        masks=np.concatenate([np.zeros_like(masks), masks]),
    )
    return ValidationTask(supports, test)


def validate(model: D24FADModel, tasks: list[ValidationTask]) -> dict[str, float]:
    """Mean image and pixel AUROC of the full method over the validation tasks."""
    method = L2WMaps(model)
    image_scores, pixel_scores = [], []
    for task in tasks:
        support = extract_features(model, task.supports)
        query = extract_features(model, task.test.images)
        maps = maps_in_chunks(method, query, support)
        image_scores.append(image_auroc(task.test.labels, method.scores(maps).numpy()))
        pixel_scores.append(pixel_auroc(task.test.masks, maps.numpy()))
    return {"val_image_auroc": float(np.mean(image_scores)), "val_pixel_auroc": float(np.mean(pixel_scores))}
