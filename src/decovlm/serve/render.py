"""What the explorer page shows for an explanation: clickable words, overlays, gallery, downloads.

Pure functions of an `Explanation` (from `decovlm.interpret`) and the image as the model saw it,
so they are tested without a browser. A patch-grid map is drawn as the saved figures are
(`decovlm.interpret.draw`): the perceptually uniform colormap over a grey copy of the image, on the
scale 0..vmax, where vmax is the map's own maximum or one shared by the maps being compared.
A map flagged unreliable (`Explanation.unreliable`) is drawn in grey under dark stripes with
"NOT EVIDENCE" on it, and its reason is in the numbers beside it. A Q-Former / resampler word is
shown with GAE and the attention rollout side by side (`word_overlay`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

DISPLAY_SIZE = 384  # overlays are shown at least this large (tiny models see 32 px images)
THUMB_SIZE = 160
KEPT_SIDE = 1024  # uploads are kept downscaled to this (a 12000 px upload would hold 430 MB)
GALLERY_QUERIES = 12
WORD, SELECTED = "word", "selected"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def open_image(path: str | os.PathLike, name: str | None = None) -> Image.Image:
    """The image as an RGB copy at most KEPT_SIDE px on its longer side (the model sees 336 px;
    only the copy is kept in the session), or ValueError naming the file when it cannot be used.

    Reading goes through the shared loader (`decovlm.utils.images`): same pixel limit as training
    and eval, checked from the header before decoding."""
    from decovlm.errors import MissingFileError
    from decovlm.utils.images import ImageError, downscale, load_image

    label = name or Path(path).name
    try:
        img = load_image(path, name=repr(label))
    except MissingFileError:
        raise ValueError(f"the uploaded file {label!r} is gone; upload it again") from None
    except ImageError as err:
        raise ValueError(str(err)) from None
    return downscale(img, KEPT_SIDE)


def display_view(view: Image.Image, size: int = DISPLAY_SIZE) -> Image.Image:
    """The model's view enlarged (never shrunk) so patch-grid maps are visible."""
    w, h = view.size
    scale = max(1.0, size / max(w, h))
    return view.resize(
        (round(w * scale), round(h * scale)), Image.NEAREST if scale >= 4 else Image.BICUBIC
    )


def shared_scale(maps) -> float:
    """One top of the colour scale for maps shown side by side (their largest value)."""
    from decovlm.interpret.draw import shared_max

    return shared_max(maps)


def overlay_image(
    view: Image.Image,
    grid_map,
    size: int = DISPLAY_SIZE,
    alpha: float = 0.6,
    vmax: float | None = None,
    upsampling: str = "bilinear",
    flag: str | None = None,
) -> Image.Image:
    """The map (patch grid) on 0..vmax (default: its own max), upsampled, over the grey image.

    `flag` (the reason a map is unreliable) draws it in grey only, under dark diagonal stripes
    and a "NOT EVIDENCE" banner: nothing in it reads as a relevance colour.
    """
    from matplotlib import colormaps

    from decovlm.interpret.draw import CMAP, FLAG_CMAP, FLAG_LABEL, grey, shared_max, upsample

    base = display_view(view, size)
    arr = grey(base).astype(np.float32) / 255.0
    values = np.clip(np.asarray(grid_map, dtype=np.float32), 0, None)
    top = shared_max([values]) if vmax is None else vmax
    up = upsample(values, arr.shape[:2], upsampling, normalise=False)
    coloured = colormaps[FLAG_CMAP if flag else CMAP](np.clip(up / top, 0, 1))[..., :3]
    mixed = (1.0 - alpha) * arr + alpha * coloured
    if flag:
        rows, cols = np.indices(mixed.shape[:2])
        stripes = ((rows + cols) // 6) % 3 == 0  # 45-degree hatching
        mixed[stripes] *= 0.35
    out = Image.fromarray(np.clip(mixed * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if flag:
        _banner(out, FLAG_LABEL)
    return out


def _banner(image: Image.Image, text: str) -> None:
    """White text on a black box at the bottom-left (grey levels only; the page floats its label
    over the top-left)."""
    from PIL import ImageDraw

    draw = ImageDraw.Draw(image)
    _, top, _, bottom = draw.textbbox((0, 0), text)
    at = (6, image.height - (bottom - top) - 8)
    left, top, right, bottom = draw.textbbox(at, text)
    draw.rectangle((left - 4, top - 3, right + 4, bottom + 3), fill=(0, 0, 0))
    draw.text(at, text, fill=(255, 255, 255))


def shown_methods(explanation) -> list[str]:
    """The Query-to-Patch methods the page shows for a word: the projector's own, and the
    attention rollout beside GAE (the gradient-free view its GAE maps are checked against)."""
    return [m for m in explanation.methods if m == explanation.method or m == "attention"]


def shown_maps(explanation, index: int) -> list:
    """The maps `word_overlay` draws for word `index` (for a shared scale across columns)."""
    return [explanation.word_map(index, m).numpy() for m in shown_methods(explanation)]


def word_overlay(
    explanation, index: int, view: Image.Image, vmax: float | None = None, size: int = DISPLAY_SIZE
) -> Image.Image:
    """Word `index`'s Text-to-Patch overlay, or, beside GAE, GAE | attention side by side on one
    scale, each panel captioned with its method (and greyed, striped and marked when flagged)."""
    from PIL import ImageDraw

    methods = shown_methods(explanation)
    maps = shown_maps(explanation, index)
    if vmax is None and len(maps) > 1:
        vmax = shared_scale(maps)
    panels = [
        overlay_image(view, grid_map, size, vmax=vmax, flag=explanation.verdicts(m)[index].reason)
        for m, grid_map in zip(methods, maps, strict=True)
    ]
    if len(panels) == 1:
        return panels[0]
    gap, caption = 8, 18
    width = sum(p.width for p in panels) + gap * (len(panels) - 1)
    sheet = Image.new("RGB", (width, max(p.height for p in panels) + caption), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    x, bottom = 0, max(p.height for p in panels)
    for method, panel in zip(methods, panels, strict=True):
        sheet.paste(panel, (x, 0))
        own = " (own)" if method == explanation.method else ""
        # captions under the panels: the page floats its label over the image's top-left
        draw.text((x + 4, bottom + 3), f"{method}{own}", fill=(0, 0, 0))
        x += panel.width + gap
    return sheet


def map_numbers(explanation, index: int, vmax: float | None = None) -> str:
    """Markdown beside a word's map: peak patch, concentration, Query-to-Patch mass and kept share,
    and - for a map that is not evidence - the reason, per method shown (`shown_methods`).

    No object mask is known for an uploaded image, so "localization" here is where the map peaks
    and how concentrated it is (`decovlm.interpret.scores.concentration`).
    """
    from decovlm.interpret.scores import concentration

    lines = []
    methods = shown_methods(explanation)
    for method in methods:
        grid_map = explanation.word_map(index, method).float()
        h, w = grid_map.shape
        flat = grid_map.reshape(-1)
        peak = int(flat.argmax())
        conc = concentration(grid_map)
        total = float(flat.clamp(min=0).sum())
        share = float(flat[peak]) / total if total > 0 else 0.0
        mass = float(explanation.method_word_mass(method)[index])
        kept = explanation.method_word_kept(method)
        label = f"**{method}**: " if len(methods) > 1 else ""
        lines.append(
            f"{label}**peak** patch (row {peak // w}, col {peak % w}) holds {share:.0%} of the map · "
            f"**effective patches** {conc['effective_patches']:.1f} of {h * w} · "
            f"**k50** {conc['k50']} · **total** {total:.2e}"
            + (f" · scale 0–{vmax:.2e}" if vmax is not None and not lines else "")
        )
        numbers = f"Query-to-Patch ({method}) mass {mass:.1e}"
        if kept is not None:
            numbers += f", kept share {float(kept[index]):.0%}"
        reason = explanation.verdicts(method)[index].reason
        if reason:
            numbers += (
                f" — ⚠️ **not evidence** of where the model looked ({reason}); drawn grey and "
                "striped"
            )
        lines.append(numbers)
    return "  \n".join(lines)


def word_spans(
    answer: str, words, selected: int | None = None
) -> tuple[list[tuple[str, str | None]], list]:
    """HighlightedText value for the answer (each word a clickable span) and span index -> word index."""
    spans: list[tuple[str, str | None]] = []
    owner: list[int | None] = []
    pos = 0
    for k, word in enumerate(words):
        j = answer.find(word.text, pos)
        # Words come from this very text, so j >= 0; if not, the word is still shown and clickable.
        gap = answer[pos:j] if j >= 0 else " "
        if gap:
            spans.append((gap, None))
            owner.append(None)
        spans.append((word.text, SELECTED if k == selected else WORD))
        owner.append(k)
        if j >= 0:
            pos = j + len(word.text)
    if pos < len(answer):
        spans.append((answer[pos:], None))
        owner.append(None)
    return spans, owner


def query_gallery(explanation, index: int, view: Image.Image, top: int = GALLERY_QUERIES) -> list:
    """Query-to-Patch of the visual tokens most relevant to word `index`: [(overlay, caption)].

    The caption gives each token's share of the word's Text-to-Query relevance; a token whose row
    kept less than half of its signed relevance is drawn as not evidence.
    """
    from decovlm.interpret.reliability import NET_NEGATIVE

    t2q = explanation.word_text_to_query[index].float()
    q2p = explanation.word_query_map(index).float()
    total = float(t2q.clamp(min=0).sum())
    order = t2q.argsort(descending=True)[: min(top, t2q.numel())].tolist()
    items = []
    kept = explanation.query_kept(index)
    for q in order:
        share = float(t2q[q]) / total if total > 0 else 0.0
        flag = None
        if kept is not None and float(kept[q]) < NET_NEGATIVE:
            flag = f"the positive part keeps {float(kept[q]):.0%} of this row"
        thumb = overlay_image(view, q2p[q].reshape(explanation.patch_grid), THUMB_SIZE, flag=flag)
        items.append((thumb, f"q{q}: {share:.0%}" + (" (not evidence)" if flag else "")))
    return items


def gallery_label(explanation, index: int) -> str:
    # short: Gradio floats the label over the gallery's first row
    return f"Query-to-Patch of '{explanation.words[index].text}' ({explanation.method})"


def write_maps(explanation, out_dir: str | os.PathLike) -> list[Path]:
    """maps.npz (every map, per token and per word) and summary.json of one explanation."""
    from decovlm.utils.io import atomic_path, atomic_write_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "maps.npz") as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **explanation.arrays())
    atomic_write_json(out_dir / "summary.json", explanation.summary())
    return [out_dir / "maps.npz", out_dir / "summary.json"]


def write_word_files(
    explanation, index: int, view: Image.Image, overlay: Image.Image, out_dir
) -> list[Path]:
    """The clicked word's Text-to-Patch overlay (as shown) and its figure with Text-to-Query."""
    from decovlm.interpret.draw import draw_word, safe_name
    from decovlm.utils.io import atomic_path

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{index:02d}_{safe_name(explanation.words[index].text)}"
    png = out_dir / f"text_to_patch_{stem}.png"
    with atomic_path(png) as tmp:
        overlay.save(tmp, format="PNG")
    figure = draw_word(explanation, index, view, out_dir / f"word_{stem}.png")
    return [png, figure]
