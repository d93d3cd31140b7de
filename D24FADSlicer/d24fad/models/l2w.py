"""Learn-to-weight (L2W): per query and scale, how much each normal support counts.

For scale s, query q and supports k = 1..K (NOTES §1):
    key_k    = 1x1 conv_s(S_s(support_k))
    logit_k  = <flatten(key_k), flatten(S_s(q))> / sqrt(C_s)      (over all C*H*W values)
    w        = softmax_k(logit)
    ref_s(q) = sum_k w_k * S_s(support_k)                          (raw student features, not keys)

Supports are either shared by the whole batch ([K, C, H, W], inference with a cached
support set) or given per query ([B, K, C, H, W], episodic training). Logits are computed
in float32: they are sums over hundreds of thousands of products.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


class LearnToWeight(nn.Module):
    def __init__(self, channels: Sequence[int]):
        super().__init__()
        self.channels = list(channels)
        self.key_projections = nn.ModuleList(nn.Conv2d(c, c, kernel_size=1) for c in channels)
        for conv in self.key_projections:
            # Identity start: before training, L2W attends to the supports most similar to the query.
            nn.init.dirac_(conv.weight)
            nn.init.zeros_(conv.bias)

    def keys(self, support_feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Project support features to keys; works on [K,C,H,W] and [B,K,C,H,W]."""
        keys = []
        for proj, feat in zip(self.key_projections, support_feats):
            if feat.dim() == 5:
                b, k = feat.shape[:2]
                keys.append(proj(feat.flatten(0, 1)).unflatten(0, (b, k)))
            else:
                keys.append(proj(feat))
        return keys

    def forward(
        self,
        query_feats: Sequence[torch.Tensor],
        support_feats: Sequence[torch.Tensor],
        support_keys: Sequence[torch.Tensor] | None = None,
        uniform: bool = False,
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Return (references per scale [B,C,H,W], weights [B, n_scales, K]).

        ``uniform=True`` replaces the learnt weights by 1/K (the "no L2W" ablation).
        """
        if support_keys is None and not uniform:
            support_keys = self.keys(support_feats)
        references, weights = [], []
        for s, (q, sup) in enumerate(zip(query_feats, support_feats)):
            b = q.shape[0]
            shared = sup.dim() == 4
            k = sup.shape[0] if shared else sup.shape[1]
            q_flat = q.float().flatten(1)  # [B, D]
            sup_flat = sup.float().flatten(-3)  # [K, D] or [B, K, D]
            if uniform:
                w = q_flat.new_full((b, k), 1.0 / k)
            else:
                key_flat = support_keys[s].float().flatten(-3)
                scale = 1.0 / math.sqrt(q.shape[1])
                if shared:
                    logits = q_flat @ key_flat.t() * scale
                else:
                    logits = torch.einsum("bd,bkd->bk", q_flat, key_flat) * scale
                w = torch.softmax(logits, dim=1)
            if shared:
                ref = w @ sup_flat
            else:
                ref = torch.einsum("bk,bkd->bd", w, sup_flat)
            references.append(ref.view(b, *q.shape[1:]))
            weights.append(w)
        return references, torch.stack(weights, dim=1)
