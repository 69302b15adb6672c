"""Honeybee's C-Abstractor: convolutional stages around an adaptive average pool.

`cabstractor_{M}` (e.g. `cabstractor_144`): patches (+ a learned position embedding) are laid out
on their (h, w) grid, go through stage 1 (`depth` RegNet bottleneck blocks, vision_dim ->
hidden_size), are average-pooled to the aspect-preserving grid of at most M cells (`aspect_grid`,
sqrt(M) x sqrt(M) for square inputs), go through stage 2 (`depth` blocks, hidden -> hidden) and a
SiLU readout MLP (`mlp_depth` layers, hidden -> llm_dim). Unlike DeCo's pooling, the convolutions
let neighbouring patches mix before and after the pool (Honeybee's "locality-enhanced" design).

Block (timm's RegNet `Bottleneck` as Honeybee configures it: bottleneck ratio 1, group size 1 so
the 3x3 conv is depthwise, SE ratio 0.25, SiLU, LayerNorm2d)::

    1x1 conv -> LN -> SiLU -> 3x3 grouped conv -> LN -> SiLU -> SE -> 1x1 conv -> LN
    (+ shortcut: identity, or 1x1 conv -> LN when the width changes) -> SiLU

The position embedding is sized for `input_grid` (default 24x24, CLIP-L/14@336) and resized
bicubically for any other grid, so non-square grids work.
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
from decovlm.projectors.layers import LayerNorm2d, avg_pool_to, resize_pos_emb
from decovlm.projectors.registry import register

DEFAULT_GRID = (24, 24)


@dataclass
class CAbstractorConfig(PooledConfig):
    depth: int = 3  # blocks per stage (Honeybee: 3, i.e. six blocks in all)
    mlp_depth: int = 2
    hidden_size: int = 1024
    pos_emb: bool = True
    group_size: int = 1  # channels per group of the 3x3 conv; 1 = depthwise (timm's default)
    se_ratio: float = 0.25

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.depth < 0 or self.mlp_depth < 1 or self.hidden_size < 1:
            raise ValueError(
                f"cabstractor: need depth >= 0, mlp_depth >= 1, hidden_size >= 1; got depth={self.depth}, "
                f"mlp_depth={self.mlp_depth}, hidden_size={self.hidden_size}"
            )
        if self.depth and self.hidden_size % self.group_size:
            raise ValueError(
                f"cabstractor: hidden_size={self.hidden_size} is not divisible by group_size={self.group_size}"
            )

    @property
    def pos_grid(self) -> tuple[int, int]:
        return self.input_grid or DEFAULT_GRID


class SqueezeExcite(nn.Module):
    """Channel gating: global average -> reduce -> SiLU -> expand -> sigmoid -> scale."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.act = nn.SiLU()
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc2(self.act(self.fc1(x.mean(dim=(2, 3), keepdim=True))))
        return x * torch.sigmoid(gate)


class RegBlock(nn.Module):
    """RegNet residual bottleneck block (see the module docstring for the layout)."""

    def __init__(self, in_ch: int, out_ch: int, group_size: int, se_ratio: float) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 1, bias=False), LayerNorm2d(out_ch), nn.SiLU()
        )
        self.conv2 = nn.Sequential(
            nn.Conv2d(out_ch, out_ch, 3, padding=1, groups=out_ch // group_size, bias=False),
            LayerNorm2d(out_ch),
            nn.SiLU(),
        )
        # timm sizes the SE bottleneck from the block's *input* width.
        self.se = (
            SqueezeExcite(out_ch, max(1, round(in_ch * se_ratio)))
            if se_ratio > 0
            else nn.Identity()
        )
        self.conv3 = nn.Sequential(nn.Conv2d(out_ch, out_ch, 1, bias=False), LayerNorm2d(out_ch))
        self.shortcut = (
            nn.Identity()
            if in_ch == out_ch
            else nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), LayerNorm2d(out_ch))
        )
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3(self.se(self.conv2(self.conv1(x))))
        return self.act(y + self.shortcut(x))


def reg_stage(
    depth: int, in_ch: int, out_ch: int, group_size: int, se_ratio: float
) -> nn.Sequential:
    return nn.Sequential(
        *(RegBlock(in_ch if i == 0 else out_ch, out_ch, group_size, se_ratio) for i in range(depth))
    )


class CAbstractorProjector(Projector):
    """RegStage -> adaptive average pool -> RegStage -> SiLU MLP."""

    compressive = True

    def __init__(self, config: CAbstractorConfig) -> None:
        super().__init__(config)
        c = config
        if c.pos_emb:
            h, w = c.pos_grid
            self.pos_emb = nn.Parameter(torch.zeros(1, h * w, c.vision_dim))
            nn.init.trunc_normal_(self.pos_emb, std=0.02)
        else:
            self.pos_emb = None
        width = c.hidden_size if c.depth else c.vision_dim
        self.stage1 = reg_stage(c.depth, c.vision_dim, c.hidden_size, c.group_size, c.se_ratio)
        self.stage2 = reg_stage(c.depth, c.hidden_size, c.hidden_size, c.group_size, c.se_ratio)
        self.readout = build_mlp(width, c.llm_dim, c.mlp_depth, act=nn.SiLU)

    def output_grid(self, h: int, w: int) -> tuple[int, int]:
        return self.pooled_grid(h, w)

    def forward(self, features: torch.Tensor, grid=None) -> torch.Tensor:
        h, w = self.resolve_grid(features, grid)
        out_hw = self.output_grid(h, w)
        if self.pos_emb is not None:
            # Not in place: the caller's features (often a frozen encoder's output) stay untouched.
            features = features + resize_pos_emb(self.pos_emb, self.config.pos_grid, (h, w))
        x = self.stage1(features_to_map(features, (h, w)))
        x = self.stage2(avg_pool_to(x, out_hw))
        return self.readout(map_to_features(x))


register(
    "cabstractor",
    r"cabstractor_(\d+)",
    lambda m: {"num_tokens": int(m.group(1))},
    CAbstractorConfig,
    CAbstractorProjector,
    examples=["cabstractor_144"],
    syntax="cabstractor_{M}",
    canonical="cabstractor_{num_tokens}",
    tokens_field="num_tokens",
)
