"""Anomaly map arithmetic and per-image smoothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from d24fad.anomaly_map import anomaly_maps, gaussian_blur_per_image, image_scores


def test_gaussian_matches_scipy_mirror_mode():
    rng = np.random.default_rng(0)
    maps = rng.random((2, 64, 64)).astype(np.float32)
    ours = gaussian_blur_per_image(torch.from_numpy(maps), 4.0).numpy()
    for i in range(2):
        ref = ndimage.gaussian_filter(maps[i], 4.0, mode="mirror", truncate=4.0)
        np.testing.assert_allclose(ours[i], ref, atol=1e-5)


def test_smoothing_never_mixes_images_of_a_batch():
    maps = torch.zeros(3, 64, 64)
    maps[1, 32, 32] = 1.0  # an impulse in the middle image only
    out = gaussian_blur_per_image(maps, 4.0)
    assert out[0].abs().max() == 0 and out[2].abs().max() == 0
    assert out[1].sum().item() == pytest.approx(1.0, rel=1e-4)


def test_identical_features_give_zero_map_and_sums_over_scales():
    q = [torch.randn(2, 4, 8, 8), torch.randn(2, 8, 4, 4)]
    zero = anomaly_maps(q, [t.clone() for t in q], image_size=32, sigma=4.0)
    assert zero.shape == (2, 32, 32) and zero.abs().max() < 1e-5
    opposite = anomaly_maps(q, [-t for t in q], image_size=32, sigma=0.0)
    assert torch.allclose(opposite, torch.full_like(opposite, 4.0), atol=1e-4)  # (1 - (-1)) x 2 scales


def test_image_score_reductions():
    maps = torch.zeros(1, 10, 10)
    maps[0, 0, :5] = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0])
    assert image_scores(maps, "max").item() == 5.0
    assert image_scores(maps, "topk_mean", topk_fraction=0.02).item() == 4.5
