"""MME scoring as the official `calculation.py`: per subtask 100*acc + 100*acc+, summed per group.

acc counts questions; acc+ counts images whose two questions (one "yes", one "no") are both right.
Perception has 10 subtasks (max 2000), cognition 4 (max 800).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

PERCEPTION = (
    "existence",
    "count",
    "position",
    "color",
    "posters",
    "celebrity",
    "scene",
    "landmark",
    "artwork",
    "OCR",
)
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")


def parse_mme_answer(text: str | None) -> str:
    """The official parser: "yes"/"no" verbatim, else look for yes/no in the first 4 characters; else "other"."""
    if text is None:
        return "other"
    text = text.strip().lower()
    if text in ("yes", "no"):
        return text
    head = text[:4]
    if "yes" in head:
        return "yes"
    if "no" in head:
        return "no"
    return "other"


def mme_scores(
    answers: Sequence[str | None],
    labels: Sequence[str],
    subtasks: Sequence[str],
    image_ids: Sequence[str],
) -> dict:
    """MME scores from raw answers.

    Returns {"perception": total, "cognition": total, "total": sum, "subtasks": {name: {"acc",
    "acc_plus", "score", "n"}}}. Subtasks not in the official lists still get a score but count
    towards neither total.
    """
    if not len(answers) == len(labels) == len(subtasks) == len(image_ids):
        raise ValueError("answers, labels, subtasks and image_ids must have the same length")
    per_task: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for ans, label, task, image in zip(answers, labels, subtasks, image_ids):
        gt = str(label).strip().lower()
        if gt not in ("yes", "no"):
            raise ValueError(f"MME label must be yes/no, got {label!r} ({task}/{image})")
        per_task[task][image].append(parse_mme_answer(ans) == gt)
    sub: dict[str, dict[str, float]] = {}
    for task, images in sorted(per_task.items()):
        flat = [ok for oks in images.values() for ok in oks]
        acc = sum(flat) / len(flat)
        acc_plus = sum(all(oks) for oks in images.values()) / len(images)
        sub[task] = {
            "acc": 100 * acc,
            "acc_plus": 100 * acc_plus,
            "score": 100 * (acc + acc_plus),
            "n": len(flat),
        }
    perception = sum(v["score"] for k, v in sub.items() if k in PERCEPTION)
    cognition = sum(v["score"] for k, v in sub.items() if k in COGNITION)
    return {
        "perception": perception,
        "cognition": cognition,
        "total": perception + cognition,
        "subtasks": sub,
    }
