"""Pictures of relevance maps (matplotlib, headless): per-word heat-maps and the Query-to-Patch grid.

Reading rules, so that pictures can be compared:
- a perceptually uniform colormap (`CMAP`, viridis: lightness grows with relevance, readable in
  grey and by colour-blind readers) over a grey-scale copy of the image, so the picture's own
  reds and darks do not pass for relevance;
- **one scale per figure**: every panel of a figure shares 0..max of the panels it compares (the
  Text-to-Patch maps of a word across projectors or methods; the queries of a Query-to-Patch
  grid), with a colour bar, instead of stretching each panel to its own min-max;
- patch-accurate upsampling on request (`upsampling="nearest"`: each patch a flat square)
  besides the smoother bilinear;
- a map flagged unreliable (`Explanation.unreliable`, `decovlm.interpret.reliability`) is not
  drawn as evidence: grey instead of the colormap, hatched, with "NOT EVIDENCE" and the reason
  on the panel.
The image is shown as the model saw it (the processor's naive / pad / crop geometry at its input
resolution), so the grid lines up with the picture.
"""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from PIL import Image  # noqa: E402

from decovlm.utils.io import atomic_path  # noqa: E402

MAX_QUERY_PANELS = 64
CMAP = "viridis"  # perceptually uniform; magma and cividis work too
UPSAMPLING = ("bilinear", "nearest")
# An unreliable map: grey (no colour to read as relevance) under a hatch, with its reason.
FLAG_CMAP = "gray"
FLAG_COLOR = "#b91c1c"
FLAG_HATCH = "///"
FLAG_LABEL = "NOT EVIDENCE"


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


def upsample(
    grid_map: torch.Tensor | np.ndarray,
    size: tuple[int, int],
    mode: str = "bilinear",
    normalise: bool = True,
) -> np.ndarray:
    """(h, w) map -> (H, W), min-max normalised to [0, 1] unless `normalise=False`.

    `mode` is "bilinear" (smooth) or "nearest" (patch-accurate: every patch a flat block). A
    constant map normalises to zeros.
    """
    if mode not in UPSAMPLING:
        raise ValueError(f"upsampling must be one of {UPSAMPLING}, got {mode!r}")
    t = torch.as_tensor(np.asarray(grid_map, dtype=np.float32))[None, None]
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    up = F.interpolate(t, size=size, mode=mode, **kwargs)[0, 0].numpy()
    if not normalise:
        return up
    lo, hi = float(up.min()), float(up.max())
    return (up - lo) / (hi - lo) if hi > lo else np.zeros_like(up)


def shared_max(maps) -> float:
    """The top of one colour scale for several maps: their largest value (1e-12 at least)."""
    top = max((float(np.max(np.asarray(m, dtype=np.float64))) for m in maps), default=0.0)
    return max(top, 1e-12)


def grey(image: Image.Image) -> np.ndarray:
    """The image in grey (RGB array): a backdrop that no colour of the map can be confused with."""
    return np.asarray(image.convert("L").convert("RGB"))


def overlay(
    ax,
    image: Image.Image,
    grid_map,
    title: str = "",
    vmax: float | None = None,
    upsampling: str = "bilinear",
    cmap: str | None = None,
    alpha: float = 0.65,
    flag: str | None = None,
):
    """Draw the map over the (grey) image on `ax`, on the scale 0..vmax; returns the heat image.

    `vmax=None` scales this map alone (0..its max); pass `shared_max(...)` of every map of a
    figure to make its panels comparable. `flag` (a reason) draws an unreliable map so that it
    does not read as evidence (`mark_unreliable`).
    """
    if flag:
        cmap = FLAG_CMAP
    arr = grey(image)
    values = np.clip(np.asarray(grid_map, dtype=np.float32), 0, None)
    top = shared_max([values]) if vmax is None else vmax
    ax.imshow(arr)
    heat = ax.imshow(
        upsample(values, arr.shape[:2], upsampling, normalise=False),
        cmap=cmap or CMAP,
        alpha=alpha,
        vmin=0,
        vmax=top,
    )
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    if flag:
        mark_unreliable(ax, flag)
    return heat


def mark_unreliable(ax, reason: str, width: int = 32) -> None:
    """Hatch the whole panel and write "NOT EVIDENCE" and the reason across it."""
    from matplotlib.patches import Rectangle

    ax.add_patch(
        Rectangle(
            (0, 0), 1, 1, transform=ax.transAxes, fill=False, hatch=FLAG_HATCH,
            edgecolor=FLAG_COLOR, linewidth=0, alpha=0.7, label="unreliable",
        )
    )  # fmt: skip
    ax.text(
        0.5, 0.5, f"{FLAG_LABEL}\n" + textwrap.fill(reason, width), transform=ax.transAxes,
        ha="center", va="center", fontsize=6, color=FLAG_COLOR,
        bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": FLAG_COLOR, "boxstyle": "round"},
    )  # fmt: skip
    ax.title.set_color(FLAG_COLOR)


def colorbar(fig, heat, axes, label: str = "relevance"):
    """A slim colour bar for `heat` beside `axes` (one or several)."""
    bar = fig.colorbar(heat, ax=axes, fraction=0.046, pad=0.03)
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=7)
    bar.formatter.set_powerlimits((-2, 3))
    bar.update_ticks()
    return bar


def unreliable_reason(explanation, index: int, method: str | None = None) -> str | None:
    """Why word `index`'s map (with `method`, default the projector's own) is not evidence, or None."""
    return explanation.verdicts(method or explanation.method)[index].reason


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "tok"


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def draw_text_to_query(ax, fig, explanation, t2q: np.ndarray) -> None:
    """Text-to-Query: a heat-map on the token grid, or bars over integer token indices."""
    if explanation.query_grid is not None:
        heat = ax.imshow(t2q.reshape(explanation.query_grid), cmap=CMAP, vmin=0)
        ax.set_xticks([])
        ax.set_yticks([])
        colorbar(fig, heat, ax, "Text-to-Query")
    else:
        ax.bar(np.arange(t2q.size), t2q, color=plt.get_cmap(CMAP)(0.35), width=0.8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(-0.6, t2q.size - 0.4)
        ax.set_xlabel("visual token (query) index", fontsize=8)
        ax.set_ylabel("Text-to-Query relevance", fontsize=8)
        ax.tick_params(labelsize=7)
    ax.set_title(f"Text-to-Query ({t2q.size} tokens)", fontsize=9)


def draw_word(
    explanation, index: int, image: Image.Image, path: Path, upsampling: str = "bilinear"
) -> Path:
    """One word: the image, its Text-to-Query map and its Text-to-Patch overlay per method.

    Every Text-to-Patch panel (the projector's own method and any alternative) shares one scale.
    """
    word = explanation.words[index].text
    t2q = explanation.word_text_to_query[index].numpy()
    methods = explanation.methods
    maps = [explanation.word_map(index, m).numpy() for m in methods]
    top = shared_max(maps)
    fig, axes = plt.subplots(
        1, 2 + len(methods), figsize=(3.3 * (2 + len(methods)), 3.4), squeeze=False
    )
    axes = axes[0]
    axes[0].imshow(np.asarray(image))
    axes[0].set_title("image", fontsize=9)
    axes[0].axis("off")
    draw_text_to_query(axes[1], fig, explanation, t2q)
    heats = []
    for ax, method, grid_map in zip(axes[2:], methods, maps, strict=True):
        name = "Text-to-Patch" if len(methods) == 1 else f"Text-to-Patch ({method})"
        flag = unreliable_reason(explanation, index, method)
        heat = overlay(ax, image, grid_map, name, vmax=top, upsampling=upsampling, flag=flag)
        heats.append((flag, heat))
    # the colour bar reads the colormap of a map drawn as evidence (a flagged one is grey)
    heat = next((h for f, h in heats if not f), heats[-1][1])
    colorbar(fig, heat, list(axes[2:]), "Text-to-Patch relevance")
    fig.suptitle(f"'{word}'  [{explanation.projector}]", fontsize=11)
    return _save(fig, path)


def draw_query_grid(
    explanation, image: Image.Image, path: Path, upsampling: str = "bilinear"
) -> Path:
    """Query-to-Patch: one overlay per visual token (the most relevant 64 when M > 64), one scale.

    Each panel is the token's normalised Query-to-Patch row; its title gives the row's mass before
    normalising. A token whose row kept less than half of its signed relevance (or, with
    `vanish_tol`, whose mass is below it) is drawn as not evidence.
    """
    from decovlm.interpret.reliability import NET_NEGATIVE

    q2p = explanation.mean_query_to_patch()
    m = q2p.shape[0]
    mass = explanation.query_to_patch_mass
    if mass is not None and mass.dim() == 2:
        mass = mass.mean(dim=0)
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
    fig, axes = plt.subplots(
        rows, cols, figsize=(1.5 * cols + 0.8, 1.5 * rows + 0.5), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    top = shared_max([q2p[q] for q in order.tolist()])
    kept = explanation.query_kept()
    tol = explanation.vanish_tol
    heats = []
    for ax, q in zip(axes.flat, order.tolist(), strict=False):
        title = f"q{q}"
        if mass is not None:
            title += f" ({float(mass[q]):.0e})"
        flag = None
        if kept is not None and float(kept[q]) < NET_NEGATIVE:
            flag = f"the positive part keeps {float(kept[q]):.0%} of this row"
        elif tol is not None and mass is not None and float(mass[q]) < tol:
            flag = f"mass below --vanish-tol {tol:g}"
        grid_map = q2p[q].reshape(explanation.patch_grid)
        heats.append((flag, overlay(ax, image, grid_map, title, top, upsampling, flag=flag)))
    heat = next((h for f, h in heats if not f), heats[-1][1])
    colorbar(fig, heat, list(axes.flat), "Query-to-Patch (row share)")
    shown = f", top {len(order)} of {m}" if m > len(order) else ""
    massnote = ", title: row mass" if mass is not None else ""
    fig.suptitle(
        f"Query-to-Patch ({explanation.method}{shown}{massnote}) [{explanation.projector}]",
        fontsize=10,
    )
    return _save(fig, path)


def draw_words_across(
    explained: list[tuple[str, object, Image.Image]],
    path: Path,
    title: str = "",
    upsampling: str = "bilinear",
    method: str | None = None,
) -> Path:
    """The paper's figure: a row per projector, a column per word of the first answer.

    `explained` is [(label, explanation, model view)]. Each word's column shares one scale across
    projectors (with its colour bar), so a paler map is less relevance, not a different
    stretching; a word missing from a row's answer leaves that panel empty.
    """
    if not explained:
        raise ValueError("draw_words_across needs at least one explanation")
    words = [w.text for w in explained[0][1].words]
    cols = 1 + len(words)
    fig, axes = plt.subplots(
        len(explained), cols, figsize=(2.1 * cols, 2.1 * len(explained) + 0.6), squeeze=False
    )
    for row, (label, expl, view) in enumerate(explained):
        axes[row, 0].imshow(np.asarray(view))
        axes[row, 0].set_title(f"{label}\n({expl.text_to_query.shape[-1]} tokens)", fontsize=8)
        axes[row, 0].axis("off")
    for col, word in enumerate(words, start=1):
        panels = []
        for row, (_, expl, _) in enumerate(explained):
            try:
                index = expl.word_index(word) if expl is not explained[0][1] else col - 1
            except ValueError:
                axes[row, col].axis("off")
                continue
            panels.append((row, expl, index))
        chosen = [(expl, i, method or expl.method) for _, expl, i in panels]
        top = shared_max(
            [e.word_map(i, m if m in e.methods else None).numpy() for e, i, m in chosen]
        )
        heat = None
        for row, expl, index in panels:
            m = method if method in expl.methods else None
            flag = unreliable_reason(expl, index, m)
            drawn = overlay(
                axes[row, col],
                explained[row][2],
                expl.word_map(index, m),
                f"'{word}'",
                vmax=top,
                upsampling=upsampling,
                flag=flag,
            )
            heat = heat if flag and heat is not None else drawn
        if heat is not None:
            colorbar(fig, heat, [axes[r, col] for r, _, _ in panels], "")
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def draw_all(
    explanation, image: Image.Image, out_dir: Path, upsampling: str = "bilinear"
) -> list[Path]:
    """A PNG per word plus the Query-to-Patch grid; returns the written paths."""
    out_dir = Path(out_dir)
    paths = [
        draw_word(
            explanation, i, image, out_dir / f"word_{i:02d}_{safe_name(w.text)}.png", upsampling
        )
        for i, w in enumerate(explanation.words)
    ]
    paths.append(draw_query_grid(explanation, image, out_dir / "query_to_patch.png", upsampling))
    return paths
