"""Scenes of the synthetic world: the vocabulary, typed configs and seeded sampling.

A scene is 2-6 coloured shapes on a textured background. Sampling is deterministic: scene `i` of a
split is drawn from `numpy.random.default_rng([seed, split_code, i])`, so it never depends on how
many other scenes were asked for. Train and eval scenes are disjoint by construction: a scene's
*composition* (the multiset of (shape, colour, size)) is hashed into buckets and a fixed share of
the buckets belongs to eval only, so held-out scenes show object combinations never seen in
training (while every single shape and colour is seen).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np

WORLD_VERSION = "5"

# Shape names and the plural used in counting questions.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "cross")
PLURALS: dict[str, str] = {
    "circle": "circles",
    "square": "squares",
    "triangle": "triangles",
    "star": "stars",
    "diamond": "diamonds",
    "cross": "crosses",
}
# Some colours are deliberately close (purple/violet, red/orange, blue/cyan): the paper's
# relevance figure is about a projector losing exactly such fine-grained colour differences.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "blue": (40, 80, 220),
    "green": (50, 170, 70),
    "purple": (130, 50, 170),
    "yellow": (230, 210, 40),
    "orange": (240, 130, 30),
    "violet": (190, 120, 235),
    "pink": (240, 130, 190),
    "cyan": (40, 190, 200),
}
CLOSE_COLOURS: dict[str, tuple[str, ...]] = {
    "red": ("orange", "pink"),
    "orange": ("red", "yellow"),
    "yellow": ("orange",),
    "green": ("cyan",),
    "cyan": ("blue", "green"),
    "blue": ("cyan", "purple"),
    "purple": ("violet", "blue"),
    "violet": ("purple", "pink"),
    "pink": ("violet", "red"),
}
SIZES: tuple[str, ...] = ("small", "large")
# Non-uniform priors make some (colour, shape) pairs frequent: POPE's "popular" negatives are
# frequent objects that are absent from the image.
SHAPE_PRIOR: tuple[float, ...] = (0.24, 0.20, 0.17, 0.15, 0.13, 0.11)
COLOUR_PRIOR: tuple[float, ...] = (0.16, 0.14, 0.13, 0.12, 0.10, 0.10, 0.09, 0.08, 0.08)
SPLIT_CODES: dict[str, int] = {"train": 0, "eval": 1}


@dataclass
class WorldConfig:
    """How scenes look. Defaults suit CPU training: 64 px images, an 8x8 grid of 8 px patches."""

    image_size: int = 64
    min_objects: int = 2
    max_objects: int = 6
    # Object radius as a fraction of the image side, per size word.
    small_radius: float = 0.10
    large_radius: float = 0.16
    # Every object keeps at least this fraction of its own pixels visible after occlusion.
    min_visible: float = 0.7
    # One composition bucket in `eval_buckets` is held out for evaluation.
    eval_buckets: int = 8
    max_rotation: float = 12.0  # degrees of jitter; squares and diamonds stay distinguishable
    # 0 places object centres anywhere. N > 0 puts them on the centres of an N x N lattice of
    # cells, jittered by up to `position_jitter` px. With N = the encoder's patch grid (8) a box
    # follows from which patch holds the object's centre: after 1,600 steps on box questions alone
    # the small MLLM wrote 53.5% of boxes at IoU >= 0.5 against 35.4% on free placement
    # (docs/world_learnability.md, sixth round).
    position_grid: int = 0
    position_jitter: float = 1.0
    # 0 gives boxes to the pixel. N > 0 gives them on the N x N lattice, each edge rounded to the
    # nearest cell boundary ("on the patch lattice" with N = the encoder's patch grid): what a
    # model that reads 8x8 patches can say of where an object is. After 2,000 box-only steps the
    # small MLLM wrote 31.7% of lattice boxes at IoU >= 0.5 (5.0% with another scene's image)
    # against 15.0% of pixel boxes (docs/world_learnability.md, ninth round).
    box_grid: int = 0

    def __post_init__(self) -> None:
        if not 16 <= int(self.image_size) <= 128:
            raise ValueError(f"WorldConfig.image_size must be in [16, 128], got {self.image_size}")
        if not 1 <= self.min_objects <= self.max_objects <= 8:
            raise ValueError(
                "WorldConfig needs 1 <= min_objects <= max_objects <= 8, got "
                f"{self.min_objects}..{self.max_objects}"
            )
        if not 0.0 < self.min_visible <= 1.0:
            raise ValueError(f"WorldConfig.min_visible must be in (0, 1], got {self.min_visible}")
        if not 0 <= int(self.position_grid) <= self.image_size:
            raise ValueError(
                f"WorldConfig.position_grid must be in [0, image_size={self.image_size}] "
                f"(0: free placement), got {self.position_grid}"
            )
        if not 0 <= int(self.box_grid) <= self.image_size:
            raise ValueError(
                f"WorldConfig.box_grid must be in [0, image_size={self.image_size}] "
                f"(0: boxes to the pixel), got {self.box_grid}"
            )
        if self.position_jitter < 0:
            raise ValueError(
                f"WorldConfig.position_jitter must be >= 0 px, got {self.position_jitter}"
            )
        if self.eval_buckets < 2:
            raise ValueError(f"WorldConfig.eval_buckets must be >= 2, got {self.eval_buckets}")

    def radius(self, size: str) -> float:
        frac = self.small_radius if size == "small" else self.large_radius
        return frac * self.image_size

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> WorldConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown WorldConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)


@dataclass(frozen=True)
class WorldObject:
    """One shape: attributes plus its placement in pixels (centre, circumradius, rotation)."""

    shape: str
    colour: str
    size: str
    cx: float
    cy: float
    radius: float
    rotation: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.size} {self.colour} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """A sampled scene: objects in drawing order (later ones occlude earlier ones)."""

    scene_id: str
    split: str
    index: int
    image_size: int
    objects: tuple[WorldObject, ...]
    background: str  # texture kind, see render.py
    background_seed: int
    box_grid: int = 0  # the lattice boxes are reported on (WorldConfig.box_grid; 0: pixels)

    def composition(self) -> tuple[tuple[str, str, str], ...]:
        return composition_key(self.objects)

    def to_dict(self) -> dict:
        return asdict(self)


def composition_key(objects) -> tuple[tuple[str, str, str], ...]:
    return tuple(sorted((o.shape, o.colour, o.size) for o in objects))


def composition_bucket(objects, buckets: int) -> int:
    """A stable (process- and platform-independent) hash bucket of a scene's composition."""
    text = "|".join(",".join(item) for item in composition_key(objects))
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % buckets


def split_of(objects, config: WorldConfig) -> str:
    return "eval" if composition_bucket(objects, config.eval_buckets) == 0 else "train"


def _sample_attributes(rng: np.random.Generator, config: WorldConfig) -> list[tuple[str, str, str]]:
    n = int(rng.integers(config.min_objects, config.max_objects + 1))
    shapes = rng.choice(len(SHAPES), size=n, p=np.asarray(SHAPE_PRIOR) / sum(SHAPE_PRIOR))
    colours = rng.choice(len(COLOURS), size=n, p=np.asarray(COLOUR_PRIOR) / sum(COLOUR_PRIOR))
    sizes = rng.integers(0, len(SIZES), size=n)
    names = list(COLOURS)
    return [(SHAPES[s], names[c], SIZES[z]) for s, c, z in zip(shapes, colours, sizes)]


def _centre(rng: np.random.Generator, lo: float, hi: float, config: WorldConfig):
    """An object centre in [lo, hi]^2 px: uniform, or a jittered lattice cell centre."""
    if not config.position_grid:
        return round(float(rng.uniform(lo, hi)), 2), round(float(rng.uniform(lo, hi)), 2)
    cell = config.image_size / config.position_grid
    centres = [cell * (k + 0.5) for k in range(config.position_grid)]
    centres = [c for c in centres if lo <= c <= hi] or [(lo + hi) / 2]
    x, y = rng.choice(centres, size=2) + rng.uniform(-1, 1, size=2) * config.position_jitter
    # Jitter never pushes an object off the image.
    return round(float(np.clip(x, lo, hi)), 2), round(float(np.clip(y, lo, hi)), 2)


def _place(
    rng: np.random.Generator, attributes: list[tuple[str, str, str]], config: WorldConfig
) -> list[WorldObject]:
    """Place objects one by one; a placement that hides too much of any object is retried."""
    from decovlm.world.render import visible_fractions  # render imports this module

    size = config.image_size
    placed: list[WorldObject] = []
    # Large objects first: they are the hardest to fit.
    order = sorted(range(len(attributes)), key=lambda i: attributes[i][2] != "large")
    for i in order:
        shape, colour, size_word = attributes[i]
        r = config.radius(size_word)
        lo, hi = r + 1.0, size - r - 1.0
        for _ in range(40):
            cx, cy = _centre(rng, lo, hi, config)
            candidate = WorldObject(
                shape=shape,
                colour=colour,
                size=size_word,
                cx=cx,
                cy=cy,
                radius=round(r, 2),
                rotation=round(float(rng.uniform(-config.max_rotation, config.max_rotation)), 2),
            )
            trial = placed + [candidate]
            if min(visible_fractions(trial, size)) >= config.min_visible:
                placed = trial
                break
    # Shuffle the drawing order so "large below small" is not a rule the model could learn.
    perm = rng.permutation(len(placed))
    shuffled = [placed[j] for j in perm]
    if len(shuffled) >= 2 and min(visible_fractions(shuffled, size)) < config.min_visible:
        return placed
    return shuffled


def sample_scene(seed: int, split: str, index: int, config: WorldConfig | None = None) -> Scene:
    """Scene `index` of `split` ("train" or "eval") for a world seeded with `seed`."""
    config = config or WorldConfig()
    if split not in SPLIT_CODES:
        raise ValueError(f"split must be one of {sorted(SPLIT_CODES)}, got {split!r}")
    if index < 0:
        raise ValueError(f"scene index must be >= 0, got {index}")
    rng = np.random.default_rng([int(seed), SPLIT_CODES[split], int(index)])
    for _ in range(10_000):
        attributes = _sample_attributes(rng, config)
        # Cheap check on the intended composition first, exact check after placement (an
        # object that found no room is dropped, which changes the composition).
        if split_of([WorldObject(s, c, z, 0, 0, 0) for s, c, z in attributes], config) != split:
            continue
        objects = _place(rng, attributes, config)
        if len(objects) < config.min_objects or split_of(objects, config) != split:
            continue
        background = str(rng.choice(["noise", "stripes", "checker", "gradient"]))
        return Scene(
            scene_id=f"{split}_{index:06d}",
            split=split,
            index=index,
            image_size=config.image_size,
            objects=tuple(objects),
            background=background,
            background_seed=int(rng.integers(0, 2**31 - 1)),
            box_grid=int(config.box_grid),
        )
    raise RuntimeError(f"could not sample {split} scene {index}: WorldConfig is too crowded")


def object_index(objects, *, shape=None, colour=None, size=None) -> list[int]:
    """Indices of the objects matching every given attribute."""
    return [
        i
        for i, o in enumerate(objects)
        if (shape is None or o.shape == shape)
        and (colour is None or o.colour == colour)
        and (size is None or o.size == size)
    ]


def vocabulary() -> dict:
    """The world's vocabulary as written to world.json."""
    return {
        "shapes": list(SHAPES),
        "plurals": dict(PLURALS),
        "colours": {k: list(v) for k, v in COLOURS.items()},
        "close_colours": {k: list(v) for k, v in CLOSE_COLOURS.items()},
        "sizes": list(SIZES),
    }
