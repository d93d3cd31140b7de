"""The scoring methods compared by the evaluation, all on the same teacher and episodes.

Features of every image are computed once per model (teacher map scales + student
outputs); each method then turns the features of a query batch and of a support set into
anomaly maps with the engine's own functions (d24fad.anomaly_map, the model's L2W), so the
maps match what FewShotDetector produces.

=============  =============================================================================
d24fad         student(query) vs L2W-weighted student(supports)            (the method)
uniform        as d24fad with weights 1/K instead of L2W                   (no L2W)
tsd            student(query) vs teacher(query), supports unused           (RD4AD-style)
ssd_only       d24fad maps of a model trained with SSD alone (lambda = 0)  (no TSD in training)
patchcore      nearest-neighbour distance of teacher patch features to the support patches
teacher_mean   teacher(query) vs the mean teacher(supports), position by position: what
               d24fad/uniform would give with a student that copied the teacher perfectly
               (a diagnostic, only when asked for)
=============  =============================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..anomaly_map import anomaly_maps, gaussian_blur_per_image, image_scores
from ..models.d24fad import D24FADModel


@dataclass
class Features:
    """Per-image features, float32 on the CPU: lists over map scales of [N, C, H, W]."""

    teacher: list[torch.Tensor]
    student: list[torch.Tensor]

    def __len__(self) -> int:
        return int(self.teacher[0].shape[0])

    def take(self, indices) -> "Features":
        index = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return Features([t[index] for t in self.teacher], [s[index] for s in self.student])


@torch.inference_mode()
def extract_features(model: D24FADModel, images, batch_size: int = 32) -> Features:
    """Teacher and student features of ``images`` ([N, 3, S, S] in [0, 1]), model in eval mode."""
    was_training = model.training
    model.eval()
    images = torch.as_tensor(images, dtype=torch.float32)
    teacher_parts, student_parts = [], []
    for start in range(0, images.shape[0], batch_size):
        batch = images[start : start + batch_size].contiguous(memory_format=torch.channels_last)
        teacher = model.encode(batch)
        student = model.decode(teacher[-1])
        teacher_parts.append([t.float().contiguous() for t in teacher[:-1]])
        student_parts.append([s.float().contiguous() for s in student])
    model.train(was_training)
    n_scales = model.n_scales
    return Features(
        [torch.cat([p[s] for p in teacher_parts]) for s in range(n_scales)],
        [torch.cat([p[s] for p in student_parts]) for s in range(n_scales)],
    )


class ScoringMethod:
    """Maps [N, S, S] for query features given support features (both :class:`Features`)."""

    name: str = ""
    uses_student: bool = True

    def __init__(self, model: D24FADModel):
        self.model = model
        self.config = model.config

    def maps(self, query: Features, support: Features) -> torch.Tensor:
        raise NotImplementedError

    def scores(self, maps: torch.Tensor) -> torch.Tensor:
        return image_scores(maps, self.config.score_reduction, self.config.topk_fraction)

    def leave_one_out_maps(self, support: Features) -> torch.Tensor:
        """Each support scored against the other supports: [K, S, S] (empty for K = 1)."""
        k = len(support)
        if k < 2:
            return torch.zeros(0, self.config.image_size, self.config.image_size)
        return torch.cat([self.maps(support.take([i]), support.take([j for j in range(k) if j != i])) for i in range(k)])


class L2WMaps(ScoringMethod):
    """Student features of the query against the (L2W- or uniformly) weighted supports."""

    def __init__(self, model: D24FADModel, name: str = "d24fad", uniform: bool = False):
        super().__init__(model)
        self.name = name
        self.uniform = uniform

    @torch.inference_mode()
    def maps(self, query: Features, support: Features) -> torch.Tensor:
        keys = None if self.uniform else self.model.l2w.keys(support.student)
        references, _ = self.model.l2w_references(query.student, support.student, keys, uniform=self.uniform)
        return anomaly_maps(query.student, references, self.config.image_size, self.config.smoothing_sigma)


class TeacherStudentMaps(ScoringMethod):
    name = "tsd"

    @torch.inference_mode()
    def maps(self, query: Features, support: Features) -> torch.Tensor:
        return anomaly_maps(query.student, query.teacher, self.config.image_size, self.config.smoothing_sigma)


class PatchCoreMaps(ScoringMethod):
    """Few-shot PatchCore: a memory bank of locally averaged teacher patch features of the K
    supports (the two deepest map scales, the coarser one upsampled to the finer grid); a
    query patch's anomaly is its distance to the nearest bank patch. No coreset: K images
    give a small bank."""

    name = "patchcore"
    uses_student = False

    @staticmethod
    def _embeddings(teacher: Sequence[torch.Tensor]) -> torch.Tensor:
        finer, coarser = teacher[-2], teacher[-1]
        pooled = [F.avg_pool2d(f, kernel_size=3, stride=1, padding=1, count_include_pad=False) for f in (finer, coarser)]
        upsampled = F.interpolate(pooled[1], size=finer.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([pooled[0], upsampled], dim=1)  # [N, D, H, W]

    @torch.inference_mode()
    def maps(self, query: Features, support: Features) -> torch.Tensor:
        bank = self._embeddings(support.teacher)
        bank = bank.permute(0, 2, 3, 1).reshape(-1, bank.shape[1])
        embedded = self._embeddings(query.teacher)
        n, d, h, w = embedded.shape
        patches = embedded.permute(0, 2, 3, 1).reshape(-1, d)
        nearest = torch.cat([torch.cdist(chunk, bank, compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values for chunk in patches.split(4096)])
        distance = nearest.view(n, 1, h, w)
        size = self.config.image_size
        upsampled = F.interpolate(distance, size=(size, size), mode="bilinear", align_corners=False).squeeze(1)
        return gaussian_blur_per_image(upsampled, self.config.smoothing_sigma)


class TeacherMeanMaps(ScoringMethod):
    """Diagnostic: the position-wise comparison of D2-4FAD applied to teacher features."""

    name = "teacher_mean"
    uses_student = False

    @torch.inference_mode()
    def maps(self, query: Features, support: Features) -> torch.Tensor:
        references, _ = self.model.l2w(query.teacher, support.teacher, uniform=True)
        return anomaly_maps(query.teacher, references, self.config.image_size, self.config.smoothing_sigma)


def standard_methods(model: D24FADModel, ssd_only_model: D24FADModel | None = None) -> list[ScoringMethod]:
    """D2-4FAD and the baselines that share its trained model (plus ``ssd_only`` if given)."""
    methods: list[ScoringMethod] = [
        L2WMaps(model, "d24fad"),
        PatchCoreMaps(model),
        TeacherStudentMaps(model),
        L2WMaps(model, "uniform", uniform=True),
    ]
    if ssd_only_model is not None:
        methods.append(L2WMaps(ssd_only_model, "ssd_only"))
    return methods


def diagnostic_methods(model: D24FADModel) -> list[ScoringMethod]:
    """Methods that explain results rather than compete; evaluated only on request."""
    return [TeacherMeanMaps(model)]
