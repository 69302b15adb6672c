"""Q-Former (BLIP-2 style) as a compressive projector: M learned queries read the patches.

`qformer{L}_{M}` (e.g. `qformer2_64`, DeCo's compressive baseline): patch features go through
LayerNorm and a Linear (vision_dim -> hidden_size); M learned queries (normal, std 0.02) then pass
L BERT-style post-LN layers, each = self-attention over the queries, cross-attention to the
patches (only in layers i with i % cross_attention_freq == 0, so `qformer2_*` has it in layer 0
only, as in the DeCo training code), and a GELU FFN; a final Linear maps hidden_size -> llm_dim.
M does not depend on N: the queries attend to any number of patches.

Defaults follow the DeCo fork: hidden_size = llm_dim, num_heads = hidden_size // 64 (64 heads at
4096), intermediate_size = 4 * hidden_size. BLIP-2 itself uses hidden_size=768, 12 heads.

Attention maps for relevance (Query-to-Patch)::

    proj.save_attentions = True
    out = proj(features, grid=(24, 24))
    for m in proj.attention_maps:   # in forward order, reset at every forward
        m["layer"], m["kind"], m["probs"]   # int, "self" | "cross", (B, heads, Q, Q | N)
    grads = torch.autograd.grad(target, [m["probs"] for m in proj.attention_maps])

The probabilities are not detached (they are the tensors the forward used), so gradients of any
downstream quantity with respect to them are available. The list is rebuilt at every forward
(no nesting across calls). With `save_attentions = False` (default) the layers use the fused
`scaled_dot_product_attention` and nothing is stored.
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
class QFormerConfig(ProjectorConfig):
    num_layers: int = 2
    num_queries: int = 64
    hidden_size: int | None = None  # None -> llm_dim (the DeCo fork); BLIP-2 uses 768
    num_heads: int | None = None  # None -> hidden_size // 64 (at least 1)
    intermediate_size: int | None = None  # None -> 4 * hidden_size
    cross_attention_freq: int = 2
    layer_norm_eps: float = 1e-12  # BERT's value
    dropout: float = 0.0  # on hidden states; attention-probability dropout is 0 as in DeCo

    def __post_init__(self) -> None:
        super().__post_init__()
        # Resolve the defaults here so that a saved config records the sizes actually built.
        if self.hidden_size is None:
            self.hidden_size = self.llm_dim
        if self.num_heads is None:
            self.num_heads = max(1, self.hidden_size // 64)
        if self.intermediate_size is None:
            self.intermediate_size = 4 * self.hidden_size
        for name in ("num_layers", "num_queries", "hidden_size", "num_heads", "intermediate_size",
                     "cross_attention_freq"):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"qformer: {name} must be a positive int, got {value!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"qformer: hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"qformer: dropout must be in [0, 1), got {self.dropout}")


class QFormerLayer(nn.Module):
    """Self-attention over the queries, optional cross-attention to the patches, FFN (post-LN)."""

    def __init__(self, config: QFormerConfig, has_cross_attention: bool) -> None:
        super().__init__()
        hidden, heads = config.hidden_size, config.num_heads
        eps = config.layer_norm_eps
        self.self_attn = Attention(hidden, hidden, heads, hidden // heads)
        self.self_norm = nn.LayerNorm(hidden, eps=eps)
        self.cross_attn = (
            Attention(hidden, hidden, heads, hidden // heads) if has_cross_attention else None
        )
        self.cross_norm = nn.LayerNorm(hidden, eps=eps) if has_cross_attention else None
        self.ffn = nn.Sequential(
            nn.Linear(hidden, config.intermediate_size),
            nn.GELU(),
            nn.Linear(config.intermediate_size, hidden),
        )
        self.ffn_norm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        queries: torch.Tensor,
        media: torch.Tensor,
        index: int,
        recorder: list[dict[str, Any]] | None,
    ) -> torch.Tensor:
        x = queries
        attn = self.self_attn(x, x, recorder=recorder, tag={"layer": index, "kind": "self"})
        x = self.self_norm(x + self.dropout(attn))
        if self.cross_attn is not None:
            attn = self.cross_attn(
                x, media, recorder=recorder, tag={"layer": index, "kind": "cross"}
            )
            x = self.cross_norm(x + self.dropout(attn))
        return self.ffn_norm(x + self.dropout(self.ffn(x)))


class QFormerProjector(Projector):
    """M learned queries cross-attend to the patches; M tokens whatever N is."""

    compressive = True

    def __init__(self, config: QFormerConfig) -> None:
        super().__init__(config)
        hidden = config.hidden_size
        self.vision_norm = nn.LayerNorm(config.vision_dim)
        self.vision_proj = nn.Linear(config.vision_dim, hidden)
        self.query_tokens = nn.Parameter(torch.zeros(1, config.num_queries, hidden))
        # BLIP-2 normalises the query embeddings before the first layer.
        self.query_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(
            QFormerLayer(config, has_cross_attention=i % config.cross_attention_freq == 0)
            for i in range(config.num_layers)
        )
        self.proj = nn.Linear(hidden, config.llm_dim)
        self.save_attentions = False
        self.attention_maps: list[dict[str, Any]] = []
        self.apply(_init_weights)
        nn.init.normal_(self.query_tokens, std=0.02)

    def num_output_tokens(self, h: int, w: int) -> int:
        return self.config.num_queries

    def forward(self, features: torch.Tensor, grid=None) -> torch.Tensor:
        self.resolve_grid(features, grid)
        media = self.vision_proj(self.vision_norm(features))
        x = self.query_norm(self.query_tokens.expand(features.shape[0], -1, -1))
        recorder: list[dict[str, Any]] | None = [] if self.save_attentions else None
        for i, layer in enumerate(self.layers):
            x = layer(x, media, i, recorder)
        self.attention_maps = recorder if recorder is not None else []
        return self.proj(x)


def _init_weights(module: nn.Module) -> None:
    # BERT / BLIP-2 initialisation (initializer_range 0.02); LayerNorms keep (1, 0).
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


register(
    "qformer",
    r"qformer(\d+)_(\d+)",
    lambda m: {"num_layers": int(m.group(1)), "num_queries": int(m.group(2))},
    QFormerConfig,
    QFormerProjector,
    examples=["qformer2_144", "qformer2_64"],
    syntax="qformer{L}_{M}",
    canonical="qformer{num_layers}_{num_queries}",
    tokens_field="num_queries",
)
