"""DeCo's projector and its pooling ablations: parameter-free 2D pooling of the patch grid, then an MLP.

`avgpool{L}_{M}` is DeCo: 2D adaptive average pooling to sqrt(M) x sqrt(M), then an L-layer GELU
MLP (the seed's `AvgPoolProjector`). `maxpool{L}_{M}` swaps in max pooling and `bilinear{L}_{M}`
a bilinear resize; both are ablations of the paper. Pooling happens *before* the MLP, so the MLP
runs on M tokens, not N.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from decovlm.projectors.base import (
    PooledConfig,
    Projector,
    build_mlp,
    features_to_map,
    map_to_features,
)
from decovlm.projectors.registry import register


@dataclass
class PoolConfig(PooledConfig):
    depth: int = 2


def adaptive_windows(size: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive pooling windows [floor(i*size/out), ceil((i+1)*size/out)) for each output i."""
    return [((i * size) // out, math.ceil((i + 1) * size / out)) for i in range(out)]


class PoolProjector(Projector):
    """Pool the (h, w) patch grid to an (h', w') grid, then apply an L-layer GELU MLP per token."""

    compressive = True
    mode = "avg"

    def __init__(self, config: PoolConfig) -> None:
        super().__init__(config)
        self.mlp_projector = build_mlp(config.vision_dim, config.llm_dim, config.depth)

    def output_grid(self, h: int, w: int) -> tuple[int, int]:
        return self.pooled_grid(h, w)

    def pool(self, feature_map: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
        h, w = feature_map.shape[-2:]
        oh, ow = out_hw
        if self.mode == "bilinear":
            return F.interpolate(feature_map, size=out_hw, mode="bilinear", align_corners=False)
        if h % oh == 0 and w % ow == 0:
            # Same numbers as adaptive pooling, but deterministic on CUDA and supported on MPS.
            kernel = (h // oh, w // ow)
            pool = F.avg_pool2d if self.mode == "avg" else F.max_pool2d
            return pool(feature_map, kernel_size=kernel, stride=kernel)
        pool = F.adaptive_avg_pool2d if self.mode == "avg" else F.adaptive_max_pool2d
        return pool(feature_map, out_hw)

    def compress(self, features: torch.Tensor, grid=None) -> torch.Tensor:
        """The parameter-free half: (B, N, Dv) -> (B, M, Dv)."""
        h, w = self.resolve_grid(features, grid)
        pooled = self.pool(features_to_map(features, (h, w)), self.output_grid(h, w))
        return map_to_features(pooled)

    def forward(self, features: torch.Tensor, grid=None) -> torch.Tensor:
        return self.mlp_projector(self.compress(features, grid))


class AvgPoolProjector(PoolProjector):
    """DeCo: parameter-free 2D adaptive average pooling, then an MLP."""

    mode = "avg"

    def patch_mapping(self, h: int, w: int) -> torch.Tensor:
        """(M, N): row (i, j) averages the patches of adaptive window (i, j); rows sum to 1."""
        oh, ow = self.output_grid(h, w)
        mapping = torch.zeros(oh * ow, h * w)
        grid = torch.arange(h * w).reshape(h, w)
        for i, (r0, r1) in enumerate(adaptive_windows(h, oh)):
            for j, (c0, c1) in enumerate(adaptive_windows(w, ow)):
                cells = grid[r0:r1, c0:c1].reshape(-1)
                mapping[i * ow + j, cells] = 1.0 / cells.numel()
        return mapping


class MaxPoolProjector(PoolProjector):
    """Ablation: max pooling picks one patch per window, so its mapping depends on the data."""

    mode = "max"


class BilinearProjector(PoolProjector):
    """Ablation: bilinear resize of the patch grid (a fixed linear map of the patches)."""

    mode = "bilinear"

    def patch_mapping(self, h: int, w: int) -> torch.Tensor:
        # Interpolation is linear and data-independent: push the identity basis through it.
        basis = torch.eye(h * w).reshape(h * w, 1, h, w)
        out = F.interpolate(
            basis, size=self.output_grid(h, w), mode="bilinear", align_corners=False
        )
        return out.reshape(h * w, -1).T.contiguous()


def _pool_fields(match) -> dict[str, int]:
    return {"depth": int(match.group(1)), "num_tokens": int(match.group(2))}


class AvgPoolConfig(PoolConfig):
    """Config of DeCo's `avgpool{L}_{M}`."""


class MaxPoolConfig(PoolConfig):
    """Config of `maxpool{L}_{M}`."""


class BilinearConfig(PoolConfig):
    """Config of `bilinear{L}_{M}`."""


for _name, _config, _module, _examples in (
    ("avgpool", AvgPoolConfig, AvgPoolProjector, ["avgpool2_144", "avgpool2_64"]),
    ("maxpool", MaxPoolConfig, MaxPoolProjector, ["maxpool2_144"]),
    ("bilinear", BilinearConfig, BilinearProjector, ["bilinear2_144"]),
):
    register(_name, rf"{_name}(\d+)_(\d+)", _pool_fields, _config, _module, examples=_examples,
             syntax=f"{_name}{{L}}_{{M}}", canonical=f"{_name}{{depth}}_{{num_tokens}}",
             tokens_field="num_tokens")  # fmt: skip
