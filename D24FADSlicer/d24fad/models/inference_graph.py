"""Inference-only graph rewrites that keep outputs (up to rounding) and save memory passes.

- Batch norms folded into the preceding convolutions (FX pattern rewrite for timm
  backbones; :meth:`MirrorDecoder.fold_batch_norms_` for the student).
- On CPU, a convolution followed by ReLU / ReLU6 runs as one oneDNN convolution with a
  fused post-op, instead of a convolution and a separate full pass over its output.

Networks that FX cannot trace are left as they are: these are optimisations, never
requirements.
"""

from __future__ import annotations

import logging

import torch
from torch import fx, nn

log = logging.getLogger(__name__)

_RELU_FUNCTIONS = {torch.relu, torch.relu_, nn.functional.relu}


def fold_batch_norms(module: nn.Module) -> nn.Module:
    """Fold eval-mode ``nn.BatchNorm2d`` into preceding ``nn.Conv2d`` (returns a GraphModule)."""
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(module)
    except Exception as exc:  # tracing failures come in many types
        log.debug("batch-norm folding skipped for %s: %s", type(module).__name__, exc)
        return module


def onednn_pointwise_available() -> bool:
    return hasattr(torch.ops.mkldnn, "_convolution_pointwise") and torch.backends.mkldnn.is_available()


class ConvWithActivation(nn.Module):
    """A 2D convolution with its activation fused into oneDNN's kernel (CPU inference only)."""

    def __init__(self, conv: nn.Conv2d, activation: str, scalars: list[float]):
        super().__init__()
        self.weight = conv.weight
        self.bias = conv.bias
        self.stride = list(conv.stride)
        self.padding = list(conv.padding)
        self.dilation = list(conv.dilation)
        self.groups = conv.groups
        self.activation = activation
        self.scalars = scalars

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise(
            x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups,
            self.activation, self.scalars, "",
        )


def _activation_of(node: fx.Node, modules: dict) -> tuple[str, list[float]] | None:
    if node.op == "call_module":
        m = modules.get(node.target)
        if type(m) is nn.ReLU:
            return "relu", []
        if type(m) is nn.ReLU6:
            return "hardtanh", [0.0, 6.0]
    if node.op == "call_function" and node.target in _RELU_FUNCTIONS:
        return "relu", []
    if node.op == "call_method" and node.target in ("relu", "relu_"):
        return "relu", []
    return None


def _fusable_conv(node: fx.Node, modules: dict) -> nn.Conv2d | None:
    if node.op != "call_module" or len(node.users) != 1:
        return None
    conv = modules.get(node.target)
    # Exact type only: subclasses such as timm's Conv2dSame pad in their own forward.
    if type(conv) is not nn.Conv2d or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return None
    return conv


def _set_submodule(root: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, name = dotted.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, name, new)


def fuse_conv_activations(module: nn.Module) -> nn.Module:
    """Rewrite conv -> ReLU/ReLU6 pairs into :class:`ConvWithActivation` (CPU only)."""
    if not onednn_pointwise_available():
        return module
    try:
        gm = module if isinstance(module, fx.GraphModule) else fx.symbolic_trace(module)
    except Exception as exc:
        log.debug("activation fusion skipped for %s: %s", type(module).__name__, exc)
        return module
    modules = dict(gm.named_modules())
    # Identity modules (folded batch norms) sit between convolutions and activations.
    for node in list(gm.graph.nodes):
        if node.op == "call_module" and type(modules.get(node.target)) is nn.Identity:
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
    fused = 0
    for node in list(gm.graph.nodes):
        activation = _activation_of(node, modules)
        if activation is None or not node.args or not isinstance(node.args[0], fx.Node):
            continue
        source = node.args[0]
        conv = _fusable_conv(source, modules)
        if conv is None:
            continue
        _set_submodule(gm, source.target, ConvWithActivation(conv, *activation))
        node.replace_all_uses_with(source)
        gm.graph.erase_node(node)
        fused += 1
    gm.graph.lint()
    gm.recompile()
    log.debug("fused %d convolution activations in %s", fused, type(module).__name__)
    return gm
