"""FewShotDetector: score any number of query images against a cached normal support set.

Support features (student features and L2W keys) are computed once per support set and
reused for every query batch, instead of re-encoding the repeated supports for each batch
as the reference implementation does (NOTES flaw 4).
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from typing import Callable, Literal, Optional

import numpy as np
import torch

from .anomaly_map import anomaly_maps, image_scores
from .config import ModelConfig
from .device import dtype_name, resolve_device, resolve_dtype
from .errors import CancelledError, InputError, SupportSetError
from .models.d24fad import D24FADModel
from .models.inference_graph import fold_batch_norms, fuse_conv_activations

log = logging.getLogger(__name__)

MapMode = Literal["ssd", "uniform", "tsd"]


@dataclass
class ScoreResult:
    maps: np.ndarray  # float32 [N, S, S]
    scores: np.ndarray  # float32 [N]
    weights: np.ndarray  # float32 [N, n_scales, K]


def as_model_batch(images, image_size: int, name: str) -> torch.Tensor:
    """Validate a [N, 3, S, S] batch in [0, 1] (numpy or torch) and return a float32 tensor."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise InputError(f"{name}: expected an array of shape [N, 3, {image_size}, {image_size}]")
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4 or images.shape[1] != 3 or tuple(images.shape[-2:]) != (image_size, image_size):
        raise InputError(
            f"{name}: shape {tuple(images.shape)} does not match the model input [N, 3, {image_size}, {image_size}]; "
            "prepare images with d24fad.preprocess.to_model_input"
        )
    images = images.float()
    if not torch.isfinite(images).all():
        raise InputError(f"{name}: contains NaN or infinite values")
    return images


def _inference_copy(model: D24FADModel, device: torch.device, dtype: torch.dtype, channels_last: bool) -> D24FADModel:
    """The network as it runs at inference: on ``device``, weights in ``dtype``.

    Reduced precision uses weights cast once (not autocast, which re-casts every weight
    on every call), batch norms folded into convolutions and, on CPU, ReLUs fused into
    them (d24fad.models.inference_graph). The caller's model (the one saved in
    checkpoints) is left as it is.
    """
    runner = copy.deepcopy(model) if (dtype != torch.float32 or device.type != "cpu") else model
    if dtype != torch.float32:
        runner.teacher.backbone = fold_batch_norms(runner.teacher.backbone)
        runner.student.fold_batch_norms_()
    runner = runner.to(device=device, dtype=dtype)
    if channels_last:
        runner = runner.to(memory_format=torch.channels_last)
    if dtype != torch.float32 and device.type == "cpu":
        runner.teacher.backbone = fuse_conv_activations(runner.teacher.backbone)
        runner.student = fuse_conv_activations(runner.student)
    return runner.eval()


class FewShotDetector:
    """Inference API. Typical use::

        det = FewShotDetector.from_checkpoint(None)   # shipped default model
        det.set_support(supports)                     # [K, 3, S, S] in [0, 1]
        result = det.score(queries)                   # maps, scores, L2W weights
    """

    def __init__(
        self,
        model: D24FADModel,
        device: str = "auto",
        dtype: str = "auto",
        mode: MapMode = "ssd",
        checkpoint_sha256: Optional[str] = None,
        checkpoint_path: Optional[str] = None,
    ):
        if mode not in ("ssd", "uniform", "tsd"):
            raise InputError(f"mode={mode!r}: expected ssd, uniform or tsd")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.mode = mode
        self.checkpoint_sha256 = checkpoint_sha256
        self.checkpoint_path = checkpoint_path
        self.model = model.eval()
        # channels-last lets oneDNN / cuDNN pick their fastest convolution kernels.
        self._channels_last = self.device.type in ("cpu", "cuda")
        self._runner = _inference_copy(self.model, self.device, self.dtype, self._channels_last)
        # L2W always runs in float32: its logits sum hundreds of thousands of products.
        self._l2w = copy.deepcopy(self.model.l2w).float().to(self.device).eval()
        self._support_feats: Optional[list[torch.Tensor]] = None
        self._support_keys: Optional[list[torch.Tensor]] = None
        self._support_images: Optional[torch.Tensor] = None

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike | None = None,
        device: str = "auto",
        dtype: str = "auto",
        mode: MapMode = "ssd",
        allow_download: bool = False,
        expected_sha256: Optional[str] = None,
    ) -> "FewShotDetector":
        from .checkpoint import load_checkpoint

        model, info = load_checkpoint(path, allow_download=allow_download, expected_sha256=expected_sha256)
        return cls(model, device=device, dtype=dtype, mode=mode, checkpoint_sha256=info.sha256, checkpoint_path=str(info.path))

    # ----------------------------------------------------------------- properties
    @property
    def config(self) -> ModelConfig:
        return self.model.config

    @property
    def image_size(self) -> int:
        return self.model.config.image_size

    @property
    def support_count(self) -> int:
        return 0 if self._support_images is None else int(self._support_images.shape[0])

    def describe(self) -> dict:
        return {
            "teacher": self.config.teacher,
            "teacher_weights": self.config.teacher_weights,
            "image_size": self.image_size,
            "device": str(self.device),
            "dtype": dtype_name(self.dtype),
            "mode": self.mode,
            "checkpoint_sha256": self.checkpoint_sha256,
            "shots": self.support_count,
        }

    # ----------------------------------------------------------------- features
    def _prepare(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device, non_blocking=True)
        if self._channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch

    def _features(self, batch: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(teacher map-scale features, student features) in float32."""
        teacher = self._runner.encode(self._prepare(batch).to(self.dtype))
        student = self._runner.decode(teacher[-1])
        return [t.float() for t in teacher[:-1]], [s.float() for s in student]

    @torch.inference_mode()
    def set_support(self, images, batch_size: int = 16) -> None:
        """Encode the K normal support images once; they serve every later query."""
        images = as_model_batch(images, self.image_size, "support images")
        if images.shape[0] < 1:
            raise SupportSetError("the support set is empty: tag at least one normal image or slice")
        student_parts = []
        for start in range(0, images.shape[0], batch_size):
            _, student = self._features(images[start : start + batch_size])
            student_parts.append(student)
        self._support_feats = [torch.cat([p[s] for p in student_parts]) for s in range(self.model.n_scales)]
        self._support_keys = self._l2w.keys(self._support_feats) if self.mode == "ssd" else None
        self._support_images = images

    def _require_support(self) -> None:
        if self._support_feats is None:
            raise SupportSetError("no support set: call set_support() with normal images first")

    def _references(self, teacher_q, student_q, support_feats, support_keys):
        if self.mode == "tsd":
            refs = teacher_q
            weights = torch.zeros(student_q[0].shape[0], self.model.n_scales, support_feats[0].shape[0])
            return refs, weights
        uniform = self.mode == "uniform" or not self.config.use_l2w
        return self._l2w(student_q, support_feats, support_keys, uniform=uniform)

    @torch.inference_mode()
    def score(
        self,
        images,
        batch_size: int = 16,
        progress: Optional[Callable[[int, int], None]] = None,
        should_cancel: Optional[Callable[[], bool]] = None,
    ) -> ScoreResult:
        """Anomaly maps [N,S,S], image scores [N] and L2W weights [N,n_scales,K] for the queries."""
        self._require_support()
        images = as_model_batch(images, self.image_size, "query images")
        if batch_size < 1:
            raise InputError(f"batch_size={batch_size}: must be at least 1")
        n = images.shape[0]
        maps, weights = [], []
        for start in range(0, n, batch_size):
            if should_cancel is not None and should_cancel():
                raise CancelledError(f"scoring cancelled after {start} of {n} images")
            teacher_q, student_q = self._features(images[start : start + batch_size])
            refs, w = self._references(teacher_q, student_q, self._support_feats, self._support_keys)
            maps.append(anomaly_maps(student_q, refs, self.image_size, self.config.smoothing_sigma).cpu())
            weights.append(w.float().cpu())
            if progress is not None:
                progress(min(start + batch_size, n), n)
        all_maps = torch.cat(maps) if maps else torch.zeros(0, self.image_size, self.image_size)
        scores = image_scores(all_maps, self.config.score_reduction, self.config.topk_fraction) if n else torch.zeros(0)
        all_weights = torch.cat(weights) if weights else torch.zeros(0, self.model.n_scales, self.support_count)
        return ScoreResult(maps=all_maps.numpy(), scores=scores.numpy(), weights=all_weights.numpy())

    @torch.inference_mode()
    def leave_one_out_maps(self) -> np.ndarray:
        """Map of each support scored against the other K-1 supports: [K, S, S].

        They show how anomalous *normal* tissue looks to the model for this support set,
        which is what an automatic threshold must clear.
        """
        self._require_support()
        k = self.support_count
        if k < 2:
            raise SupportSetError("leave-one-out calibration needs at least 2 support images")
        maps = []
        for i in range(k):
            others = [j for j in range(k) if j != i]
            feats = [f[others] for f in self._support_feats]
            keys = [f[others] for f in self._support_keys] if self._support_keys is not None else None
            query = [f[i : i + 1] for f in self._support_feats]
            if self.mode == "tsd":
                teacher_q, student_q = self._features(self._support_images[i : i + 1])
                refs, _ = self._references(teacher_q, student_q, feats, keys)
                query = student_q
            else:
                refs, _ = self._references(None, query, feats, keys)
            maps.append(anomaly_maps(query, refs, self.image_size, self.config.smoothing_sigma).cpu())
        return torch.cat(maps).numpy()

    def calibrate_threshold(self, quantile: float = 0.999) -> float:
        """Pixel threshold from the supports alone: the highest ``quantile`` of the
        leave-one-out maps of the normal supports (needs K >= 2)."""
        if not 0 < quantile <= 1:
            raise InputError(f"quantile={quantile}: must be in (0, 1]")
        maps = self.leave_one_out_maps()
        return float(max(np.quantile(m, quantile) for m in maps))
