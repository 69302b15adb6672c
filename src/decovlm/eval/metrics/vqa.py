"""Open-ended answer metrics: VQA soft accuracy (VQAv2, TextVQA, VizWiz, OK-VQA) and GQA exact match."""

from __future__ import annotations

import string
from collections.abc import Sequence

from decovlm.eval.metrics.normalize import evalai_normalize


def vqa_accuracy(prediction: str | None, answers: Sequence[str]) -> float:
    """VQA soft accuracy in [0, 1]: min(#matching annotators / 3, 1), averaged over leave-one-out subsets.

    Prediction and annotator answers are both EvalAI-normalised. With the usual 10 answers, each
    of the 10 subsets of 9 annotators scores min(matches / 3, 1) and the scores are averaged, so a
    prediction given by 3 of 10 annotators scores 0.9, not 1. With a single reference answer the
    leave-one-out subsets are empty, so we score exact match instead. `None` (no prediction, e.g.
    a missing image) scores 0.
    """
    if not answers:
        raise ValueError("vqa_accuracy needs at least one reference answer")
    if prediction is None:
        return 0.0
    pred = evalai_normalize(prediction)
    gts = [evalai_normalize(a) for a in answers]
    if len(gts) == 1:
        return float(pred == gts[0])
    matches = [g == pred for g in gts]
    total = sum(matches)
    # Leaving out annotator i removes one match exactly when i matched.
    scores = [min((total - int(m)) / 3.0, 1.0) for m in matches]
    return sum(scores) / len(scores)


def vqa_exact_match(prediction: str | None, answer: str) -> float:
    """1.0 when the EvalAI-normalised prediction equals the normalised answer, else 0.0."""
    if prediction is None:
        return 0.0
    return float(evalai_normalize(prediction) == evalai_normalize(answer))


def gqa_normalize(text: str, strip_punctuation: bool = False) -> str:
    """GQA answer normalisation.

    LLaVA's convert script (default): strip, drop trailing periods, lower-case. With
    `strip_punctuation` (TRI-ML vlm-evaluation): remove every ASCII punctuation character instead.
    """
    text = str(text).strip()
    if strip_punctuation:
        text = text.translate(str.maketrans("", "", string.punctuation))
    else:
        text = text.rstrip(".")
    return text.lower().strip()


def gqa_exact_match(prediction: str | None, answer: str, strip_punctuation: bool = False) -> float:
    """GQA accuracy of one answer: exact match after `gqa_normalize` of both sides."""
    if prediction is None:
        return 0.0
    return float(
        gqa_normalize(prediction, strip_punctuation) == gqa_normalize(answer, strip_punctuation)
    )


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean; 0.0 for an empty sequence (an empty benchmark scores nothing, it does not crash)."""
    return float(sum(values) / len(values)) if values else 0.0
