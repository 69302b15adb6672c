"""Perceiver resampler (Flamingo / Qwen-VL style): M learned latents summarise the patches.

`resampler{L}_{M}` (e.g. `resampler6_144`): M latents (standard normal init, as Flamingo) pass L
layers of

    latents += attention(q = LN(latents), k = v = concat(LN(media), LN(latents)))   (no biases)
    latents += FFN(latents)   (LN -> Linear(ff_mult x) -> GELU -> Linear, no biases)

with separate LayerNorms for media and latents; then a final LayerNorm and a Linear width ->
llm_dim. Keys and values include the latents themselves, which merges self- and cross-attention
in one step. `width` defaults to vision_dim (the media are used as they are); another width adds
a bias-free Linear vision_dim -> width first. Attention is `num_heads` x `head_dim` (Flamingo:
8 x 64), independent of the width. There is no position embedding: the latents see the patches as
a set, which is exactly what DeCo criticises in compressive projectors. M does not depend on N.

Like the Q-Former, `proj.save_attentions = True` makes every layer store its (not detached)
attention probabilities in `proj.attention_maps` as {"layer": i, "kind": "cross", "probs": (B,
heads, M, N + M)}; the first N keys are the patches, the last M the latents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from decovlm.projectors.base import Projector, ProjectorConfig
from decovlm.projectors.layers import Attention
from decovlm.projectors.registry import register


@dataclass
class ResamplerConfig(ProjectorConfig):
    num_layers: int = 6
    num_latents: int = 64
    width: int | None = None  # None -> vision_dim
    num_heads: int = 8
    head_dim: int = 64
    ff_mult: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.width is None:
            self.width = self.vision_dim
        for name in ("num_layers", "num_latents", "width", "num_heads", "head_dim", "ff_mult"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"resampler: {name} must be a positive int, got {value!r}")


class PerceiverLayer(nn.Module):
    """Latents attend to [media; latents], then a feed-forward block; both residual."""

    def __init__(self, config: ResamplerConfig) -> None:
        super().__init__()
        d = config.width
        self.norm_media = nn.LayerNorm(d)
        self.norm_latents = nn.LayerNorm(d)
        self.attn = Attention(d, d, config.num_heads, config.head_dim, bias=False)
        self.ffn = nn.Sequential(
            nn.LayerNorm(d),
            nn.Linear(d, config.ff_mult * d, bias=False),
            nn.GELU(),
            nn.Linear(config.ff_mult * d, d, bias=False),
        )

    def forward(
        self,
        latents: torch.Tensor,
        media: torch.Tensor,
        index: int,
        recorder: list[dict[str, Any]] | None,
    ) -> torch.Tensor:
        normed = self.norm_latents(latents)
        context = torch.cat([self.norm_media(media), normed], dim=1)
        latents = latents + self.attn(
            normed, context, recorder=recorder, tag={"layer": index, "kind": "cross"}
        )
        return latents + self.ffn(latents)


class ResamplerProjector(Projector):
    """M latents cross-attend to the patches (and themselves) L times; M tokens whatever N is."""

    compressive = True

    def __init__(self, config: ResamplerConfig) -> None:
        super().__init__(config)
        d = config.width
        self.input_proj = (
            nn.Linear(config.vision_dim, d, bias=False) if d != config.vision_dim else nn.Identity()
        )
        self.latents = nn.Parameter(torch.randn(config.num_latents, d))
        self.layers = nn.ModuleList(PerceiverLayer(config) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(d)
        self.proj = nn.Linear(d, config.llm_dim)
        self.save_attentions = False
        self.attention_maps: list[dict[str, Any]] = []

    def num_output_tokens(self, h: int, w: int) -> int:
        return self.config.num_latents

    def forward(self, features: torch.Tensor, grid=None) -> torch.Tensor:
        self.resolve_grid(features, grid)
        media = self.input_proj(features)
        x = self.latents.unsqueeze(0).expand(features.shape[0], -1, -1)
        recorder: list[dict[str, Any]] | None = [] if self.save_attentions else None
        for i, layer in enumerate(self.layers):
            x = layer(x, media, i, recorder)
        self.attention_maps = recorder if recorder is not None else []
        return self.proj(self.norm(x))


register(
    "resampler",
    r"resampler(\d+)_(\d+)",
    lambda m: {"num_layers": int(m.group(1)), "num_latents": int(m.group(2))},
    ResamplerConfig,
    ResamplerProjector,
    examples=["resampler6_144"],
    syntax="resampler{L}_{M}",
    canonical="resampler{num_layers}_{num_latents}",
    tokens_field="num_latents",
)
