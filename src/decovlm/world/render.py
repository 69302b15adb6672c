"""Drawing scenes with Pillow: the image, each object's exact visible mask and its box.

Shapes are rasterised without anti-aliasing into a label map (later objects overwrite earlier
ones), and the image paints each object's *visible* pixels in its exact colour over a textured
grey background. So the masks are the ground truth by construction: every masked pixel has the
object's colour, and the box is the mask's bounding box. Boxes are pixel edges
`(x0, y0, x1, y1)` with x1/y1 exclusive, so `box / image_size` lies in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from decovlm.world.scene import COLOURS, Scene, WorldObject


def _polygon(obj: WorldObject) -> list[tuple[float, float]]:
    """Vertices of a shape around its centre; `rotation` jitters the orientation in degrees."""
    r, rot = obj.radius, math.radians(obj.rotation)

    def ring(radii: list[float], start_deg: float) -> list[tuple[float, float]]:
        n = len(radii)
        out = []
        for k, rk in enumerate(radii):
            a = math.radians(start_deg) + rot + 2 * math.pi * k / n
            out.append((obj.cx + rk * math.cos(a), obj.cy + rk * math.sin(a)))
        return out

    if obj.shape == "square":
        return ring([r * 0.95] * 4, 45.0)
    if obj.shape == "diamond":
        return ring([r] * 4, 0.0)
    if obj.shape == "triangle":
        return ring([r * 1.1] * 3, -90.0)
    if obj.shape == "star":
        return ring([r * 1.15, r * 0.5] * 5, -90.0)
    if obj.shape == "cross":
        w = r * 0.38
        pts = [(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w)]
        pts += [(-r, w), (-r, -w), (-w, -w)]
        c, s = math.cos(rot), math.sin(rot)
        return [(obj.cx + x * c - y * s, obj.cy + x * s + y * c) for x, y in pts]
    raise ValueError(f"unknown shape {obj.shape!r}")


@lru_cache(maxsize=4096)
def object_mask(obj: WorldObject, image_size: int) -> np.ndarray:
    """The object's full (unoccluded) mask, (H, W) bool. Cached: placement redraws often."""
    canvas = Image.new("L", (image_size, image_size), 0)
    draw = ImageDraw.Draw(canvas)
    if obj.shape == "circle":
        r = obj.radius
        # Pillow's ellipse box is inclusive of its right/bottom edge; -0.5 keeps it symmetric.
        draw.ellipse([obj.cx - r, obj.cy - r, obj.cx + r - 0.5, obj.cy + r - 0.5], fill=255)
    else:
        draw.polygon(_polygon(obj), fill=255)
    mask = np.asarray(canvas) > 0
    mask.setflags(write=False)
    return mask


def label_map(objects, image_size: int) -> np.ndarray:
    """(H, W) int16: index of the visible object at each pixel, -1 for background."""
    labels = np.full((image_size, image_size), -1, dtype=np.int16)
    for i, obj in enumerate(objects):
        labels[object_mask(obj, image_size)] = i
    return labels


def visible_fractions(objects, image_size: int) -> list[float]:
    labels = label_map(objects, image_size)
    fractions = []
    for i, obj in enumerate(objects):
        full = int(object_mask(obj, image_size).sum())
        fractions.append(float((labels == i).sum()) / max(full, 1) if full else 0.0)
    return fractions


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box of a boolean mask as pixel edges (x0, y0, x1, y1), x1/y1 exclusive."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise ValueError("empty mask has no bounding box")
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def background(kind: str, seed: int, image_size: int) -> np.ndarray:
    """A low-saturation grey texture, (H, W, 3) uint8, never close to an object colour."""
    rng = np.random.default_rng(seed)
    s = image_size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    base = float(rng.uniform(85, 150))
    if kind == "stripes":
        angle = rng.uniform(0, math.pi)
        freq = rng.uniform(2.0, 6.0)
        pattern = 14.0 * np.sin(2 * math.pi * freq * (xx * math.cos(angle) + yy * math.sin(angle)))
    elif kind == "checker":
        cell = int(rng.integers(4, 12))
        iy, ix = np.mgrid[0:s, 0:s] // cell
        pattern = np.where((iy + ix) % 2 == 0, 10.0, -10.0)
    elif kind == "gradient":
        angle = rng.uniform(0, 2 * math.pi)
        pattern = 30.0 * ((xx - 0.5) * math.cos(angle) + (yy - 0.5) * math.sin(angle))
    elif kind == "noise":
        pattern = np.zeros((s, s), dtype=np.float32)
    else:
        raise ValueError(f"unknown background kind {kind!r}")
    grey = base + pattern + rng.normal(0.0, 8.0, size=(s, s))
    tint = rng.uniform(-6.0, 6.0, size=3)  # a faint tint, far from any object's saturation
    rgb = grey[..., None] + tint[None, None, :] + rng.normal(0.0, 3.0, size=(s, s, 3))
    return np.clip(rgb, 0, 255).astype(np.uint8)


@dataclass
class RenderedScene:
    """A scene with its pixels: image, per-pixel labels, visible masks and boxes per object."""

    scene: Scene
    image: Image.Image
    labels: np.ndarray  # (H, W) int16, -1 = background
    masks: list[np.ndarray]  # visible (after occlusion) bool masks, one per object
    boxes: list[tuple[int, int, int, int]]  # pixel edges, x1/y1 exclusive

    def normalized_box(self, i: int) -> tuple[float, float, float, float]:
        s = self.scene.image_size
        x0, y0, x1, y1 = self.boxes[i]
        return (x0 / s, y0 / s, x1 / s, y1 / s)


def render_scene(scene: Scene) -> RenderedScene:
    s = scene.image_size
    labels = label_map(scene.objects, s)
    pixels = background(scene.background, scene.background_seed, s)
    masks, boxes = [], []
    for i, obj in enumerate(scene.objects):
        mask = labels == i
        pixels[mask] = COLOURS[obj.colour]
        masks.append(mask)
        boxes.append(mask_box(mask))
    return RenderedScene(scene, Image.fromarray(pixels), labels, masks, boxes)


def patch_blocks(labels: np.ndarray, patch: int) -> np.ndarray:
    """(g, g, patch*patch): the pixel labels of each patch, patches in row-major order."""
    s = labels.shape[0]
    if s % patch:
        raise ValueError(f"image size {s} is not a multiple of the patch size {patch}")
    g = s // patch
    return labels.reshape(g, patch, g, patch).transpose(0, 2, 1, 3).reshape(g, g, patch * patch)


def patch_labels(labels: np.ndarray, patch: int, min_cover: float = 0.25) -> np.ndarray:
    """(g, g) index of the object covering most of each patch, -1 where it covers < min_cover."""
    blocks = patch_blocks(labels, patch)
    g = blocks.shape[0]
    n_obj = int(labels.max()) + 1
    if n_obj <= 0:
        return np.full((g, g), -1, dtype=np.int64)
    counts = np.stack([(blocks == k).sum(-1) for k in range(n_obj)], axis=-1)  # (g, g, n_obj)
    best = counts.argmax(-1)
    covered = counts.max(-1) >= min_cover * patch * patch
    return np.where(covered, best, -1).astype(np.int64)
