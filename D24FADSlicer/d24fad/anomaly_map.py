"""Anomaly maps and image scores from features.

map(q) = sum_s upsample(1 - channel-wise cos(F_s(q), R_s(q)), to S x S), then a Gaussian
blur (sigma = 4 px) applied to each image on its own (the reference implementation
filtered across neighbouring images of a batch; NOTES flaw 2). Image score = max of the
map, or the mean of its top-k pixels.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import torch
import torch.nn.functional as F


def channel_cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] x 2 -> [B, H, W] of 1 - cos over channels, in float32."""
    return 1.0 - F.cosine_similarity(a.float(), b.float(), dim=1)


@lru_cache(maxsize=16)
def _gaussian_kernel_1d(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).float()


def gaussian_blur_per_image(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [B, H, W] maps; each image is filtered independently.

    Borders use reflection (as scipy.ndimage's default); the kernel is truncated at 4 sigma.
    """
    if sigma <= 0:
        return maps
    kernel = _gaussian_kernel_1d(float(sigma)).to(maps.device)
    radius = kernel.numel() // 2
    x = maps.float().unsqueeze(1)  # [B, 1, H, W]: a channel per image, never mixed
    h, w = x.shape[-2:]
    if radius >= min(h, w):
        pad_mode = "replicate"  # reflection needs the pad smaller than the image
    else:
        pad_mode = "reflect"
    x = F.pad(x, (radius, radius, 0, 0), mode=pad_mode)
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    x = F.pad(x, (0, 0, radius, radius), mode=pad_mode)
    x = F.conv2d(x, kernel.view(1, 1, -1, 1))
    return x.squeeze(1)


def anomaly_maps(
    query_feats: Sequence[torch.Tensor],
    reference_feats: Sequence[torch.Tensor],
    image_size: int,
    sigma: float = 4.0,
) -> torch.Tensor:
    """Sum over scales of upsampled channel-cosine distances, smoothed per image: [B, S, S]."""
    total = None
    for q, r in zip(query_feats, reference_feats):
        d = channel_cosine_distance(q, r).unsqueeze(1)
        d = F.interpolate(d, size=(image_size, image_size), mode="bilinear", align_corners=False)
        total = d if total is None else total + d
    return gaussian_blur_per_image(total.squeeze(1), sigma)


def image_scores(maps: torch.Tensor, reduction: str = "max", topk_fraction: float = 0.01) -> torch.Tensor:
    """[B, H, W] -> [B]: the maximum, or the mean of the top ``topk_fraction`` of pixels."""
    flat = maps.flatten(1)
    if reduction == "max":
        return flat.max(dim=1).values
    k = max(1, int(math.ceil(topk_fraction * flat.shape[1])))
    return flat.topk(k, dim=1).values.mean(dim=1)
