"""The one interface every projector implements, and the helpers they share.

A projector maps patch features `(B, N, vision_dim)` laid out row-major on an `(h, w)` patch grid
to LLM input tokens `(B, M, llm_dim)`. Besides `forward`, each projector answers
`num_output_tokens(h, w)` (so a processor can size the image placeholders before any forward
pass) and, where the patch-to-token map does not depend on the data, `patch_mapping(h, w)`
(the (M, N) matrix the relevance maps compose with).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import torch
from torch import nn


@dataclass
class ProjectorConfig:
    """Fields every projector config has. Families subclass it with their own typed fields."""

    family: ClassVar[str] = ""
    vision_dim: int = 1024
    llm_dim: int = 4096
    # The input patch grid, when known at build time: used to reject impossible requests early
    # (M > N for pooling) and to size grid-bound parameters (learned position embeddings).
    input_grid: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.input_grid is not None:
            self.input_grid = parse_grid(self.input_grid)
        for name in ("vision_dim", "llm_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(
                    f"{type(self).__name__}.{name} must be a positive int, got {value!r}"
                )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data.get("input_grid") is not None:
            data["input_grid"] = list(data["input_grid"])
        return {"family": self.family, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProjectorConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - {"family"})
        if unknown:
            raise ValueError(
                f"unknown option(s) {unknown} for projector family '{cls.family}'; "
                f"known options: {sorted(known)}"
            )
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class PooledConfig(ProjectorConfig):
    """Config of a projector that pools the patch grid to M = `num_tokens` (a square, M <= N)."""

    num_tokens: int = 144

    def __post_init__(self) -> None:
        super().__post_init__()
        square_side(self.num_tokens, f"{self.family}: number of output tokens M")
        if self.input_grid is not None:
            check_pool_fits(self.family, self.num_tokens, *self.input_grid)


def check_pool_fits(family: str, num_tokens: int, h: int, w: int) -> None:
    # Adaptive pooling would silently *upsample* by repetition when M > N.
    if num_tokens > h * w:
        raise ValueError(
            f"{family}: cannot pool a {h}x{w} grid ({h * w} patches) to {num_tokens} tokens (M must be <= N)"
        )


@dataclass(frozen=True)
class ParamCount:
    trainable: int
    total: int


def count_parameters(module: nn.Module) -> ParamCount:
    """Trainable and total parameter counts (a frozen buffer-like parameter counts in total only)."""
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return ParamCount(trainable=trainable, total=total)


def parse_grid(grid: Any) -> tuple[int, int]:
    """Accept (h, w), [h, w] or "HxW" and return a validated (h, w) tuple."""
    if isinstance(grid, str):
        parts = grid.lower().split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"grid must look like '24x24', got {grid!r}")
        grid = (int(parts[0]), int(parts[1]))
    try:
        h, w = (int(g) for g in grid)
    except (TypeError, ValueError):
        raise ValueError(f"grid must be (height, width), got {grid!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"grid sides must be positive, got {(h, w)}")
    return h, w


def square_side(m: int, what: str = "number of output tokens") -> int:
    """sqrt(m) for a perfect square m, else a ValueError naming the nearest valid choices."""
    side = math.isqrt(m) if m > 0 else 0
    if m <= 0 or side * side != m:
        lo = max(1, math.isqrt(max(m, 1))) ** 2
        hi = (math.isqrt(max(m, 1)) + 1) ** 2
        raise ValueError(
            f"{what} must be a perfect square (it is pooled to sqrt x sqrt), got {m}; try {lo} or {hi}"
        )
    return side


def aspect_grid(h: int, w: int, max_tokens: int) -> tuple[int, int]:
    """Output grid for pooling an (h, w) grid to at most `max_tokens` cells.

    Square inputs give (m, m) with m = sqrt(max_tokens) exactly (DeCo's case). A non-square grid keeps
    its aspect ratio: both sides are scaled by sqrt(max_tokens / (h*w)), rounded, clipped to the input
    size, then the longer side is shrunk until the product fits. 24x32 with 144 gives 10x14 (140).
    """
    if h == w:
        side = min(h, math.isqrt(max_tokens))
        return side, side
    scale = math.sqrt(max_tokens / (h * w))
    oh = min(h, max(1, round(h * scale)))
    ow = min(w, max(1, round(w * scale)))
    while oh * ow > max_tokens:
        if ow >= oh and ow > 1:
            ow -= 1
        elif oh > 1:
            oh -= 1
    return oh, ow


def build_mlp(
    in_dim: int, out_dim: int, depth: int, act: type[nn.Module] = nn.GELU
) -> nn.Sequential:
    """LLaVA's `mlp{depth}x_gelu` layout: Linear, then (act, Linear) x (depth - 1).

    The Sequential indices (0, 2, ...) match LLaVA's `mm_projector` and DeCo's `mlp_projector`
    state dicts, so their checkpoints load as they are.
    """
    if depth < 1:
        raise ValueError(f"MLP depth must be >= 1, got {depth}")
    layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
    for _ in range(1, depth):
        layers += [act(), nn.Linear(out_dim, out_dim)]
    return nn.Sequential(*layers)


def features_to_map(features: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, h*w, D) row-major tokens -> (B, D, h, w) image-like map."""
    b, n, d = features.shape
    h, w = grid
    return features.reshape(b, h, w, d).permute(0, 3, 1, 2)


def map_to_features(feature_map: torch.Tensor) -> torch.Tensor:
    """(B, D, h, w) -> (B, h*w, D), row-major, the LLaVA patch order."""
    b, d, h, w = feature_map.shape
    return feature_map.permute(0, 2, 3, 1).reshape(b, h * w, d)


class Projector(nn.Module):
    """Base class: grid handling, token counting and parameter reporting for every projector."""

    config_class: ClassVar[type[ProjectorConfig]] = ProjectorConfig
    #: True when M < N in general (the projector compresses tokens).
    compressive: ClassVar[bool] = False

    def __init__(self, config: ProjectorConfig) -> None:
        super().__init__()
        self.config = config

    # -- grid ------------------------------------------------------------------------------
    def resolve_grid(self, features: torch.Tensor, grid: Any = None) -> tuple[int, int]:
        """Check `features` against `grid` (or infer a square grid) and return (h, w)."""
        if features.dim() != 3:
            raise ValueError(
                f"projector expects features of shape (B, N, D), got {tuple(features.shape)}"
            )
        n, d = features.shape[1], features.shape[2]
        if d != self.config.vision_dim:
            raise ValueError(
                f"projector was built for vision_dim={self.config.vision_dim}, got features with D={d}"
            )
        if grid is None:
            side = math.isqrt(n)
            if side * side != n:
                raise ValueError(
                    f"received {n} patch tokens, which is not a perfect square; pass grid=(h, w) "
                    f"with h*w == {n} (a CLS token left in gives N = h*w + 1)"
                )
            return side, side
        h, w = parse_grid(grid)
        if h * w != n:
            raise ValueError(f"grid {h}x{w} has {h * w} patches but features have N={n} tokens")
        return h, w

    def output_grid(self, h: int, w: int) -> tuple[int, int] | None:
        """The (h', w') layout of the output tokens, or None when they have no 2D layout."""
        return None

    def pooled_grid(self, h: int, w: int) -> tuple[int, int]:
        """The aspect-preserving output grid of a pooling projector (`PooledConfig`)."""
        check_pool_fits(self.config.family, self.config.num_tokens, h, w)
        return aspect_grid(h, w, self.config.num_tokens)

    def num_output_tokens(self, h: int, w: int) -> int:
        grid = self.output_grid(h, w)
        if grid is None:
            raise TypeError(
                f"{type(self).__name__} has no 2D output grid and must override num_output_tokens"
            )
        return grid[0] * grid[1]

    def patch_mapping(self, h: int, w: int) -> torch.Tensor | None:
        """The fixed (M, N) patch-to-token matrix, or None when the mapping depends on the data."""
        return None

    # -- parameters ------------------------------------------------------------------------
    @property
    def trainable(self) -> int:
        return count_parameters(self).trainable

    @property
    def total(self) -> int:
        return count_parameters(self).total

    def extra_repr(self) -> str:
        return f"spec family={self.config.family!r}, vision_dim={self.config.vision_dim}, llm_dim={self.config.llm_dim}"
