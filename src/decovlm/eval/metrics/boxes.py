"""Boxes for referring-expression comprehension: parse model text, convert coordinate frames, IoU, Acc@0.5.

Frames a normalised box `[x1, y1, x2, y2]` in [0, 1] can be expressed in:
- `naive`: the image stretched to the model's square input (DeCo / Prismatic `resize-naive`):
  normalised by the original width and height.
- `pad`: the image centred on a square canvas of side S = max(W, H) (LLaVA-1.5's `pad`), offsets
  dx = (S - W) // 2, dy = (S - H) // 2; normalised by S.
- `crop`: the centred square of side S = min(W, H) that a shortest-edge resize + centre crop keeps.
Comparing in absolute pixels of the original image after an explicit inverse transform makes the
score independent of the frame the model was trained in.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

Box = tuple[float, float, float, float]
FRAMES = ("naive", "pad", "crop")
BOX_PARSERS = ("lmms-eval", "strict", "lenient")

# lmms-eval's `parse_float_sequence_within`: the first "[a, b, c, d]" of plain decimals (optional
# minus sign, no exponent, digits before any point), no space before a comma.
_LMMS_NUM = r"(-?\d+(?:\.\d+)?)"
_LMMS = re.compile(rf"\[\s*{_LMMS_NUM},\s*{_LMMS_NUM},\s*{_LMMS_NUM},\s*{_LMMS_NUM}\s*\]")
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_STRICT = re.compile(rf"\[\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\]")
_BRACKETED = re.compile(rf"[\[(]\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*[\])]")


def parse_box(text: str | None, mode: str = "lmms-eval") -> Box | None:
    """A normalised `(x1, y1, x2, y2)` from model output, or None when there is none.

    lmms-eval (default): the first `[a, b, c, d]` of plain decimals anywhere in the text, values
        as written (not clipped, not reordered), exactly as lmms-eval's RefCOCO `bbox_rec` tasks
        parse it. Bare numbers are never read ("1 dog at 0.1, 0.1, 0.3, 0.3" has no box), nor are
        exponents ("[1e-1, 0.1, 0.3, 0.3]" has none either). lmms-eval scores a missing box as
        `[0, 0, 0, 0]`, i.e. IoU 0; here it is None, which scores the same.
    strict: the whole answer (stripped, trailing period allowed) must be `[x1, y1, x2, y2]` with
        every value in [0, 1] and x1 <= x2, y1 <= y2 (the form LLaVA-1.5 is trained to emit).
    lenient: the first bracketed 4-tuple (`[...]` or `(...)`, exponents allowed); corners are
        reordered and values clipped to [0, 1]. Values above 1 (pixel or 0-1000 scales) are
        rejected rather than guessed, and numbers outside brackets are never picked up.
    """
    if mode not in BOX_PARSERS:
        raise ValueError(f"unknown box parser {mode!r}; known: {', '.join(BOX_PARSERS)}")
    if text is None:
        return None
    text = str(text).strip()
    if mode == "lmms-eval":
        m = _LMMS.search(text)
        return tuple(float(v) for v in m.groups()) if m else None  # type: ignore[return-value]
    if mode == "strict":
        m = _STRICT.fullmatch(text.rstrip("."))
        if not m:
            return None
        x1, y1, x2, y2 = (float(v) for v in m.groups())
        if not all(0.0 <= v <= 1.0 for v in (x1, y1, x2, y2)) or x1 > x2 or y1 > y2:
            return None
        return (x1, y1, x2, y2)
    m = _BRACKETED.search(text)
    if not m:
        return None
    values = [float(v) for v in m.groups()]
    if any(v > 1.0 for v in values):
        return None
    x1, y1, x2, y2 = (min(max(v, 0.0), 1.0) for v in values)
    return (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))


def format_box(box: Sequence[float], decimals: int = 2) -> str:
    """`[x1, y1, x2, y2]` with fixed decimals, the way LLaVA-1.5's training answers are written."""
    return "[" + ", ".join(f"{v:.{decimals}f}" for v in box) + "]"


def _frame(frame: str, width: float, height: float) -> tuple[float, float, float]:
    """(side, x offset, y offset) of the frame's square in original pixels: x_orig = xs * side + off."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if frame == "naive":
        return 0.0, 0.0, 0.0  # unused: handled per axis
    if frame == "pad":
        side = max(width, height)
        return side, -((side - width) // 2), -((side - height) // 2)
    if frame == "crop":
        side = min(width, height)
        return side, (width - side) // 2, (height - side) // 2
    raise ValueError(f"unknown box frame {frame!r}; known: {', '.join(FRAMES)}")


def to_pixels(
    box: Sequence[float], frame: str, width: float, height: float, clip: bool = True
) -> Box:
    """Normalised box in `frame` -> absolute pixel box of the original image, clipped to the image
    unless `clip` is False (lmms-eval compares boxes as written)."""
    side, ox, oy = _frame(frame, width, height)
    x1, y1, x2, y2 = (float(v) for v in box)
    if frame == "naive":
        px = (x1 * width, y1 * height, x2 * width, y2 * height)
    else:
        px = (x1 * side + ox, y1 * side + oy, x2 * side + ox, y2 * side + oy)
    if not clip:
        return px
    return (
        min(max(px[0], 0.0), width),
        min(max(px[1], 0.0), height),
        min(max(px[2], 0.0), width),
        min(max(px[3], 0.0), height),
    )


def from_pixels(box: Sequence[float], frame: str, width: float, height: float) -> Box:
    """Absolute pixel box of the original image -> normalised box in `frame` (inverse of `to_pixels`)."""
    side, ox, oy = _frame(frame, width, height)
    x1, y1, x2, y2 = (float(v) for v in box)
    if frame == "naive":
        return (x1 / width, y1 / height, x2 / width, y2 / height)
    return ((x1 - ox) / side, (y1 - oy) / side, (x2 - ox) / side, (y2 - oy) / side)


def xywh_to_xyxy(box: Sequence[float]) -> Box:
    """COCO `[x, y, w, h]` -> `(x1, y1, x2, y2)`."""
    x, y, w, h = (float(v) for v in box)
    return (x, y, x + w, y + h)


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two `(x1, y1, x2, y2)` boxes; 0.0 when the union has no area.

    Equals lmms-eval's `compute_iou` wherever that is defined: a box inverted on an axis has no
    intersection with anything, so its (signed there, clamped here) area never changes the result.
    """
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def rec_accuracy(ious: Sequence[float | None], threshold: float = 0.5) -> float:
    """Acc@threshold in [0, 1]: share of IoUs >= threshold; None (no parseable box) counts as a miss."""
    if not ious:
        return 0.0
    return sum(1 for v in ious if v is not None and v >= threshold) / len(ious)
