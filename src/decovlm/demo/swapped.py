"""Question files the demo derives from the world's: the swapped-image control, and the curve questions.

The swapped-image control: the held-out questions asked about another scene's image.

Chance (the majority answer) says whether a model beats guessing; it cannot say whether the model
looked. A tiny LLM can beat chance from the question's words alone (answer priors: most colours
asked about are present once, POPE negatives are rarer pairs), and then every projector scores
the same and the comparison measures nothing. Scoring the same questions with the image of a
different scene separates the two: accuracy that survives the swap came from the text, the drop
is what the model read off the image.
"""

from __future__ import annotations

import json
from pathlib import Path

from decovlm.utils.io import atomic_write_text, read_jsonl

QUESTIONS = Path("eval") / "questions.jsonl"


def write_swapped_questions(world_root: str | Path, out_dir: str | Path) -> Path:
    """Write `out_dir`/eval/questions.jsonl: every question paired with another scene's image.

    Scene k gets the image of scene k + n/2 (of n, cyclic), so no question keeps its own image;
    image paths are absolute, so `out_dir` works as `--data` for the runner. Returns `out_dir`.
    """
    world_root, out_dir = Path(world_root).resolve(), Path(out_dir)
    rows = read_jsonl(world_root / QUESTIONS)
    images = list(dict.fromkeys(r["image"] for r in rows if r.get("image")))
    if len(images) < 2:
        raise ValueError(
            f"{world_root / QUESTIONS}: the swapped-image control needs questions about at least "
            f"two images, found {len(images)}"
        )
    other = {img: images[(k + len(images) // 2) % len(images)] for k, img in enumerate(images)}
    lines = [
        json.dumps({**r, "image": str(world_root / other[r["image"]])} if r.get("image") else r)
        for r in rows
    ]
    atomic_write_text(out_dir / QUESTIONS, "\n".join(lines) + "\n")
    return out_dir


def write_curve_questions(world_root: str | Path, out_dir: str | Path, total: int) -> Path:
    """Write `out_dir`/eval/questions.jsonl: about `total` held-out questions, round-robin over categories.

    The first N questions of the world's file are a few scenes' worth, mostly yes/no; taking the
    categories in turn gives every task group a share of the curve. Image paths become absolute,
    so `out_dir` works as `--data` for the runner. Returns `out_dir`.
    """
    world_root, out_dir = Path(world_root).resolve(), Path(out_dir)
    rows = read_jsonl(world_root / QUESTIONS)
    by_cat: dict[str, list[dict]] = {}
    for r in rows:
        by_cat.setdefault(str(r.get("category")), []).append(r)
    picked: list[dict] = []
    queues = [list(v) for v in by_cat.values()]
    while len(picked) < total and any(queues):
        for q in queues:
            if q and len(picked) < total:
                picked.append(q.pop(0))
    lines = [
        json.dumps({**r, "image": str(world_root / r["image"])} if r.get("image") else r)
        for r in picked
    ]
    atomic_write_text(out_dir / QUESTIONS, "\n".join(lines) + "\n")
    return out_dir


def write_category_questions(
    world_root: str | Path, out_dir: str | Path, categories: list[str], ids: set[str] | None = None
) -> Path:
    """Write `out_dir`/eval/questions.jsonl: the questions of `categories` (and, given, of `ids`) only.

    Image paths become absolute, so `out_dir` works as `--data` for the runner. Returns `out_dir`.
    """
    world_root, out_dir = Path(world_root).resolve(), Path(out_dir)
    rows = [
        r
        for r in read_jsonl(world_root / QUESTIONS)
        if r.get("category") in categories and (ids is None or str(r.get("question_id")) in ids)
    ]
    lines = [
        json.dumps({**r, "image": str(world_root / r["image"])} if r.get("image") else r)
        for r in rows
    ]
    atomic_write_text(out_dir / QUESTIONS, "\n".join(lines) + "\n")
    return out_dir
