"""Open-ended answer metrics: VQA soft accuracy (VQAv2, TextVQA, VizWiz, OK-VQA) and GQA exact match.

Two soft-accuracy conventions, each equal to an official scorer:
- `vqaeval_accuracy`: the official VQA `vqaEval.py` (VQAv2's own scorer). The prediction is
  normalised (`vqaeval_prediction`); annotator answers are left as they are when all of them agree,
  and otherwise get the punctuation step only (no lower-casing, no number words, no articles).
- `vqa_accuracy`: LLaVA's `m4c_evaluator.py` (TextVQA; lmms-eval's TextVQA / VizWiz / OK-VQA):
  the EvalAI processor on prediction and annotator answers alike.
Both average min(#matching other annotators / 3, 1) over the leave-one-out subsets, by position
(the official script compares answer records that differ by `answer_id`).
"""

from __future__ import annotations

import string
from collections.abc import Sequence

from decovlm.eval.metrics.normalize import (
    evalai_normalize,
    process_punctuation,
    vqaeval_prediction,
)


def _leave_one_out(pred: str, gts: Sequence[str]) -> float:
    """Mean over annotators i of min(#(answers other than i equal to pred) / 3, 1)."""
    matches = [g == pred for g in gts]
    total = sum(matches)
    # Leaving out annotator i removes one match exactly when i matched.
    return sum(min((total - int(m)) / 3.0, 1.0) for m in matches) / len(matches)


def vqaeval_accuracy(prediction: str | None, answers: Sequence[str]) -> float:
    """VQA accuracy in [0, 1] exactly as the official `vqaEval.py` computes it.

    Example: prediction "t shirt", ten answers "t-shirt": the answers agree, so they are not
    normalised, and "t shirt" != "t-shirt" scores 0.0 (the EvalAI processor would give 1.0).
    With a single reference answer (not a VQA file) the score is exact match after the same steps.
    `None` (no prediction, e.g. a missing image) scores 0.
    """
    if not answers:
        raise ValueError("vqaeval_accuracy needs at least one reference answer")
    if prediction is None:
        return 0.0
    pred = vqaeval_prediction(prediction)
    gts = [str(a) for a in answers]
    if len(set(gts)) > 1:
        gts = [process_punctuation(a) for a in gts]
    if len(gts) == 1:
        return float(pred == gts[0])
    return _leave_one_out(pred, gts)


def vqa_accuracy(prediction: str | None, answers: Sequence[str]) -> float:
    """VQA soft accuracy in [0, 1] as LLaVA's m4c evaluator (EvalAI processor on both sides).

    A prediction given by 3 of 10 annotators scores 0.9, not 1 (leave-one-out). The m4c
    evaluator requires 10 answers; other counts use the same formula, except that a single
    reference answer scores exact match (the leave-one-out subsets would be empty). `None`
    (no prediction, e.g. a missing image) scores 0.
    """
    if not answers:
        raise ValueError("vqa_accuracy needs at least one reference answer")
    if prediction is None:
        return 0.0
    pred = evalai_normalize(prediction)
    gts = [evalai_normalize(a) for a in answers]
    if len(gts) == 1:
        return float(pred == gts[0])
    return _leave_one_out(pred, gts)


def vqa_exact_match(prediction: str | None, answer: str) -> float:
    """1.0 when the EvalAI-normalised prediction equals the normalised answer, else 0.0."""
    if prediction is None:
        return 0.0
    return float(evalai_normalize(prediction) == evalai_normalize(answer))


def gqa_normalize(text: str, strip_punctuation: bool = False) -> str:
    """A GQA prediction as it is compared with the answer.

    LLaVA (default): the generated text stripped (LLaVA's generation loop does that), then
    `scripts/convert_gqa_for_eval.py`'s `rstrip('.').lower()`. With `strip_punctuation`
    (TRI-ML vlm-evaluation): every ASCII punctuation character removed, then lower-cased.
    """
    text = str(text).strip()
    if strip_punctuation:
        return text.translate(str.maketrans("", "", string.punctuation)).lower()
    return text.rstrip(".").lower()


def gqa_exact_match(prediction: str | None, answer: str, strip_punctuation: bool = False) -> float:
    """GQA accuracy of one answer, as the official `eval.py`: prediction == answer after `gqa_normalize`.

    The answer is taken as written in the question file (GQA's answers are lower-case words), in
    both conventions: neither LLaVA nor vlm-evaluation touches it.
    """
    if prediction is None:
        return 0.0
    return float(gqa_normalize(prediction, strip_punctuation) == str(answer).strip())


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean; 0.0 for an empty sequence (an empty benchmark scores nothing, it does not crash)."""
    return float(sum(values) / len(values)) if values else 0.0
