"""Multiple choice: rule-based option extraction (MMBench's `can_infer`), MMBench CircularEval, SEED accuracy."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

# Characters that decorate a letter ("(A)", "A.", "A:") and are turned into spaces before splitting.
_DECORATION = ".()[],:;!*#{}"
LETTERS = "ABCDEFGHIJ"


def extract_option(text: str | None, options: Mapping[str, str]) -> str | None:
    """The option letter a free-form answer picks, or None.

    1. Letters: strip decorations, split on whitespace; if exactly one option letter occurs as a
       token, that is the answer - unless it is "A" in an answer of more than 3 words, where "A"
       is likely the article and we fall through.
    2. Texts: if exactly one option's text occurs (case-insensitive) in the answer, its letter.
    The LLM-judge and random-letter fallbacks of the reference harnesses are deliberately left out:
    an unreadable answer counts as wrong.
    """
    if text is None or not options:
        return None
    cleaned = text
    for ch in _DECORATION:
        cleaned = cleaned.replace(ch, " ")
    tokens = cleaned.split()
    found = [letter for letter in options if letter in tokens]
    if len(found) == 1 and not (found[0] == "A" and len(tokens) > 3):
        return found[0]
    lowered = text.lower()
    by_text = [
        letter
        for letter, opt in options.items()
        if str(opt).strip() and str(opt).strip().lower() in lowered
    ]
    if len(by_text) == 1:
        return by_text[0]
    return None


def options_from_list(options: Sequence[str]) -> dict[str, str]:
    """{"A": first, "B": second, ...} from a list of option texts."""
    if len(options) > len(LETTERS):
        raise ValueError(f"at most {len(LETTERS)} options are supported, got {len(options)}")
    return {LETTERS[i]: str(opt) for i, opt in enumerate(options)}


def circular_accuracy(
    group_ids: Sequence[str], correct: Sequence[bool], categories: Sequence[str] | None = None
) -> dict:
    """CircularEval: a question counts only if every rotation of it (same group id) is right.

    Returns {"accuracy": %, "n_questions", "n_rows", "categories": {cat: %}} (percentages).
    """
    if len(group_ids) != len(correct):
        raise ValueError("group_ids and correct must have the same length")
    groups: dict[str, list[bool]] = defaultdict(list)
    group_cat: dict[str, str] = {}
    for i, (gid, ok) in enumerate(zip(group_ids, correct)):
        groups[gid].append(bool(ok))
        if categories is not None:
            group_cat.setdefault(gid, categories[i])
    passed = {gid: all(oks) for gid, oks in groups.items()}
    out: dict = {
        "accuracy": 100 * sum(passed.values()) / len(passed) if passed else 0.0,
        "n_questions": len(passed),
        "n_rows": len(correct),
    }
    if categories is not None:
        per_cat: dict[str, list[bool]] = defaultdict(list)
        for gid, ok in passed.items():
            per_cat[group_cat[gid]].append(ok)
        out["categories"] = {c: 100 * sum(v) / len(v) for c, v in sorted(per_cat.items())}
    return out


def choice_accuracy(
    predictions: Sequence[str | None],
    answers: Sequence[str],
    categories: Sequence[str] | None = None,
) -> dict:
    """Plain accuracy (%) of extracted letters against gold letters (SEED-Bench), overall and per category."""
    if len(predictions) != len(answers):
        raise ValueError("predictions and answers must have the same length")
    ok = [p is not None and p == str(a).strip().upper() for p, a in zip(predictions, answers)]
    out: dict = {"accuracy": 100 * sum(ok) / len(ok) if ok else 0.0, "n": len(ok)}
    if categories is not None:
        per_cat: dict[str, list[bool]] = defaultdict(list)
        for c, v in zip(categories, ok):
            per_cat[str(c)].append(v)
        out["categories"] = {c: 100 * sum(v) / len(v) for c, v in sorted(per_cat.items())}
    return out
