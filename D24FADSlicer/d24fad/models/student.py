"""Student decoder that mirrors the teacher, trained from scratch.

It takes the teacher's deepest feature map and reconstructs the teacher's features at
the map scales, from deep to shallow. Each decoder stage is a stack of bottleneck blocks;
the first block of a stage upsamples 2x with 2x2 stride-2 transposed convolutions (in the
block and in its shortcut), as in the "reverse ResNet" of RD4AD / D2-4FAD.

- ResNet-family teachers get the reverse ResNet: bottleneck width = channels / 4 (x2 for
  wide ResNets) and depths (3, 4, 6) from deep to shallow.
- Any other backbone gets a decoder built from its ``feature_info`` (channels, strides):
  bottleneck width = output channels, two blocks per stage, and no ReLU on stage outputs,
  because such backbones (EfficientNet, MobileNet) emit signed, linear-bottleneck features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..errors import ConfigError

RESNET_PREFIXES = ("resnet", "wide_resnet", "resnext", "seresnet", "seresnext", "resnetrs", "resnetv2")


class UpBottleneck(nn.Module):
    """Residual bottleneck block; upsamples by 2 when ``upsample`` is set."""

    def __init__(self, in_channels: int, out_channels: int, width: int, upsample: bool, out_relu: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        if upsample:
            self.conv2 = nn.ConvTranspose2d(width, width, kernel_size=2, stride=2, bias=False)
        else:
            self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.out_relu = out_relu
        if upsample:
            self.shortcut: nn.Module = nn.Sequential(
                nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        elif in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        y = y + self.shortcut(x)
        return self.relu(y) if self.out_relu else y


@dataclass(frozen=True)
class DecoderPlan:
    """Shape of a decoder: for each stage (deep -> shallow) its channels, width, depth, upsampling."""

    in_channels: int
    out_channels: tuple[int, ...]
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    upsample_steps: tuple[int, ...]
    relu_outputs: bool


def is_resnet_family(teacher_name: str) -> bool:
    return teacher_name.startswith(RESNET_PREFIXES)


def plan_decoder(
    teacher_name: str,
    channels: Sequence[int],
    reductions: Sequence[int],
    depths: Sequence[int] | None = None,
) -> DecoderPlan:
    """Plan a decoder for a teacher whose features (shallow -> deep) have these channels / strides.

    The last entry is the deepest stage (the decoder's input); the others are map scales.
    """
    n_scales = len(channels) - 1
    targets = list(reversed(channels[:-1]))  # deep -> shallow
    target_reductions = list(reversed(reductions[:-1]))
    steps = []
    previous = reductions[-1]
    for r in target_reductions:
        ratio = previous / r
        if ratio < 1 or not float(math.log2(ratio)).is_integer():
            raise ConfigError(f"teacher {teacher_name}: feature strides {list(reductions)} are not powers of two apart")
        steps.append(int(math.log2(ratio)))
        previous = r
    if is_resnet_family(teacher_name):
        multiplier = 2 if teacher_name.startswith("wide_") else 1
        widths = [max(8, c // 4 * multiplier) for c in targets]
        default_depths = [3, 4, 6][:n_scales] + [6] * max(0, n_scales - 3)
        relu_outputs = True
    else:
        widths = list(targets)
        default_depths = [2] * n_scales
        relu_outputs = False
    depths = list(depths) if depths is not None else default_depths
    if len(depths) != n_scales:
        raise ConfigError(f"decoder depths {depths}: need one per map scale ({n_scales})")
    # A stage must contain at least one block per 2x upsampling it performs.
    depths = [max(d, s) for d, s in zip(depths, steps)]
    return DecoderPlan(
        in_channels=int(channels[-1]),
        out_channels=tuple(int(c) for c in targets),
        widths=tuple(int(w) for w in widths),
        depths=tuple(int(d) for d in depths),
        upsample_steps=tuple(steps),
        relu_outputs=relu_outputs,
    )


def fold_batch_norms_(block: UpBottleneck) -> None:
    """Fold the eval-mode batch norms of ``block`` into its convolutions, in place (inference only)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for conv_name, bn_name in (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")):
        conv = getattr(block, conv_name)
        setattr(block, conv_name, fuse_conv_bn_eval(conv, getattr(block, bn_name), transpose=isinstance(conv, nn.ConvTranspose2d)))
        setattr(block, bn_name, nn.Identity())
    if isinstance(block.shortcut, nn.Sequential):
        conv, bn = block.shortcut
        block.shortcut = fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, nn.ConvTranspose2d))


class MirrorDecoder(nn.Module):
    """Decoder executing a :class:`DecoderPlan`; returns features shallow -> deep (teacher order)."""

    def __init__(self, plan: DecoderPlan):
        super().__init__()
        self.plan = plan
        stages = []
        in_ch = plan.in_channels
        for out_ch, width, depth, steps in zip(plan.out_channels, plan.widths, plan.depths, plan.upsample_steps):
            blocks = []
            for i in range(depth):
                blocks.append(
                    UpBottleneck(
                        in_ch if i == 0 else out_ch,
                        out_ch,
                        width,
                        upsample=i < steps,
                        # inner blocks always use ReLU; the stage output follows the teacher's sign convention
                        out_relu=plan.relu_outputs or i < depth - 1,
                    )
                )
            stages.append(nn.Sequential(*blocks))
            in_ch = out_ch
        self.stages = nn.ModuleList(stages)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def fold_batch_norms_(self) -> "MirrorDecoder":
        """Inference-only: fold every batch norm into its convolution (same outputs, fewer passes)."""
        self.eval()
        for module in self.modules():
            if isinstance(module, UpBottleneck):
                fold_batch_norms_(module)
        return self

    def forward(self, deepest: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        x = deepest
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs[::-1]
