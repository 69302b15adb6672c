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
    Projector,
    ProjectorConfig,
    aspect_grid,
    build_mlp,
    features_to_map,
    map_to_features,
    square_side,
)
from decovlm.projectors.layers import avg_pool_to
from decovlm.projectors.registry import register


@dataclass
class LDPv2Config(ProjectorConfig):
    num_tokens: int = 144

    def __post_init__(self) -> None:
        super().__post_init__()
        square_side(self.num_tokens, "ldpv2: number of output tokens M")
        if self.input_grid is not None:
            h, w = self.input_grid
            if self.num_tokens > h * w:
                raise ValueError(
                    f"ldpv2: cannot pool {h}x{w} = {h * w} patches up to {self.num_tokens} tokens "
                    f"(M must be <= N)"
                )


class LDPv2Projector(Projector):
    """Per-patch MLP, then 2D average pooling, then a depthwise-conv position generator (PEG)."""

    compressive = True

    def __init__(self, config: LDPv2Config) -> None:
        super().__init__(config)
        dl = config.llm_dim
        self.mlp = build_mlp(config.vision_dim, dl, depth=2)
        self.peg = nn.Conv2d(dl, dl, kernel_size=3, padding=1, groups=dl)

    def output_grid(self, h: int, w: int) -> tuple[int, int]:
        if self.config.num_tokens > h * w:
            raise ValueError(
                f"ldpv2: cannot pool a {h}x{w} grid ({h * w} patches) to "
                f"{self.config.num_tokens} tokens (M must be <= N)"
            )
        return aspect_grid(h, w, self.config.num_tokens)

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
)
