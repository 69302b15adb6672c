"""Example images for the explorer: a few scenes of the synthetic world with one of their questions.

A world folder (written by `decovlm world`) holds `images/*.png` and `eval/questions.jsonl`
({question_id, image, text, ...}, `image` relative to the folder). Given a model folder or an
`--examples` folder, we look in it and in its `world/` sub-folder; held-out eval questions are
preferred (one per image), and images without a question get the caption prompt.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_QUESTION = "Describe the image briefly."
MAX_EXAMPLES = 8


@dataclass(frozen=True)
class Example:
    label: str
    image: Path
    question: str


def _clean(question: str) -> str:
    return question.replace("<image>", "").strip()


def _questions(root: Path) -> list[dict]:
    path = root / "eval" / "questions.jsonl"
    if not path.is_file():
        return []
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:  # a broken line must not stop the page from starting
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if (
                isinstance(rec, dict)
                and isinstance(rec.get("image"), str)
                and isinstance(rec.get("text"), str)
            ):
                records.append(rec)
    return records


def world_examples(root: str | os.PathLike, limit: int = MAX_EXAMPLES) -> list[Example]:
    """Up to `limit` (image, question) examples from one world folder (empty when it is none)."""
    root = Path(root)
    examples: list[Example] = []
    seen: set[Path] = set()
    # Colour / shape questions first: they name one object, which is what relevance maps show best.
    records = sorted(_questions(root), key=lambda r: r.get("category") != "vqa")
    for rec in records:
        image = (root / rec["image"]).resolve()
        if image in seen or not image.is_file():
            continue
        seen.add(image)
        question = _clean(rec["text"]) or DEFAULT_QUESTION
        # The label shows the first line; the question keeps LLaVA's answer-format line, if any.
        examples.append(Example(f"{image.stem}: {question.splitlines()[0]}", image, question))
        if len(examples) >= limit:
            return examples
    images = root / "images"
    if images.is_dir():
        for image in sorted(images.glob("*.png")):
            image = image.resolve()
            if image not in seen:
                seen.add(image)
                examples.append(
                    Example(f"{image.stem}: {DEFAULT_QUESTION}", image, DEFAULT_QUESTION)
                )
                if len(examples) >= limit:
                    break
    return examples


def find_examples(folders, limit: int = MAX_EXAMPLES) -> list[Example]:
    """Examples from the first folders (and their `world/` sub-folders) that have any."""
    found: list[Example] = []
    for folder in folders:
        if folder is None:
            continue
        for root in (Path(folder), Path(folder) / "world"):
            if root.is_dir():
                found += world_examples(root, limit - len(found))
            if len(found) >= limit:
                return found
    return found
