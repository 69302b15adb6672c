"""Open-ended answer metrics: VQA soft accuracy (VQAv2, TextVQA, VizWiz, OK-VQA) and GQA exact match.

Soft-accuracy conventions, each equal to a named official scorer at a named revision:
- `vqaeval_accuracy`: the official VQA `vqaEval.py` as it is now (GT-Vision-Lab/VQA
  `PythonEvaluationTools/vqaEvaluation/vqaEval.py` at a013f00, 2021-03-11, "Fixed processing
  answers bug"). Prediction and annotator answers: newlines and tabs to spaces, stripped. Then,
  only when the ten answers disagree, both sides get the punctuation step and the
  digit/article/contraction step; when they all agree nothing else is done to either side.
- `llava_vqav2_accuracy`: what LLaVA-1.5's VQAv2 numbers are: LLaVA's
  `scripts/convert_vqav2_for_submission.py` runs the EvalAI answer processor on the prediction
  and the server scores it with `vqaEval.py` (`vqaeval_accuracy` of the processed prediction).
- `vqaeval_2016_accuracy`: `vqaEval.py` before that fix (458a8b2, 2016-10-08): the prediction is
  always normalised; disagreeing answers get the punctuation step only.
- `vqa_accuracy`: LLaVA's `m4c_evaluator.py` (TextVQA; lmms-eval's TextVQA / VizWiz / OK-VQA):
  the EvalAI processor on prediction and annotator answers alike.
All average min(#matching other annotators / 3, 1) over the leave-one-out subsets, by position
(the official script compares answer records, which differ by `answer_id`).
"""

from __future__ import annotations

import string
from collections.abc import Sequence

from decovlm.eval.metrics.normalize import (
    clean_whitespace,
    evalai_normalize,
    process_digit_article,
    process_punctuation,
    vqaeval_prediction,
)


def _leave_one_out(pred: str, gts: Sequence[str]) -> float:
    """Mean over annotators i of min(#(answers other than i equal to pred) / 3, 1)."""
    matches = [g == pred for g in gts]
    total = sum(matches)
    # Leaving out annotator i removes one match exactly when i matched.
    return sum(min((total - int(m)) / 3.0, 1.0) for m in matches) / len(matches)


def _soft(pred: str, gts: Sequence[str]) -> float:
    # A single reference answer (not a VQA file) scores exact match: the official leave-one-out
    # would compare with nobody and give 0 whatever the prediction.
    if len(gts) == 1:
        return float(pred == gts[0])
    return _leave_one_out(pred, gts)


def _check(answers: Sequence[str], who: str) -> None:
    if not answers:
        raise ValueError(f"{who} needs at least one reference answer")


def vqaeval_accuracy(prediction: str | None, answers: Sequence[str]) -> float:
    """VQA accuracy in [0, 1] as the current official `vqaEval.py` (a013f00) computes it.

    Examples: "2" against four "two" and six "3" scores 1.0 (the answers disagree, so "two"
    becomes "2" on their side too); "t-shirt" against ten "t-shirt" scores 1.0 and "Yes" against
    ten "yes" 0.0 (ten equal answers: neither side is normalised). `None` (no prediction, e.g. a
    missing image) scores 0.
    """
    _check(answers, "vqaeval_accuracy")
    if prediction is None:
        return 0.0
    pred = clean_whitespace(prediction)
    gts = [clean_whitespace(a) for a in answers]
    # The test is on the stripped answers, before any other step (the 2021 order).
    if len(set(gts)) > 1:
        gts = [process_digit_article(process_punctuation(a)) for a in gts]
        pred = process_digit_article(process_punctuation(pred))
    return _soft(pred, gts)


def llava_vqav2_accuracy(prediction: str | None, answers: Sequence[str]) -> float:
    """VQAv2 accuracy as LLaVA-1.5's published numbers: EvalAI processor on the prediction, then
    the official `vqaEval.py` (a013f00).

    Example: "Two." against ten "2" scores 1.0 (the processor makes it "2"); "t-shirt" against ten
    "t-shirt" scores 0.0 (the processor makes it "t shirt", the unanimous answers stay as written).
    """
    _check(answers, "llava_vqav2_accuracy")
    if prediction is None:
        return 0.0
    return vqaeval_accuracy(evalai_normalize(prediction), answers)


def vqaeval_2016_accuracy(prediction: str | None, answers: Sequence[str]) -> float:
    """VQA accuracy as `vqaEval.py` computed it from 2016 until the 2021 fix (458a8b2).

    Example: "t shirt", ten answers "t-shirt": the answers agree, so they are not normalised, and
    "t shirt" != "t-shirt" scores 0.0; "2" against four "two" and six "3" scores 0.0 (the
    disagreeing answers get the punctuation step only, "two" stays "two").
    """
    _check(answers, "vqaeval_2016_accuracy")
    if prediction is None:
        return 0.0
    pred = vqaeval_prediction(prediction)
    gts = [str(a) for a in answers]  # not stripped in this revision
    if len(set(gts)) > 1:
        gts = [process_punctuation(a) for a in gts]
    return _soft(pred, gts)


def vqa_accuracy(prediction: str | None, answers: Sequence[str]) -> float:
    """VQA soft accuracy in [0, 1] as LLaVA's m4c evaluator (EvalAI processor on both sides).

    A prediction given by 3 of 10 annotators scores 0.9, not 1 (leave-one-out). The m4c
    evaluator requires 10 answers; other counts use the same formula, except that a single
    reference answer scores exact match (the leave-one-out subsets would be empty). `None`
    (no prediction, e.g. a missing image) scores 0.
    """
    _check(answers, "vqa_accuracy")
    if prediction is None:
        return 0.0
    return _soft(evalai_normalize(prediction), [evalai_normalize(a) for a in answers])


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
