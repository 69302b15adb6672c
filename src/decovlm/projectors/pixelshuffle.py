"""Pixel-shuffle (space-to-depth) connector of nanoVLM / Idefics3 / SmolVLM.

`pixelshuffle{s}` (e.g. `pixelshuffle2`: 24x24 -> 12x12): every s x s block of patches becomes one
token whose channels are the block's patch features concatenated in (dh, dw, C) order, then one
bias-free Linear(Dv * s^2, Dl) (init normal std 0.02, as nanoVLM). Nothing is averaged away: the
block's patches are stacked, so compression is lossless up to the Linear. Grid sides must be
divisible by s (no padding), and the token order is row-major over the (h/s, w/s) block grid.

Parameters: Dv * s^2 * Dl (nanoVLM: 768 * 16 -> 960 = 11,796,480).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from decovlm.projectors.base import Projector, ProjectorConfig
from decovlm.projectors.registry import register


@dataclass
class PixelShuffleConfig(ProjectorConfig):
    scale: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.scale, int) or self.scale < 1:
            raise ValueError(
                f"pixelshuffle: scale factor s must be a positive int, got {self.scale!r}"
            )
        if self.input_grid is not None:
            check_divisible(self.input_grid, self.scale)


def check_divisible(grid: tuple[int, int], s: int) -> None:
    h, w = grid
    if h % s or w % s:
        raise ValueError(
            f"pixelshuffle{s}: grid {h}x{w} cannot be split into {s}x{s} blocks "
            f"(both sides must be divisible by s={s})"
        )


def space_to_depth(features: torch.Tensor, grid: tuple[int, int], s: int) -> torch.Tensor:
    """(B, h*w, C) row-major -> (B, (h/s)*(w/s), s*s*C), channels ordered (dh, dw, C)."""
    b, _, c = features.shape
    h, w = grid
    x = features.reshape(b, h // s, s, w // s, s, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // s) * (w // s), s * s * c)


class PixelShuffleProjector(Projector):
    """Stack each s x s block of patches into one token, then a bias-free Linear."""

    compressive = True

    def __init__(self, config: PixelShuffleConfig) -> None:
        super().__init__(config)
        s = config.scale
        self.proj = nn.Linear(config.vision_dim * s * s, config.llm_dim, bias=False)
        nn.init.normal_(self.proj.weight, std=0.02)

    def output_grid(self, h: int, w: int) -> tuple[int, int]:
        s = self.config.scale
        check_divisible((h, w), s)
        return h // s, w // s

    def patch_mapping(self, h: int, w: int) -> torch.Tensor:
        """(M, N) block membership with 1/s^2 per member patch; rows sum to 1.

        Choice for relevance maps: a token is built from exactly the s x s patches of its block
        (a fixed assignment, not a learned mixing across blocks), so a token's relevance belongs to
        those patches and to no other. How it splits *within* the block depends on the Linear's
        weights and the features, which a fixed matrix cannot express; the uniform 1/s^2 split is
        the same convention as DeCo's average pooling (whose mapping this equals when s divides
        the grid), so the two compose and compare alike.
        """
        oh, ow = self.output_grid(h, w)
        s = self.config.scale
        token = (torch.arange(h)[:, None] // s) * ow + torch.arange(w)[None, :] // s  # (h, w)
        mapping = torch.zeros(oh * ow, h * w)
        mapping[token.reshape(-1), torch.arange(h * w)] = 1.0 / (s * s)
        return mapping

    def forward(self, features: torch.Tensor, grid=None) -> torch.Tensor:
        h, w = self.resolve_grid(features, grid)
        self.output_grid(h, w)  # validates divisibility with a clear message
        return self.proj(space_to_depth(features, (h, w), self.config.scale))


register(
    "pixelshuffle",
    r"pixelshuffle(\d+)",
    lambda m: {"scale": int(m.group(1))},
    PixelShuffleConfig,
    PixelShuffleProjector,
    examples=["pixelshuffle2"],
    syntax="pixelshuffle{s}",
    canonical="pixelshuffle{scale}",
)
