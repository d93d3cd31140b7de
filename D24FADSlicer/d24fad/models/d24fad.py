"""D24FADModel: frozen teacher + student decoder + learn-to-weight, as one module."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import ModelConfig
from .l2w import LearnToWeight
from .student import MirrorDecoder, plan_decoder
from .teacher import Teacher


@dataclass
class EpisodeOutputs:
    """Features of one training batch of episodes (lists are per map scale, shallow -> deep)."""

    teacher_query: list[torch.Tensor]  # T_s(q)       [B, C, H, W]
    student_query: list[torch.Tensor]  # S_s(q)       [B, C, H, W]
    references: list[torch.Tensor]  # L2W_s(...)   [B, C, H, W]
    weights: torch.Tensor  # [B, n_scales, K]


class D24FADModel(nn.Module):
    """The whole network. Only ``student`` and ``l2w`` have trainable parameters."""

    def __init__(self, config: ModelConfig, allow_download: bool = False, load_teacher_weights: bool = True):
        super().__init__()
        self.config = config
        self.teacher = Teacher(config, allow_download=allow_download, load_weights=load_teacher_weights)
        self.student = MirrorDecoder(
            plan_decoder(config.teacher, self.teacher.channels, self.teacher.reductions, config.decoder_depths)
        )
        self.l2w = LearnToWeight(self.teacher.channels[:-1])

    @property
    def n_scales(self) -> int:
        return self.config.n_scales

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Student and L2W tensors (what training changes and checkpoints store)."""
        state = {f"student.{k}": v for k, v in self.student.state_dict().items()}
        state.update({f"l2w.{k}": v for k, v in self.l2w.state_dict().items()})
        return state

    def load_trainable_state_(self, tensors: dict[str, torch.Tensor], source: str) -> None:
        """Load ``student.*`` and ``l2w.*`` tensors (the inverse of :meth:`trainable_state_dict`)."""
        from ..errors import CheckpointError

        for prefix, module in (("student.", self.student), ("l2w.", self.l2w)):
            part = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            try:
                module.load_state_dict(part, strict=True)
            except RuntimeError as exc:
                raise CheckpointError(f"{source}: {prefix[:-1]} tensors do not fit the configured model ({exc})") from exc

    def train(self, mode: bool = True) -> "D24FADModel":
        super().train(mode)
        self.teacher.train(False)  # frozen, whatever the caller asks
        return self

    def encode(self, images01: torch.Tensor) -> list[torch.Tensor]:
        """Teacher features: map scales then the deepest stage. Never carries gradient."""
        with torch.no_grad():
            return self.teacher(images01)

    def decode(self, deepest: torch.Tensor) -> list[torch.Tensor]:
        """Student features at the map scales, shallow -> deep."""
        return self.student(deepest)

    def l2w_references(self, query_feats, support_feats, support_keys=None, uniform: bool = False):
        return self.l2w(query_feats, support_feats, support_keys=support_keys, uniform=uniform or not self.config.use_l2w)

    def forward(self, query: torch.Tensor, supports: torch.Tensor) -> EpisodeOutputs:
        """One batch of episodes: ``query`` [B,3,S,S], ``supports`` [B,K,3,S,S], all in [0, 1]."""
        b, k = supports.shape[:2]
        teacher_query = self.encode(query)
        student_query = self.decode(teacher_query[-1])
        teacher_support = self.encode(supports.flatten(0, 1))
        student_support = [f.unflatten(0, (b, k)) for f in self.decode(teacher_support[-1])]
        references, weights = self.l2w_references(student_query, student_support)
        return EpisodeOutputs(teacher_query[:-1], student_query, references, weights)
