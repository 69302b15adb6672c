"""Building blocks shared by several projector families (not a family itself; nothing registers here).

- `Attention`: multi-head attention with separate q/k/v/out projections that can hand its
  attention probabilities to a recorder list (used by the Q-Former, the resampler and the
  D-Abstractor's query self-attention; the relevance maps need those probabilities);
- `avg_pool_to`: 2D average pooling to an output grid, deterministic when the sizes divide;
- `resize_pos_emb`: bicubic resize of a learned (1, h*w, D) position embedding to another grid;
- `LayerNorm2d`: LayerNorm over the channels of a (B, C, H, W) map.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head attention `softmax(q k^T / sqrt(d)) v` with its own projections.

    Without a recorder it runs `F.scaled_dot_product_attention` (fast, fused). With one, it runs the
    explicit softmax (computed in float32, as HF's eager attention does) and appends
    `{**tag, "probs": probs}` to the recorder. `probs` (B, heads, Q, K) stays in the autograd graph
    (no detach), so `torch.autograd.grad(output, probs)` gives the gradient that gradient-weighted
    relevance (Chefer et al.'s GAE) needs.
    """

    def __init__(
        self,
        query_dim: int,
        context_dim: int,
        num_heads: int,
        head_dim: int,
        out_dim: int | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        inner = num_heads * head_dim
        self.num_heads, self.head_dim = num_heads, head_dim
        self.q_proj = nn.Linear(query_dim, inner, bias=bias)
        self.k_proj = nn.Linear(context_dim, inner, bias=bias)
        self.v_proj = nn.Linear(context_dim, inner, bias=bias)
        self.out_proj = nn.Linear(inner, out_dim or query_dim, bias=bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor,
        value: torch.Tensor | None = None,
        recorder: list[dict[str, Any]] | None = None,
        tag: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        """x (B, Q, Dq) attends to context (B, K, Dc); `value` defaults to `context` (DETR adds
        position embeddings to queries and keys but not to values)."""
        q = self._heads(self.q_proj(x))
        k = self._heads(self.k_proj(context))
        v = self._heads(self.v_proj(context if value is None else value))
        if recorder is None:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            scores = torch.matmul(q, k.transpose(-1, -2)) * self.head_dim**-0.5
            probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
            recorder.append({**(tag or {}), "probs": probs})
            out = torch.matmul(probs, v)
        b, _, n, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim))


def avg_pool_to(feature_map: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, h', w') by PyTorch's adaptive average pooling windows.

    When the sizes divide, `avg_pool2d` gives the same numbers and is deterministic on CUDA and
    supported on MPS (adaptive pooling is neither, for uneven sizes).
    """
    h, w = feature_map.shape[-2:]
    oh, ow = out_hw
    if h % oh == 0 and w % ow == 0:
        kernel = (h // oh, w // ow)
        return F.avg_pool2d(feature_map, kernel_size=kernel, stride=kernel)
    return F.adaptive_avg_pool2d(feature_map, out_hw)


def resize_pos_emb(
    pos_emb: torch.Tensor, src_grid: tuple[int, int], dst_grid: tuple[int, int]
) -> torch.Tensor:
    """(1, h*w, D) learned position embedding laid out on `src_grid` -> (1, h'*w', D) on `dst_grid`.

    Bicubic, as Qwen-VL and ViTs resize theirs; computed in float32 because low-precision bicubic
    is unsupported or inaccurate on some backends.
    """
    if tuple(src_grid) == tuple(dst_grid):
        return pos_emb
    (h, w), (nh, nw) = src_grid, dst_grid
    d = pos_emb.shape[-1]
    grid = pos_emb.reshape(1, h, w, d).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(nh, nw), mode="bicubic", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, nh * nw, d).to(pos_emb.dtype)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel axis of a (B, C, H, W) map (the ConvNeXt / timm layout)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)
