"""Honeybee's D-Abstractor: a Deformable-DETR decoder whose M queries sample the patch map.

`dabstractor_{M}` (e.g. `dabstractor_144`). Patches are projected to d_model (Linear when
vision_dim != d_model) and get a learned position embedding (sized for `input_grid`, default
24x24, resized bicubically for other grids). The M = m x m queries are a learned target embedding
(M, d) plus a query position = the patch map average-pooled to m x m (Honeybee's
`pooled_v_target="query"`). Each of the L decoder layers (post-LN, as Deformable DETR) does

    self-attention among the queries (q = k = target + pos, v = target)
    deformable cross-attention: each query, per head, samples `num_points` locations of the patch
        map at its reference point + learned offsets (bilinear, `F.grid_sample`) and averages
        them with learned softmax weights
    FFN (Linear -> ReLU -> Linear)

then a Linear d_model -> llm_dim. Reference points are learned (M, 2) normalised (x, y) in [0, 1],
initialised on Honeybee's uniform grid linspace(0.5, s - 0.5, m) / s over the patch grid; normalised
coordinates make the same points cover any (also non-square) grid. Everything is plain PyTorch
(no custom CUDA kernel), so it runs on CPU and in bfloat16, unlike Honeybee's fp32-CUDA-only
version. The output keeps the m x m query layout whatever the input aspect ratio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from decovlm.projectors.base import (
    PooledConfig,
    Projector,
    check_pool_fits,
    features_to_map,
    map_to_features,
    square_side,
)
from decovlm.projectors.layers import Attention, avg_pool_to, resize_pos_emb
from decovlm.projectors.registry import register

DEFAULT_GRID = (24, 24)


@dataclass
class DAbstractorConfig(PooledConfig):
    num_layers: int = 6
    d_model: int = 1024
    num_heads: int = 8
    num_points: int = 4
    ffn_dim: int = 1024  # Deformable DETR's decoder_ffn_dim default, which Honeybee keeps
    pos_emb: bool = True
    dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("num_layers", "d_model", "num_heads", "num_points", "ffn_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"dabstractor: {name} must be a positive int, got {value!r}")
        if self.d_model % self.num_heads:
            raise ValueError(
                f"dabstractor: d_model={self.d_model} is not divisible by num_heads={self.num_heads}"
            )

    @property
    def pos_grid(self) -> tuple[int, int]:
        return self.input_grid or DEFAULT_GRID


class DeformableCrossAttention(nn.Module):
    """Single-level multi-scale deformable attention (Zhu et al. 2021) with `F.grid_sample`."""

    def __init__(self, d_model: int, num_heads: int, num_points: int) -> None:
        super().__init__()
        self.num_heads, self.num_points = num_heads, num_points
        self.head_dim = d_model // num_heads
        self.sampling_offsets = nn.Linear(d_model, num_heads * num_points * 2)
        self.attention_weights = nn.Linear(d_model, num_heads * num_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Deformable DETR's init: offsets start on rays in `num_heads` directions, point k at
        # distance k (in patches); uniform sampling weights.
        nn.init.zeros_(self.sampling_offsets.weight)
        theta = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        rays = torch.stack([theta.cos(), theta.sin()], dim=-1)
        rays = rays / rays.abs().max(dim=-1, keepdim=True).values
        steps = torch.arange(1, self.num_points + 1, dtype=torch.float32)
        bias = rays[:, None, :] * steps[None, :, None]  # (heads, points, 2)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(bias.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for lin in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(
        self,
        query: torch.Tensor,
        value: torch.Tensor,
        grid: tuple[int, int],
        reference: torch.Tensor,
    ) -> torch.Tensor:
        """query (B, Q, d), value (B, h*w, d), reference (Q, 2) normalised (x, y) -> (B, Q, d)."""
        b, q, _ = query.shape
        h, w = grid
        heads, points, hd = self.num_heads, self.num_points, self.head_dim
        v = self.value_proj(value).view(b, h, w, heads, hd).permute(0, 3, 4, 1, 2)
        v = v.reshape(b * heads, hd, h, w)
        offsets = self.sampling_offsets(query).view(b, q, heads, points, 2)
        weights = self.attention_weights(query).view(b, q, heads, points).softmax(dim=-1)
        # Offsets are in patches: normalise by (w, h) so that they mean the same on every grid.
        scale = torch.tensor([w, h], dtype=offsets.dtype, device=offsets.device)
        loc = reference.to(offsets.dtype)[None, :, None, None, :] + offsets / scale
        # grid_sample wants [-1, 1] with align_corners=False: pixel centres sit at (i + 0.5) / w.
        sample_grid = (2.0 * loc - 1.0).permute(0, 2, 1, 3, 4).reshape(b * heads, q, points, 2)
        sampled = F.grid_sample(
            v, sample_grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        weights = weights.permute(0, 2, 1, 3).reshape(b * heads, 1, q, points)
        out = (sampled * weights).sum(dim=-1)  # (B*heads, hd, Q)
        out = out.view(b, heads * hd, q).transpose(1, 2)
        return self.output_proj(out)


class DeformableDecoderLayer(nn.Module):
    """Query self-attention, deformable cross-attention, FFN; each residual then LayerNorm."""

    def __init__(self, config: DAbstractorConfig) -> None:
        super().__init__()
        d = config.d_model
        self.self_attn = Attention(d, d, config.num_heads, d // config.num_heads)
        self.norm1 = nn.LayerNorm(d)
        self.cross_attn = DeformableCrossAttention(d, config.num_heads, config.num_points)
        self.norm2 = nn.LayerNorm(d)
        self.ffn = nn.Sequential(
            nn.Linear(d, config.ffn_dim), nn.ReLU(), nn.Linear(config.ffn_dim, d)
        )
        self.norm3 = nn.LayerNorm(d)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        target: torch.Tensor,
        query_pos: torch.Tensor,
        value: torch.Tensor,
        grid: tuple[int, int],
        reference: torch.Tensor,
    ) -> torch.Tensor:
        qk = target + query_pos
        x = self.norm1(target + self.dropout(self.self_attn(qk, qk, value=target)))
        x = self.norm2(x + self.dropout(self.cross_attn(x + query_pos, value, grid, reference)))
        return self.norm3(x + self.dropout(self.ffn(x)))


class DAbstractorProjector(Projector):
    """M pooled-position queries decode the patch map with deformable attention."""

    compressive = True

    def __init__(self, config: DAbstractorConfig) -> None:
        super().__init__(config)
        c = config
        d = c.d_model
        self.side = square_side(c.num_tokens)
        self.input_proj = nn.Linear(c.vision_dim, d) if c.vision_dim != d else nn.Identity()
        if c.pos_emb:
            h, w = c.pos_grid
            self.pos_emb = nn.Parameter(torch.zeros(1, h * w, d))
            nn.init.trunc_normal_(self.pos_emb, std=0.02)
        else:
            self.pos_emb = None
        self.query_embed = nn.Parameter(torch.zeros(c.num_tokens, d))
        nn.init.normal_(self.query_embed)  # nn.Embedding's init, as Deformable DETR's query embed
        self.reference_points = nn.Parameter(self._initial_reference_points())
        self.layers = nn.ModuleList(DeformableDecoderLayer(c) for _ in range(c.num_layers))
        self.output_proj = nn.Linear(d, c.llm_dim)

    def _initial_reference_points(self) -> torch.Tensor:
        h, w = self.config.pos_grid
        m = self.side
        ys = torch.linspace(0.5, h - 0.5, m) / h
        xs = torch.linspace(0.5, w - 0.5, m) / w
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        return torch.stack([xx, yy], dim=-1).reshape(m * m, 2)  # row-major, (x, y)

    def output_grid(self, h: int, w: int) -> tuple[int, int]:
        check_pool_fits("dabstractor", self.config.num_tokens, h, w)
        return self.side, self.side

    def forward(self, features: torch.Tensor, grid=None) -> torch.Tensor:
        h, w = self.resolve_grid(features, grid)
        out_hw = self.output_grid(h, w)
        value = self.input_proj(features)
        if self.pos_emb is not None:
            value = value + resize_pos_emb(self.pos_emb, self.config.pos_grid, (h, w))
        query_pos = map_to_features(avg_pool_to(features_to_map(value, (h, w)), out_hw))
        target = self.query_embed.unsqueeze(0).expand(features.shape[0], -1, -1)
        for layer in self.layers:
            target = layer(target, query_pos, value, (h, w), self.reference_points)
        return self.output_proj(target)


register(
    "dabstractor",
    r"dabstractor_(\d+)",
    lambda m: {"num_tokens": int(m.group(1))},
    DAbstractorConfig,
    DAbstractorProjector,
    examples=["dabstractor_144"],
    syntax="dabstractor_{M}",
    canonical="dabstractor_{num_tokens}",
    tokens_field="num_tokens",
)
