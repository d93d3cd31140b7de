"""Detection and localisation metrics.

Image level: AUROC and average precision (scikit-learn). Pixel level, pooled over all
pixels of all test images: AUROC (scikit-learn), AUPRO up to a false-positive rate of 0.3
(normalised to [0, 1]), Dice at the best threshold, and Dice / sensitivity / specificity at
a given (calibrated) threshold.

AUPRO (Bergmann et al., MVTec AD): each connected abnormal region counts equally whatever
its size. For a threshold t, PRO(t) is the mean over regions of the fraction of the region's
pixels above t, and FPR(t) the fraction of normal pixels above t; the PRO curve is
integrated over FPR in [0, limit] and divided by ``limit``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import InputError

AUPRO_FPR_LIMIT = 0.3
# 8-connectivity: pixels touching by a corner belong to the same region.
_REGION_STRUCTURE = np.ones((3, 3), dtype=bool)


def _check_image_inputs(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).astype(np.int64).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise InputError(f"labels ({labels.size}) and scores ({scores.size}) differ in length")
    if not np.all(np.isfinite(scores)):
        raise InputError("scores contain NaN or infinite values")
    return labels, scores


def _has_both_classes(labels: np.ndarray) -> bool:
    return bool(labels.min() == 0 and labels.max() == 1) if labels.size else False


def image_auroc(labels, scores) -> float:
    """Area under the ROC curve of image scores (NaN if only one class is present)."""
    from sklearn.metrics import roc_auc_score

    labels, scores = _check_image_inputs(labels, scores)
    return float(roc_auc_score(labels, scores)) if _has_both_classes(labels) else float("nan")


def average_precision(labels, scores) -> float:
    from sklearn.metrics import average_precision_score

    labels, scores = _check_image_inputs(labels, scores)
    return float(average_precision_score(labels, scores)) if _has_both_classes(labels) else float("nan")


def _check_pixel_inputs(masks, maps) -> tuple[np.ndarray, np.ndarray]:
    masks = np.asarray(masks).astype(bool)
    maps = np.asarray(maps, dtype=np.float64)
    if masks.shape != maps.shape or masks.ndim != 3:
        raise InputError(f"masks {masks.shape} and maps {maps.shape} must both be [N, H, W]")
    if not np.all(np.isfinite(maps)):
        raise InputError("anomaly maps contain NaN or infinite values")
    return masks, maps


def pixel_auroc(masks, maps) -> float:
    from sklearn.metrics import roc_auc_score

    masks, maps = _check_pixel_inputs(masks, maps)
    truth = masks.ravel()
    if truth.all() or not truth.any():
        return float("nan")
    return float(roc_auc_score(truth, maps.ravel()))


def _descending_unique_cumsums(scores: np.ndarray, *weights: np.ndarray) -> list[np.ndarray]:
    """Cumulative sums of ``weights`` over pixels sorted by decreasing score, taken at the
    last pixel of each run of equal scores (so a threshold never splits tied pixels).
    Each returned array starts with 0 (threshold above every score)."""
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    last_of_run = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]
    sums = []
    for w in weights:
        cumulative = np.cumsum(w[order])[last_of_run]
        sums.append(np.r_[0.0, cumulative])
    return sums


def aupro(masks, maps, fpr_limit: float = AUPRO_FPR_LIMIT) -> float:
    """Normalised area under the per-region-overlap curve for FPR in [0, ``fpr_limit``]."""
    masks, maps = _check_pixel_inputs(masks, maps)
    if not 0 < fpr_limit <= 1:
        raise InputError(f"fpr_limit={fpr_limit}: must be in (0, 1]")
    region_weight = np.zeros(masks.shape, dtype=np.float64)
    region_count = 0
    for i, mask in enumerate(masks):
        labels, count = ndimage.label(mask, structure=_REGION_STRUCTURE)
        sizes = np.bincount(labels.ravel())
        for region in range(1, count + 1):
            region_weight[i][labels == region] = 1.0 / sizes[region]
        region_count += count
    normal = ~masks
    if region_count == 0 or not normal.any():
        return float("nan")
    # Each region contributes 1/region_count to PRO when fully above the threshold.
    pro, fpr = _descending_unique_cumsums(
        maps.ravel(), region_weight.ravel() / region_count, normal.ravel().astype(np.float64) / normal.sum()
    )
    # PRO at exactly fpr_limit, interpolated linearly between the neighbouring thresholds.
    end = int(np.searchsorted(fpr, fpr_limit, side="right"))
    fpr_part, pro_part = fpr[:end], pro[:end]
    if end < fpr.size and fpr_part[-1] < fpr_limit:
        t = (fpr_limit - fpr[end - 1]) / (fpr[end] - fpr[end - 1])
        fpr_part = np.r_[fpr_part, fpr_limit]
        pro_part = np.r_[pro_part, pro[end - 1] + t * (pro[end] - pro[end - 1])]
    return float(np.trapezoid(pro_part, fpr_part) / fpr_limit)


def best_dice(masks, maps) -> float:
    """Highest pooled Dice over all thresholds (an upper bound: the threshold sees the truth)."""
    masks, maps = _check_pixel_inputs(masks, maps)
    positives = float(masks.sum())
    if positives == 0:
        return float("nan")
    true_pos, predicted = _descending_unique_cumsums(
        maps.ravel(), masks.ravel().astype(np.float64), np.ones(masks.size, dtype=np.float64)
    )
    dice = 2.0 * true_pos / (predicted + positives)
    return float(dice.max())


@dataclass(frozen=True)
class ThresholdMetrics:
    dice: float
    sensitivity: float
    specificity: float


def metrics_at_threshold(masks, maps, threshold: float) -> ThresholdMetrics:
    """Pooled Dice, sensitivity and specificity of ``maps > threshold``."""
    masks, maps = _check_pixel_inputs(masks, maps)
    if not np.isfinite(threshold):
        return ThresholdMetrics(float("nan"), float("nan"), float("nan"))
    predicted = maps > threshold
    true_pos = float(np.sum(predicted & masks))
    positives, negatives = float(masks.sum()), float((~masks).sum())
    false_pos = float(np.sum(predicted & ~masks))
    dice = 2 * true_pos / (predicted.sum() + positives) if positives else float("nan")
    sensitivity = true_pos / positives if positives else float("nan")
    specificity = (negatives - false_pos) / negatives if negatives else float("nan")
    return ThresholdMetrics(float(dice), float(sensitivity), float(specificity))


def support_threshold(leave_one_out_maps, quantile: float = 0.999) -> float:
    """Threshold from normal supports alone: the largest per-support ``quantile`` of the
    leave-one-out maps (each support scored against the others). NaN when there are none
    (K = 1 has no leave-one-out)."""
    maps = np.asarray(leave_one_out_maps, dtype=np.float64)
    if not 0 < quantile <= 1:
        raise InputError(f"quantile={quantile}: must be in (0, 1]")
    if maps.size == 0:
        return float("nan")
    return float(max(np.quantile(m, quantile) for m in maps))
