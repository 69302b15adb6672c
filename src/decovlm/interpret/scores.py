"""Numbers for relevance maps: localisation against an object mask, and concentration.

The paper shows pictures only; these scores turn a Text-to-Patch map (h, w) into numbers:
- pointing game (Zhang et al. 2018): does the map's maximum fall on the object?
- energy-based pointing game (Wang et al. 2020, = relevance mass accuracy): share of the map's
  mass that lies on the object, with the mask as the covered fraction of each patch;
- concentration (no ground truth): entropy of the normalised map, the effective number of patches
  exp(H), and k50 / k90, the fewest patches holding 50% / 90% of the mass.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def load_mask(path: str | Path) -> np.ndarray:
    """A binary mask PNG as a float array (H, W) in {0, 1}: any nonzero pixel is the object."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask file not found: {path}")
    from decovlm.utils.images import load_image

    arr = np.asarray(load_image(path).convert("L"), dtype=np.float32)
    return (arr > 0).astype(np.float32)


def box_to_mask(box: list[float], size: tuple[int, int]) -> np.ndarray:
    """A pixel box [x0, y0, x1, y1] (x1, y1 exclusive) on an image of size (width, height) as a mask."""
    if len(box) != 4:
        raise ValueError(f"box must be [x0, y0, x1, y1], got {box!r}")
    width, height = size
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"box {box!r} is empty (need x1 > x0 and y1 > y0)")
    mask = np.zeros((height, width), dtype=np.float32)
    mask[
        max(0, math.floor(y0)) : min(height, math.ceil(y1)),
        max(0, math.floor(x0)) : min(width, math.ceil(x1)),
    ] = 1
    return mask


def align_mask(mask: np.ndarray, resize_mode: str = "naive") -> np.ndarray:
    """Apply the processor's geometry (naive resize / pad to square / centre crop) to a mask.

    "naive" stretches the image to the square input, which the grid pooling below does by itself.
    "pad" pads to a centred square (the padding is not object); "crop" keeps the centred square.
    """
    h, w = mask.shape
    if resize_mode == "naive" or h == w:
        return mask
    side = max(h, w) if resize_mode == "pad" else min(h, w)
    if resize_mode == "pad":
        out = np.zeros((side, side), dtype=mask.dtype)
        top, left = (side - h) // 2, (side - w) // 2
        out[top : top + h, left : left + w] = mask
        return out
    if resize_mode == "crop":
        top, left = (h - side) // 2, (w - side) // 2
        return mask[top : top + side, left : left + side]
    raise ValueError(f"unknown resize mode {resize_mode!r}; expected naive, pad or crop")


def mask_to_grid(mask: np.ndarray, grid: tuple[int, int], resize_mode: str = "naive") -> np.ndarray:
    """Fraction of each patch of the (h, w) grid covered by the mask (area average of the pixels)."""
    mask = align_mask(np.asarray(mask, dtype=np.float32), resize_mode)
    t = torch.from_numpy(np.ascontiguousarray(mask))[None, None]
    # Area pooling is the exact covered fraction when the image side is a multiple of the grid side,
    # and the adaptive-window approximation of it otherwise.
    return F.adaptive_avg_pool2d(t, grid)[0, 0].numpy()


def _as_map(relevance) -> np.ndarray:
    a = (
        relevance.detach().float().cpu().numpy()
        if isinstance(relevance, torch.Tensor)
        else np.asarray(relevance)
    )
    a = np.clip(a.astype(np.float64), 0, None)  # relevance is non-negative by construction
    return a


def pointing_game(relevance, mask_grid: np.ndarray, min_cover: float = 0.0) -> float:
    """1.0 if a maximal patch covers more than `min_cover` of the object, else 0.0; NaN for an empty mask.

    An all-zero map has no maximum worth pointing at and counts as a miss.
    """
    a, s = _as_map(relevance), np.asarray(mask_grid)
    if a.shape != s.shape:
        raise ValueError(f"map shape {a.shape} and mask grid shape {s.shape} differ")
    if not (s > min_cover).any():
        return float("nan")
    if a.max() <= 0:
        return 0.0
    return float((s[a == a.max()] > min_cover).any())


def energy_pointing_game(relevance, mask_grid: np.ndarray) -> float:
    """Share of the map's mass on the object: sum(a * s) / sum(a) with s the covered fraction."""
    a, s = _as_map(relevance), np.asarray(mask_grid, dtype=np.float64)
    if a.shape != s.shape:
        raise ValueError(f"map shape {a.shape} and mask grid shape {s.shape} differ")
    total = a.sum()
    if total <= 0 or s.sum() <= 0:
        return float("nan")
    return float((a * s).sum() / total)


def concentration(relevance) -> dict[str, float]:
    """Entropy (nats) of the normalised map, exp(entropy), and the patch counts holding 50% / 90%."""
    a = _as_map(relevance).reshape(-1)
    total = a.sum()
    if total <= 0:
        nan = float("nan")
        return {"entropy": nan, "effective_patches": nan, "k50": nan, "k90": nan}
    p = a / total
    nz = p[p > 0]
    entropy = float(-(nz * np.log(nz)).sum())
    cum = np.cumsum(np.sort(p)[::-1])
    # Small tolerance so that a mass of exactly 0.5 (e.g. two equal patches) is reached at k = 1.
    k50 = int(np.searchsorted(cum, 0.5 - 1e-9) + 1)
    k90 = int(np.searchsorted(cum, 0.9 - 1e-9) + 1)
    return {
        "entropy": entropy,
        "effective_patches": float(math.exp(entropy)),
        "k50": k50,
        "k90": k90,
    }


def score_map(relevance, mask_grid: np.ndarray) -> dict[str, float]:
    """All scores of one map against one object (the mask grid as the covered fraction per patch)."""
    s = np.asarray(mask_grid, dtype=np.float64)
    return {
        "pointing": pointing_game(relevance, s),
        "energy": energy_pointing_game(relevance, s),
        # The energy a uniform map would get: the bar the energy score has to beat.
        "mask_area": float(s.sum() / s.size),
        **concentration(relevance),
    }


def summarise(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean of every score over cases, ignoring NaNs, with the number of cases scored."""
    keys = ["pointing", "energy", "mask_area", "entropy", "effective_patches", "k50", "k90"]
    out: dict[str, float] = {"cases": len(rows)}
    for key in keys:
        vals = np.array([r[key] for r in rows if key in r], dtype=np.float64)
        vals = vals[~np.isnan(vals)]
        out[key] = float(vals.mean()) if vals.size else float("nan")
    # Share of the maps flagged unreliable (rows that say; "vanished" is the issue-26 name).
    flags = [
        bool(r.get("unreliable", r.get("vanished")))
        for r in rows
        if "unreliable" in r or "vanished" in r
    ]
    out["unreliable_share"] = float(np.mean(flags)) if flags else float("nan")
    out["vanished_share"] = out["unreliable_share"]
    return out
