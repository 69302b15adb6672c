"""A small LLaVA-format data set on disk (coloured shapes), for tests, examples and benchmarks.

Words come from the tiny tokenizer's vocabulary (`decovlm.modeling.tiny`), so nothing maps to
<unk> in the assistant turns. `write_toy_dataset` can also add deliberately bad records.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 200, 30),
    "blue": (30, 30, 220),
    "yellow": (230, 230, 30),
}
SHAPES = ("circle", "square")


def _image(path: Path, colour: tuple[int, int, int], shape: str, size: int) -> None:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    box = (size // 4, size // 4, 3 * size // 4, 3 * size // 4)
    (draw.ellipse if shape == "circle" else draw.rectangle)(box, fill=colour)
    img.save(path)


def toy_records(n: int, kind: str = "chat", seed: int = 0, text_only_every: int = 0) -> list[dict]:
    """`kind`: `caption` (align-style, 2 turns) or `chat` (multi-turn)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
        rec = {"id": f"toy-{i}", "image": f"images/{i % 16}.png"}
        if kind == "caption":
            rec["conversations"] = [
                {
                    "from": "human",
                    "value": "describe the image <image>" if i % 2 else "<image>\ndescribe",
                },
                {"from": "gpt", "value": f"a {colour} {shape}"},
            ]
        else:
            rec["conversations"] = [
                {"from": "human", "value": "<image>\nwhat colour is the image ?"},
                {"from": "gpt", "value": colour},
                {"from": "human", "value": "how many objects are there ?"},
                {"from": "gpt", "value": f"one {shape}"},
            ]
        if text_only_every and i % text_only_every == text_only_every - 1:
            del rec["image"]
            rec["conversations"] = [
                {"from": "human", "value": "what is a circle ?"},
                {"from": "gpt", "value": "a circle is a shape"},
            ]
        out.append(rec)
    # the images referenced above: image i%16 has the colour/shape of the first record using it
    return out


def write_toy_dataset(
    folder: str | Path,
    n: int = 32,
    kind: str = "chat",
    image_size: int = 32,
    seed: int = 0,
    text_only_every: int = 0,
    bad: bool = False,
    name: str = "data.json",
) -> Path:
    """Write `folder/images/*.png` and `folder/<name>`; returns the JSON path."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for i in range(16):
        path = folder / "images" / f"{i}.png"
        if not path.exists():
            _image(path, COLOURS[rng.choice(list(COLOURS))], rng.choice(SHAPES), image_size)
    records = toy_records(n, kind, seed, text_only_every)
    if bad:
        (folder / "images" / "corrupt.png").write_bytes(b"not a png")
        records += [
            {
                "id": "bad-missing-image",
                "image": "images/nope.png",
                "conversations": records[0]["conversations"],
            },
            {
                "id": "bad-corrupt-image",
                "image": "images/corrupt.png",
                "conversations": records[0]["conversations"],
            },
            {
                "id": "bad-two-tags",
                "image": "images/0.png",
                "conversations": [
                    {"from": "human", "value": "<image> <image> what"},
                    {"from": "gpt", "value": "red"},
                ],
            },
            {"id": "bad-empty", "image": "images/0.png", "conversations": []},
            {
                "id": "bad-roles",
                "conversations": [
                    {"from": "gpt", "value": "red"},
                    {"from": "human", "value": "what"},
                ],
            },
            {
                "id": "bad-tag-no-image",
                "conversations": [
                    {"from": "human", "value": "<image> what"},
                    {"from": "gpt", "value": "red"},
                ],
            },
        ]
    path = folder / name
    path.write_text(json.dumps(records), encoding="utf-8")
    return path
