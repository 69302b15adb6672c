"""Multiple choice: VLMEvalKit's rule-based option matcher, MMBench CircularEval, SEED-Bench accuracy.

`extract_option` is VLMEvalKit's default matcher (`vlmeval/utils/matching_util.py::can_infer`,
HEAD e8e78f0, `VERBOSE` unset, `exact_matching` judge, i.e. no LLM): an answer it cannot read
counts as wrong, as VLMEvalKit's "Z" does. Its steps, in order:
1. an API-failure message reads as nothing; one of four refusal phrases reads as "Z" (declined);
2. letters: `.()[],:;!*#{}` become spaces, the answer is split on whitespace; if exactly one option
   letter is a token and its first occurrence is among the last four tokens, that letter
   ("The correct answer is A" -> A); with no option letter, a lone token "Z" reads as "Z";
3. `answer is X` / `correct answer is **X**` (case-insensitive, X in A-D) anywhere in the answer;
4. texts: if the answer is at most twice as long as all option texts together and exactly one
   option's text occurs in it (case-insensitive), that option ("A. The kitten sits on the mat").

SEED-Bench has two conventions (`seed_letter`): LLaVA's `convert_seed_for_submission.py` (the
whole stripped answer must equal the gold letter) and lmms-eval's `seedbench` (the first
character, case-insensitive).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence

# Characters that decorate a letter ("(A)", "A.", "A:") and are turned into spaces before splitting.
_DECORATION = ".()[],:;!*#{}"
_API_FAILURE = "Failed to obtain answer via API"
REFUSALS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
# VLMEvalKit's pattern for chain-of-thought answers; note it is case-insensitive and needs no word
# boundary after the letter, so "the answer is a cat" reads as A, as it does there.
_ANSWER_IS = re.compile(r"(?i)(?:correct\s+)?answer\s+is\s+\**([ABCD])\**")
DECLINED = "Z"
LETTERS = "ABCDEFGHIJ"


def _infer_letter(answer: str, options: Mapping[str, str]) -> str | None:
    if _API_FAILURE in answer:
        return None
    if any(phrase in answer for phrase in REFUSALS):
        return DECLINED
    cleaned = answer
    for ch in _DECORATION:
        cleaned = cleaned.replace(ch, " ")
    tokens = cleaned.split()
    present = [letter for letter in options if letter in tokens]
    if len(present) == 1:
        # Only a letter near the end counts: "A. The kitten sits on the mat" is left to step 4.
        if tokens.index(present[0]) > len(tokens) - 5:
            return present[0]
    elif not present and DECLINED in tokens:
        return DECLINED
    m = _ANSWER_IS.search(answer)
    if m and m.group(1).upper() in options:
        return m.group(1).upper()
    return None


def _infer_text(answer: str, options: Mapping[str, str]) -> str | None:
    lowered = answer.lower()
    # A long answer mentions options in passing; VLMEvalKit does not read it (lengths before lowering).
    if len(lowered) > 2 * sum(len(str(v)) for v in options.values()):
        return None
    found = [letter for letter, text in options.items() if str(text).lower() in lowered]
    return found[0] if len(found) == 1 else None


def extract_option(text: str | None, options: Mapping[str, str]) -> str | None:
    """The option letter a free-form answer picks, "Z" when it declines, or None (VLMEvalKit's `can_infer`).

    `options` maps letters to option texts, in the order they were shown. None (no answer at all)
    and unreadable answers give None; both "Z" and None count as wrong.
    """
    if text is None or not options:
        return None
    answer = str(text)
    return _infer_letter(answer, options) or _infer_text(answer, options)


def seed_letter(text: str | None, convention: str = "llava") -> str | None:
    """The letter a SEED-Bench answer gives, or None.

    llava: LLaVA's `convert_seed_for_submission.py` compares the (stripped) answer with the gold
        letter as is, so only an answer that is exactly "A".."D" counts ("b" and "B." do not).
    lmms-eval: `seed_process_result` keeps the first character of the stripped answer and compares
        it case-insensitively, so "b", "B." and "Bird" all read as B.
    """
    if text is None:
        return None
    answer = str(text).strip()
    if convention == "llava":
        return answer or None
    if convention == "lmms-eval":
        return answer[:1].upper() or None
    raise ValueError(f"unknown SEED convention {convention!r}; known: llava, lmms-eval")


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
