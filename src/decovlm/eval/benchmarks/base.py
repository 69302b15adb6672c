"""What a benchmark is to the runner: a loader of `EvalItem`s and a scorer of answers, plus LLaVA-1.5 prompts.

Loaders never crash on one bad row: a malformed row becomes an item with `error` set (named by its
id or line number), which the runner records without generating and the scorer counts as wrong.
A missing question file, on the other hand, is a FileNotFoundError naming what was looked for.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from decovlm.utils.io import read_json  # noqa: F401 (the readers import it from here)

# LLaVA-1.5's evaluation prompt suffixes (exact strings of its eval question files).
SHORT_ANSWER = "Answer the question using a single word or phrase."
UNANSWERABLE = "When the provided information is insufficient, respond with 'Unanswerable'."
LETTER_ANSWER = "Answer with the option's letter from the given choices directly."
REC_PROMPT = (
    "Please provide the bounding box coordinate of the region this sentence describes: {expr}."
)


@dataclass
class EvalItem:
    """One question: the prompt the model sees, where its image is, and what scoring needs."""

    question_id: str
    prompt: str
    image: str | None = None  # path to the image file; None for text-only
    image_b64: str | None = None  # inline image (MMBench TSV), used when `image` is None
    gold: Any = None  # benchmark-specific reference (answers list, label, box, letter...)
    meta: dict[str, Any] = field(default_factory=dict)  # split / category / group ids
    error: str | None = None  # set for a malformed row: not generated, counted wrong


@dataclass
class Benchmark:
    """A named benchmark: `load(data_dir, split, options) -> items`, `score(items, answers, options) -> dict`.

    `answers` maps question_id -> generated text, or None when the item failed (missing image,
    malformed row); scorers count None as wrong.
    """

    name: str
    description: str
    load: Callable[[Path, str | None, dict], list[EvalItem]]
    score: Callable[[list[EvalItem], dict[str, str | None], dict], dict]
    default_split: str | None = None
    max_new_tokens: int = 128
    prompt_note: str = ""  # how prompts are built, recorded in scores.json


def short_answer_prompt(question: str, unanswerable: bool = False) -> str:
    """`question` + LLaVA's short-answer suffix (VizWiz also asks to say 'Unanswerable')."""
    parts = [question.strip()]
    if unanswerable:
        parts.append(UNANSWERABLE)
    parts.append(SHORT_ANSWER)
    return "\n".join(parts)


def choice_prompt(question: str, options: dict[str, str], hint: str | None = None) -> str:
    """LLaVA's multiple-choice prompt: [hint] question, "A. opt" lines, then the letter instruction."""
    head = f"{hint.strip()}\n{question.strip()}" if hint else question.strip()
    lines = [head] + [f"{k}. {v}" for k, v in options.items()] + [LETTER_ANSWER]
    return "\n".join(lines)


RATE_KEYS = ("accuracy", "precision", "recall", "f1", "yes_ratio")


def as_percent(scores: dict[str, Any]) -> dict[str, Any]:
    """Yes/no rates (fractions from the metric functions) as percentages, recursively, as papers quote them."""
    return {
        k: as_percent(v) if isinstance(v, dict) else (100 * v if k in RATE_KEYS else v)
        for k, v in scores.items()
    }


def read_jsonl_rows(path: Path) -> list[tuple[int, dict | None, str | None]]:
    """(line number, object or None, error or None) for each non-empty line: bad lines don't stop the load."""
    from decovlm.utils.io import jsonl_lines, read_text

    rows = []
    for i, line in enumerate(jsonl_lines(read_text(path)), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            rows.append(
                (i, None, f"{path.name} line {i} column {err.colno}: not valid JSON ({err.msg})")
            )
            continue
        except RecursionError:
            rows.append((i, None, f"{path.name} line {i}: JSON nested too deeply"))
            continue
        if not isinstance(obj, dict):
            rows.append(
                (i, None, f"{path.name} line {i}: expected an object, got {type(obj).__name__}")
            )
            continue
        rows.append((i, obj, None))
    return rows


def require(row: dict, keys: tuple[str, ...], where: str) -> str | None:
    """An error message if `row` lacks any of `keys` (or has them empty), else None."""
    missing = [k for k in keys if row.get(k) in (None, "")]
    return f"{where}: missing field(s) {', '.join(missing)}" if missing else None


def _is_text(value: Any) -> bool:
    # a scalar that reads as text: str or a number (ids are often ints); not a bool or container
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def check_types(
    row: dict,
    where: str,
    paths: tuple[str, ...] = (),
    text: tuple[str, ...] = (),
    text_lists: tuple[str, ...] = (),
) -> str | None:
    """An error message naming the first field of the wrong type, else None (absent fields pass).

    `paths` must be non-empty strings (image file names), `text` strings or numbers, `text_lists`
    lists of strings or numbers. Run at read time, so a malformed row is an error item counted
    wrong, never a TypeError in the middle of an eval.
    """
    for key in paths:
        value = row.get(key)
        if value is not None and (not isinstance(value, str) or not value or "\0" in value):
            return f"{where}: {key} must be a file name (a string), got {_show(value)}"
    for key in text:
        value = row.get(key)
        if value is not None and not _is_text(value):
            return f"{where}: {key} must be a string, got {_show(value)}"
    for key in text_lists:
        value = row.get(key)
        if value is not None and not (isinstance(value, list) and all(_is_text(v) for v in value)):
            return f"{where}: {key} must be a list of strings, got {_show(value)}"
    return None


def row_id(row: Any, key: str, default: str) -> str:
    """`row[key]` as a question id when the row is an object and the value reads as text."""
    value = row.get(key) if isinstance(row, dict) else None
    return str(value) if _is_text(value) else default


def row_error(
    row: Any,
    where: str,
    required: tuple[str, ...] = (),
    paths: tuple[str, ...] = (),
    text: tuple[str, ...] = (),
    text_lists: tuple[str, ...] = (),
) -> str | None:
    """Why `row` (a question read from JSON) is malformed, or None: not an object, a required
    field missing or empty, or a field of the wrong type (see `check_types`)."""
    if not isinstance(row, dict):
        return f"{where}: expected an object, got {_show(row)}"
    return require(row, required, where) or check_types(row, where, paths, text, text_lists)


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def find_file(data_dir: Path, candidates: list[str], what: str) -> Path:
    """The first of `candidates` (relative to data_dir) that exists, else FileNotFoundError listing them."""
    for name in candidates:
        path = data_dir / name
        if path.exists():
            return path
    raise FileNotFoundError(f"{what}: none of {', '.join(candidates)} found under {data_dir}")


def resolve_image(data_dir: Path, rel: str, folders: tuple[str, ...] = ("",)) -> str:
    """Path of image `rel`: the first of data_dir/<folder>/rel that exists, else the first candidate
    (the runner reports it as missing)."""
    candidates = [data_dir / f / rel if f else data_dir / rel for f in folders]
    for c in candidates:
        try:
            if c.exists():
                return str(c)
        except (OSError, ValueError):  # a NUL byte or an over-long name: reported as missing
            break
    return str(candidates[0])
