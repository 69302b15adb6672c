"""MobileVLM-v2's LDPv2 projector: MLP on every patch, average pool to 12x12, PEG.

`ldpv2` (144 tokens, MobileVLM-v2's fixed `AdaptiveAvgPool2d((12, 12))`) or `ldpv2_{M}`:

    Linear(Dv, Dl) -> GELU -> Linear(Dl, Dl)      on all N patches (MLP *before* pooling,
                                                   unlike DeCo, so it costs N, not M, tokens)
    2D average pool to the aspect grid of M cells (sqrt(M) x sqrt(M) for square inputs)
    PEG: x + depthwise Conv2d(Dl, Dl, 3, padding=1, groups=Dl)   (conditional position encoding)

Parameters: Dv*Dl + Dl + Dl^2 + Dl + 9*Dl + Dl (6,316,032 at Dv=1024, Dl=2048).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from decovlm.projectors.base import (
    PooledConfig,
    Projector,
    build_mlp,
    features_to_map,
    map_to_features,
)
from decovlm.projectors.layers import avg_pool_to
from decovlm.projectors.registry import register


@dataclass
class LDPv2Config(PooledConfig):
    """Config of MobileVLM-v2's LDPv2 (M = 144 as published; `ldpv2_{M}` picks another square M)."""


class LDPv2Projector(Projector):
    """Per-patch MLP, then 2D average pooling, then a depthwise-conv position generator (PEG)."""

    compressive = True

    def __init__(self, config: LDPv2Config) -> None:
        super().__init__(config)
        dl = config.llm_dim
        self.mlp = build_mlp(config.vision_dim, dl, depth=2)
        self.peg = nn.Conv2d(dl, dl, kernel_size=3, padding=1, groups=dl)

    def output_grid(self, h: int, w: int) -> tuple[int, int]:
        return self.pooled_grid(h, w)

    def forward(self, features: torch.Tensor, grid=None) -> torch.Tensor:
        h, w = self.resolve_grid(features, grid)
        x = avg_pool_to(features_to_map(self.mlp(features), (h, w)), self.output_grid(h, w))
        return map_to_features(x + self.peg(x))


register(
    "ldpv2",
    r"ldpv2(?:_(\d+))?",
    lambda m: {"num_tokens": int(m.group(1))} if m.group(1) else {},
    LDPv2Config,
    LDPv2Projector,
    examples=["ldpv2"],
    syntax="ldpv2[_{M}]",
    canonical=lambda f: f"ldpv2_{f['num_tokens']}" if "num_tokens" in f else "ldpv2",
    tokens_field="num_tokens",
)
