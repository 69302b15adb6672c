"""Non-compressive projectors: LLaVA's `linear` and `mlp{k}x_gelu` (M = N, one token per patch)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from decovlm.projectors.base import Projector, ProjectorConfig, build_mlp
from decovlm.projectors.registry import register


@dataclass
class MLPConfig(ProjectorConfig):
    depth: int = 2


class GeluMLPConfig(MLPConfig):
    """Config of `mlp{k}x_gelu` (same fields as `linear`, which is depth 1)."""


class MLPProjector(Projector):
    """A per-patch GELU MLP: every patch becomes one LLM token, nothing is compressed."""

    compressive = False

    def __init__(self, config: MLPConfig) -> None:
        super().__init__(config)
        self.mlp_projector = build_mlp(config.vision_dim, config.llm_dim, config.depth)

    def output_grid(self, h: int, w: int) -> tuple[int, int]:
        return h, w

    def patch_mapping(self, h: int, w: int) -> torch.Tensor:
        return torch.eye(h * w)

    def forward(self, features: torch.Tensor, grid=None) -> torch.Tensor:
        self.resolve_grid(features, grid)
        return self.mlp_projector(features)


class GeluMLPProjector(MLPProjector):
    """LLaVA-1.5's projector (`mlp2x_gelu`)."""


register(
    "linear",
    r"linear",
    lambda m: {"depth": 1},
    MLPConfig,
    MLPProjector,
    examples=["linear"],
    syntax="linear",
    canonical="linear",
)
# `mlp{k}x_gelu` shares the config and module; it is registered as its own family name so that
# saved configs stay readable. `gelu-mlp` is the prismatic / DeCo-fork spelling of mlp2x_gelu.
register(
    "mlp",
    r"mlp(\d+)x_gelu|gelu-mlp",
    lambda m: {"depth": int(m.group(1)) if m.group(1) else 2},
    GeluMLPConfig,
    GeluMLPProjector,
    examples=["mlp2x_gelu"],
    syntax="mlp{k}x_gelu",
    canonical="mlp{depth}x_gelu",  # gelu-mlp is spelled mlp2x_gelu
)
