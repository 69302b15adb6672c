"""Pictures of relevance maps (matplotlib, headless): per-word heat-maps and the Query-to-Patch grid.

A patch-grid map is min-max normalised, upsampled bilinearly to the image and overlaid with the
jet colormap, as the GAE notebooks do. The image is shown as the model saw it (the processor's
naive / pad / crop geometry at its input resolution), so the grid lines up with the picture.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

from decovlm.utils.io import atomic_path  # noqa: E402

MAX_QUERY_PANELS = 64


def model_view(processor, image: Image.Image) -> Image.Image:
    """The image with the processor's geometry applied, at the model's input size (no normalisation)."""
    h, w = processor.image_size
    mode = getattr(processor, "image_resize_mode", "naive")
    iw, ih = image.size
    if mode == "pad" and iw != ih:
        side = max(iw, ih)
        canvas = Image.new("RGB", (side, side), (128, 128, 128))
        canvas.paste(image, ((side - iw) // 2, (side - ih) // 2))
        image = canvas
    elif mode == "crop" and iw != ih:
        side = min(iw, ih)
        left, top = (iw - side) // 2, (ih - side) // 2
        image = image.crop((left, top, left + side, top + side))
    return image.resize((w, h), Image.BICUBIC)


def upsample(grid_map: torch.Tensor | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) map -> (H, W) min-max normalised to [0, 1] (a constant map gives zeros)."""
    t = torch.as_tensor(np.asarray(grid_map, dtype=np.float32))[None, None]
    up = F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()
    lo, hi = float(up.min()), float(up.max())
    return (up - lo) / (hi - lo) if hi > lo else np.zeros_like(up)


def overlay(ax, image: Image.Image, grid_map, title: str = "") -> None:
    arr = np.asarray(image)
    ax.imshow(arr)
    ax.imshow(upsample(grid_map, arr.shape[:2]), cmap="jet", alpha=0.5, vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "tok"


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def draw_word(explanation, index: int, image: Image.Image, path: Path) -> Path:
    """One word: the image, its Text-to-Query map (on the token grid) and Text-to-Patch overlay."""
    word = explanation.words[index].text
    t2q = explanation.word_text_to_query[index].numpy()
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.3))
    axes[0].imshow(np.asarray(image))
    axes[0].set_title("image", fontsize=9)
    axes[0].axis("off")
    if explanation.query_grid is not None:
        axes[1].imshow(t2q.reshape(explanation.query_grid), cmap="jet")
    else:
        axes[1].bar(np.arange(t2q.size), t2q)
    axes[1].set_title(f"Text-to-Query ({t2q.size} tokens)", fontsize=9)
    axes[1].axis("off" if explanation.query_grid is not None else "on")
    overlay(axes[2], image, explanation.word_text_to_patch[index], "Text-to-Patch")
    fig.suptitle(f"'{word}'  [{explanation.projector}]", fontsize=11)
    return _save(fig, path)


def draw_query_grid(explanation, image: Image.Image, path: Path) -> Path:
    """Query-to-Patch: one small overlay per visual token (the most relevant 64 when M > 64)."""
    q2p = explanation.mean_query_to_patch()
    m = q2p.shape[0]
    order = torch.arange(m)
    if m > MAX_QUERY_PANELS:
        order = (
            explanation.text_to_query.sum(0)
            .argsort(descending=True)[:MAX_QUERY_PANELS]
            .sort()
            .values
        )
    cols = math.ceil(math.sqrt(len(order)))
    rows = math.ceil(len(order) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.4 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, q in zip(axes.flat, order.tolist(), strict=False):
        overlay(ax, image, q2p[q].reshape(explanation.patch_grid), f"q{q}")
    shown = f", top {len(order)} of {m}" if m > len(order) else ""
    fig.suptitle(
        f"Query-to-Patch ({explanation.method}{shown}) [{explanation.projector}]", fontsize=10
    )
    return _save(fig, path)


def draw_all(explanation, image: Image.Image, out_dir: Path) -> list[Path]:
    """A PNG per word plus the Query-to-Patch grid; returns the written paths."""
    out_dir = Path(out_dir)
    paths = [
        draw_word(explanation, i, image, out_dir / f"word_{i:02d}_{safe_name(w.text)}.png")
        for i, w in enumerate(explanation.words)
    ]
    paths.append(draw_query_grid(explanation, image, out_dir / "query_to_patch.png"))
    return paths
