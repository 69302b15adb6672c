"""Question generators: captions, open-ended VQA, counting, localization, POPE-style yes/no and
multiple choice, mirroring the paper's task groups. Every answer is computed from the scene.

Questions are only asked when they have one right answer: "What colour is the star?" needs a
single star; "What is left of X?" needs X to be uniquely named and exactly one object clearly to
its left (none level with it). Prompts use LLaVA-1.5's instructions (see PROMPTS below).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from decovlm.world.render import RenderedScene
from decovlm.world.scene import (
    CLOSE_COLOURS,
    COLOUR_PRIOR,
    COLOURS,
    PLURALS,
    SHAPE_PRIOR,
    SHAPES,
    Scene,
    object_index,
)

SHORT_ANSWER = "Answer the question using a single word or phrase."
MC_ANSWER = "Answer with the option's letter from the given choices directly."
LOCALIZATION = "Please provide the bounding box coordinate of the region this sentence describes: "
CAPTION = "Describe the image briefly."
PROMPTS = {
    "short_answer": SHORT_ANSWER,
    "multiple_choice": MC_ANSWER,
    "localization": LOCALIZATION,
    "caption": CAPTION,
}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
POPE_SPLITS = ("random", "popular", "adversarial")
LETTERS = "ABCD"
# "Left of" needs a clear horizontal gap (fraction of the image side) to be unambiguous.
SIDE_MARGIN = 0.08


@dataclass
class QA:
    """One question about one scene, with its gold answer and what it is about."""

    category: str  # caption | vqa | count | localization | yesno | multiple_choice
    kind: str  # finer type: colour, shape, size, left, right, count_colour, pope, ...
    question: str  # the bare question
    prompt: str  # what the model sees (question + instruction)
    answer: str
    answers: list[str] = field(default_factory=list)
    options: list[str] | None = None
    pope_split: str | None = None
    object: int | None = None  # index of the object the answer is about, if one
    target_word: str | None = None  # the answer word whose relevance should lie on `object`


def _short(question: str) -> str:
    return f"{question}\n{SHORT_ANSWER}"


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def describe(obj) -> str:
    return f"{article(obj.size)} {obj.size} {obj.colour} {obj.shape}"


def unique_reference(objects, i: int) -> str | None:
    """Shortest unique name of object i: "star", "red star" or "small red star" (None if none)."""
    o = objects[i]
    for attrs in ({"shape": o.shape}, {"shape": o.shape, "colour": o.colour}):
        if len(object_index(objects, **attrs)) == 1:
            return " ".join(v for k, v in (("colour", o.colour), ("shape", o.shape)) if k in attrs)
    if len(object_index(objects, shape=o.shape, colour=o.colour, size=o.size)) == 1:
        return o.name
    return None


def caption(scene: Scene) -> str:
    """All objects from left to right: "a small purple star, a large red circle and a ..."."""
    objs = sorted(scene.objects, key=lambda o: (o.cx, o.cy))
    parts = [describe(o) for o in objs]
    text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return text + "."


def caption_qa(scene: Scene) -> QA:
    return QA("caption", "caption", CAPTION, CAPTION, caption(scene), [caption(scene)])


def attribute_questions(scene: Scene) -> list[QA]:
    """Colour of a unique shape, shape of a unique colour, size of a unique colour+shape."""
    objs, out = scene.objects, []
    for i, o in enumerate(objs):
        if len(object_index(objs, shape=o.shape)) == 1:
            q = f"What colour is the {o.shape}?"
            out.append(QA("vqa", "colour", q, _short(q), o.colour, [o.colour], object=i,
                          target_word=o.colour))  # fmt: skip
        if len(object_index(objs, colour=o.colour)) == 1:
            q = f"What shape is the {o.colour} object?"
            out.append(QA("vqa", "shape", q, _short(q), o.shape, [o.shape], object=i,
                          target_word=o.shape))  # fmt: skip
        if len(object_index(objs, colour=o.colour, shape=o.shape)) == 1:
            q = f"What size is the {o.colour} {o.shape}?"
            out.append(QA("vqa", "size", q, _short(q), o.size, [o.size], object=i,
                          target_word=o.size))  # fmt: skip
    return out


def spatial_questions(scene: Scene) -> list[QA]:
    """ "What is left/right of the X?" when X is uniquely named and the answer is unambiguous."""
    objs, out = scene.objects, []
    margin = SIDE_MARGIN * scene.image_size
    for i, ref in enumerate(objs):
        name = unique_reference(objs, i)
        if name is None:
            continue
        others = [j for j in range(len(objs)) if j != i]
        if any(abs(objs[j].cx - ref.cx) <= margin for j in others):
            continue  # something level with the reference: "left of" would be ambiguous
        for side, sign in (("left", -1), ("right", 1)):
            hits = [j for j in others if sign * (objs[j].cx - ref.cx) > margin]
            if len(hits) != 1:
                continue
            a = objs[hits[0]]
            q = f"What is {side} of the {name}?"
            # The object's full name, as the caption (and the LM's one token per object) gives it.
            answer = a.name
            short = f"{a.colour} {a.shape}"
            accepted = [answer, f"the {answer}", f"a {answer}", short, f"the {short}"]
            out.append(QA("vqa", side, q, _short(q), answer, accepted, object=hits[0],
                          target_word=a.shape))  # fmt: skip
    return out


def _absent(names, present: list[str], rng: np.random.Generator) -> list[str]:
    """As many absent names as present ones (fewer if the vocabulary runs out), in random order."""
    absent = [n for n in names if n not in present]
    return [absent[int(k)] for k in rng.permutation(len(absent))[: len(present)]]


def count_questions(scene: Scene, rng: np.random.Generator) -> list[QA]:
    """Counts of each present colour and shape, and as many absent ones (answer 0).

    Balanced like VQA v2's complementary pairs: with one absent colour per scene "1" was right
    ~60% of the time, so a model could score well from the question alone and never look.
    """
    objs, out = scene.objects, []
    present_c = sorted({o.colour for o in objs}, key=list(COLOURS).index)
    present_s = sorted({o.shape for o in objs}, key=SHAPES.index)
    colours = present_c + _absent(COLOURS, present_c, rng)
    shapes = present_s + _absent(SHAPES, present_s, rng)
    for c in colours:
        n = len(object_index(objs, colour=c))
        q = f"How many {c} objects are there?"
        out.append(QA("count", "count_colour", q, _short(q), str(n), [str(n), NUMBER_WORDS[n]]))
    for s in shapes:
        n = len(object_index(objs, shape=s))
        q = f"How many {PLURALS[s]} are there?"
        out.append(QA("count", "count_shape", q, _short(q), str(n), [str(n), NUMBER_WORDS[n]]))
    return out


def format_box(box: tuple[float, float, float, float]) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in box) + "]"


def snap_box(
    box: tuple[float, float, float, float], grid: int
) -> tuple[float, float, float, float]:
    """A normalised box with each edge moved to the nearest line of a `grid` x `grid` lattice,
    at least one cell wide and high."""
    x0, y0, x1, y1 = (round(v * grid) / grid for v in box)
    x1, y1 = max(x1, x0 + 1 / grid), max(y1, y0 + 1 / grid)
    if x1 > 1:
        x0, x1 = 1 - 1 / grid, 1.0
    if y1 > 1:
        y0, y1 = 1 - 1 / grid, 1.0
    return (x0, y0, x1, y1)


def localization_questions(rendered: RenderedScene) -> list[QA]:
    """LLaVA-1.5 referring-expression boxes, for objects whose full name is unique."""
    objs, out = rendered.scene.objects, []
    for i, o in enumerate(objs):
        if len(object_index(objs, shape=o.shape, colour=o.colour, size=o.size)) != 1:
            continue
        q = f"{LOCALIZATION}the {o.name}."
        box = rendered.normalized_box(i)
        if rendered.scene.box_grid:
            box = snap_box(box, rendered.scene.box_grid)
        box = format_box(box)
        out.append(QA("localization", "box", q, q, box, [box], object=i))
    return out


def _pair_weight(colour: str, shape: str) -> float:
    return COLOUR_PRIOR[list(COLOURS).index(colour)] * SHAPE_PRIOR[SHAPES.index(shape)]


def pope_negative(scene: Scene, rng: np.random.Generator, split: str) -> tuple[str, str] | None:
    """An absent (colour, shape) pair chosen the POPE way for `split`."""
    objs = scene.objects
    present = {(o.colour, o.shape) for o in objs}
    absent = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in present]
    if split == "random":
        return absent[int(rng.integers(len(absent)))]
    if split == "popular":  # frequent in the world's distribution, absent here
        ranked = sorted(absent, key=lambda p: -_pair_weight(*p))[:5]
        return ranked[int(rng.integers(len(ranked)))]
    if split != "adversarial":
        raise ValueError(f"unknown POPE split {split!r}; expected one of {POPE_SPLITS}")
    # Attribute swaps of present objects: first binding swaps (the colour of one object on the
    # shape of another), then a close colour on a present shape, then another shape.
    binding = [
        (b.colour, a.shape)
        for a in objs
        for b in objs
        if a.colour != b.colour and a.shape != b.shape and (b.colour, a.shape) not in present
    ]
    close = [
        (c, o.shape) for o in objs for c in CLOSE_COLOURS[o.colour] if (c, o.shape) not in present
    ]
    other = [(o.colour, s) for o in objs for s in SHAPES if (o.colour, s) not in present]
    for pool in (binding, close, other):
        pool = sorted(set(pool))
        if pool:
            return pool[int(rng.integers(len(pool)))]
    return None


def yesno_questions(scene: Scene, rng: np.random.Generator, pairs: int = 1) -> list[QA]:
    """POPE-like "Is there a <colour> <shape> in the image?": `pairs` yes + no per split."""
    objs, out = scene.objects, []
    for split in POPE_SPLITS:
        for _ in range(pairs):
            i = int(rng.integers(len(objs)))
            pos = (objs[i].colour, objs[i].shape)
            neg = pope_negative(scene, rng, split)
            for pair, answer in ((pos, "yes"), (neg, "no")):
                if pair is None:
                    continue
                q = f"Is there {article(pair[0])} {pair[0]} {pair[1]} in the image?"
                out.append(QA("yesno", "pope", q, _short(q), answer, [answer], pope_split=split,
                              object=i if answer == "yes" else None))  # fmt: skip
    return out


def _options(correct: str, pool: list[str], close: tuple[str, ...], rng) -> list[str]:
    """Four options: the answer, a close distractor when there is one, random others; shuffled."""
    distractors = [c for c in close if c != correct][:1]
    rest = [p for p in pool if p != correct and p not in distractors]
    picks = rng.permutation(len(rest))[: 3 - len(distractors)]
    options = [correct] + distractors + [rest[int(k)] for k in picks]
    return [options[int(k)] for k in rng.permutation(len(options))]


def multiple_choice_questions(scene: Scene, rng: np.random.Generator) -> list[QA]:
    """MMBench-style lettered choices for the colour of a unique shape / shape of a unique colour."""
    objs, out = scene.objects, []
    for i, o in enumerate(objs):
        asks = []
        if len(object_index(objs, shape=o.shape)) == 1:
            opts = _options(o.colour, list(COLOURS), CLOSE_COLOURS[o.colour], rng)
            asks.append((f"What colour is the {o.shape}?", o.colour, opts))
        if len(object_index(objs, colour=o.colour)) == 1:
            opts = _options(o.shape, list(SHAPES), (), rng)
            asks.append((f"What shape is the {o.colour} object?", o.shape, opts))
        for q, correct, opts in asks:
            lines = "\n".join(f"{LETTERS[k]}. {opt}" for k, opt in enumerate(opts))
            letter = LETTERS[opts.index(correct)]
            prompt = f"{q}\n{lines}\n{MC_ANSWER}"
            out.append(QA("multiple_choice", "choice", q, prompt, letter, [letter],
                          options=opts, object=i))  # fmt: skip
    return out


def all_questions(rendered: RenderedScene, rng: np.random.Generator, pope_pairs: int = 1) -> dict:
    """Every question the scene supports, grouped by category (caption first)."""
    scene = rendered.scene
    return {
        "caption": [caption_qa(scene)],
        "vqa": attribute_questions(scene) + spatial_questions(scene),
        "count": count_questions(scene, rng),
        "localization": localization_questions(rendered),
        "yesno": yesno_questions(scene, rng, pope_pairs),
        "multiple_choice": multiple_choice_questions(scene, rng),
    }
