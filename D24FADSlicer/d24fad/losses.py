"""D2-4FAD training losses: student self-distillation (SSD) + lambda * teacher-student (TSD).

Both compare whole feature maps: the cosine is taken over the flattened C*H*W values of
each image at each scale, averaged over the batch, summed over scales (NOTES §1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from .models.d24fad import EpisodeOutputs


def flat_cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 - cos(flatten(a_i), flatten(b_i)) per batch item, in float32."""
    return 1.0 - F.cosine_similarity(a.float().flatten(1), b.float().flatten(1), dim=1)


def multiscale_distance(first: Sequence[torch.Tensor], second: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum over scales of the batch mean of :func:`flat_cosine_distance`."""
    return sum(flat_cosine_distance(a, b).mean() for a, b in zip(first, second))


@dataclass
class LossTerms:
    total: torch.Tensor
    ssd: torch.Tensor
    tsd: torch.Tensor


def d24fad_loss(outputs: EpisodeOutputs, loss_lambda: float = 0.1) -> LossTerms:
    """SSD pulls the query's student features towards its L2W reference built from the
    supports' student features; TSD keeps the student faithful to the teacher."""
    ssd = multiscale_distance(outputs.student_query, outputs.references)
    tsd = multiscale_distance(outputs.teacher_query, outputs.student_query)
    return LossTerms(total=ssd + loss_lambda * tsd, ssd=ssd, tsd=tsd)
