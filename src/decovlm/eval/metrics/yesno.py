"""Yes/no answers: LLaVA's POPE parser, a strict word parser, and POPE's confusion-matrix metrics."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass


def parse_yes_no_llava(text: str | None) -> str | None:
    """LLaVA's `eval_pope.py` rule: keep the text before the first '.', drop commas, split on spaces;
    "no" if any word is `No`, `no` or `not`, otherwise "yes".

    Its quirks are kept for comparability: matching is case-sensitive ("NO" reads as yes) and an
    empty answer reads as yes. `None` (no answer at all, e.g. a missing image) returns None.
    """
    if text is None:
        return None
    if "." in text:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    if "No" in words or "not" in words or "no" in words:
        return "no"
    return "yes"


def parse_yes_no_strict(text: str | None) -> str | None:
    """VLMEvalKit-style: "yes" if the word yes occurs and no does not, and vice versa; else None."""
    if text is None:
        return None
    words = set(re.findall(r"[a-z]+", text.lower()))
    if "yes" in words and "no" not in words:
        return "yes"
    if "no" in words and "yes" not in words:
        return "no"
    return None


@dataclass
class YesNoScores:
    """Binary metrics with "yes" as the positive class; `yes_ratio` is the share of *predicted* yes."""

    n: int
    accuracy: float
    precision: float
    recall: float
    f1: float
    yes_ratio: float
    n_invalid: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def yes_no_metrics(predictions: Sequence[str | None], labels: Sequence[str]) -> YesNoScores:
    """Accuracy, precision, recall, F1 and yes-ratio of parsed predictions ("yes"/"no"/None).

    A None prediction (unparseable, or no answer) counts as wrong: it is scored as the opposite of
    the label, so it lowers accuracy and lands in FN (label yes) or FP (label no).
    """
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions but {len(labels)} labels")
    tp = fp = tn = fn = invalid = 0
    for pred, label in zip(predictions, labels):
        label = str(label).strip().lower()
        if label not in ("yes", "no"):
            raise ValueError(f"yes/no label must be 'yes' or 'no', got {label!r}")
        if pred not in ("yes", "no"):
            invalid += 1
            pred = "no" if label == "yes" else "yes"
        if pred == "yes":
            tp, fp = (tp + 1, fp) if label == "yes" else (tp, fp + 1)
        else:
            tn, fn = (tn + 1, fn) if label == "no" else (tn, fn + 1)
    n = len(labels)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return YesNoScores(
        n=n,
        accuracy=(tp + tn) / n if n else 0.0,
        precision=precision,
        recall=recall,
        f1=f1,
        yes_ratio=(tp + fp) / n if n else 0.0,
        n_invalid=invalid,
    )


def pope_scores(
    answers: Sequence[str | None], labels: Sequence[str], splits: Sequence[str]
) -> dict[str, dict[str, float]]:
    """POPE per split (random / popular / adversarial) plus `mean` over splits, with LLaVA's parser.

    `answers` are raw model texts (None = no answer). The `mean` entry averages each metric over
    the splits present, as papers quote "POPE F1" as the mean of the three splits.
    """
    if not len(answers) == len(labels) == len(splits):
        raise ValueError("answers, labels and splits must have the same length")
    by_split: dict[str, tuple[list, list]] = {}
    for ans, label, split in zip(answers, labels, splits):
        preds, labs = by_split.setdefault(split, ([], []))
        preds.append(parse_yes_no_llava(ans))
        labs.append(label)
    out = {split: yes_no_metrics(p, lab).to_dict() for split, (p, lab) in sorted(by_split.items())}
    if out:
        keys = ("accuracy", "precision", "recall", "f1", "yes_ratio")
        out["mean"] = {k: sum(s[k] for s in out.values()) / len(out) for k in keys}
        out["mean"]["n"] = sum(s["n"] for k, s in out.items() if k != "mean")
    return out
