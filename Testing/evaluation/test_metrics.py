"""Metrics against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from d24fad.errors import InputError
from d24fad.evaluation import metrics


def test_image_auroc_and_ap_hand_computed():
    labels = [0, 0, 1, 1]
    scores = [0.1, 0.6, 0.4, 0.8]
    # Pairs (abnormal > normal): (0.4>0.1), (0.8>0.1), (0.8>0.6) = 3 of 4.
    assert metrics.image_auroc(labels, scores) == pytest.approx(0.75)
    # Ranking 0.8(+), 0.6(-), 0.4(+), 0.1(-): AP = (1/1 + 2/3) / 2.
    assert metrics.average_precision(labels, scores) == pytest.approx((1 + 2 / 3) / 2)
    assert np.isnan(metrics.image_auroc([1, 1], [0.2, 0.3]))


def test_aupro_hand_computed_two_regions_of_different_size():
    # One 1x10 image: region A = pixel 0 (1 px), region B = pixels 5-8 (4 px), 5 normal pixels.
    mask = np.zeros((1, 1, 10), dtype=bool)
    mask[0, 0, [0, 5, 6, 7, 8]] = True
    scores = np.array([[[0.9, 0.8, 0.6, 0.4, 0.3, 0.95, 0.7, 0.5, 0.1, 0.2]]])
    # Thresholds from the top: B 1/4 (PRO .125), A (PRO .625), normal (FPR .2), B 2/4 (PRO .75),
    # normal (FPR .4). Area up to FPR .3: .625*.2 + .75*.1 = .2, normalised by .3.
    assert metrics.aupro(mask, scores) == pytest.approx(0.2 / 0.3)


def test_aupro_extremes_and_region_weighting():
    mask = np.zeros((2, 8, 8), dtype=bool)
    mask[0, 1:3, 1:3] = True
    mask[1, 2:7, 2:7] = True
    assert metrics.aupro(mask, mask.astype(float)) == pytest.approx(1.0)
    assert metrics.aupro(mask, (~mask).astype(float)) == pytest.approx(0.0)
    # Finding only the small region (4 px of 29; the large one scores below every normal
    # pixel) still gives half the regions: PRO = 0.5 over the whole FPR range.
    only_small = np.where(mask, 0.0, 0.5)
    only_small[0, 1:3, 1:3] = 1.0
    assert metrics.aupro(mask, only_small) == pytest.approx(0.5, abs=1e-9)
    assert np.isnan(metrics.aupro(np.zeros((1, 4, 4), bool), np.zeros((1, 4, 4))))


def test_best_dice_and_metrics_at_threshold_hand_computed():
    mask = np.array([[[True, True, False, False]]])
    scores = np.array([[[0.9, 0.4, 0.5, 0.1]]])
    # Top 3 pixels {0.9, 0.5, 0.4}: TP 2, predicted 3, positives 2 -> Dice 4/5 (the best).
    assert metrics.best_dice(mask, scores) == pytest.approx(0.8)
    at = metrics.metrics_at_threshold(mask, scores, 0.45)  # predicts pixels 0 and 2
    assert at.dice == pytest.approx(0.5)
    assert at.sensitivity == pytest.approx(0.5)
    assert at.specificity == pytest.approx(0.5)
    assert np.isnan(metrics.metrics_at_threshold(mask, scores, float("nan")).dice)


def test_pixel_auroc_pools_all_pixels():
    mask = np.zeros((2, 2, 2), dtype=bool)
    mask[1, 0, 0] = True
    maps = np.zeros((2, 2, 2))
    maps[1, 0, 0] = 1.0
    maps[0, 1, 1] = 2.0  # a normal pixel of another image above the lesion
    # Lesion pixel beats 6 of the 7 normal pixels.
    assert metrics.pixel_auroc(mask, maps) == pytest.approx(6 / 7)


def test_support_threshold_from_known_leave_one_out_maps():
    loo = np.stack([np.full((2, 2), 0.2), np.array([[0.1, 0.3], [0.5, 0.7]]), np.full((2, 2), 0.4)])
    assert metrics.support_threshold(loo, quantile=1.0) == pytest.approx(0.7)
    # Medians per support: 0.2, 0.4, 0.4 -> the largest is 0.4.
    assert metrics.support_threshold(loo, quantile=0.5) == pytest.approx(0.4)
    assert np.isnan(metrics.support_threshold(np.zeros((0, 2, 2))))


def test_bad_metric_inputs_raise_typed_errors():
    with pytest.raises(InputError, match="labels"):
        metrics.image_auroc([0, 1], [0.5])
    with pytest.raises(InputError, match="NaN"):
        metrics.image_auroc([0, 1], [0.5, np.nan])
    with pytest.raises(InputError, match="masks"):
        metrics.pixel_auroc(np.zeros((1, 2, 2), bool), np.zeros((1, 3, 3)))
    with pytest.raises(InputError, match="fpr_limit"):
        metrics.aupro(np.ones((1, 2, 2), bool), np.zeros((1, 2, 2)), fpr_limit=0)
