"""Pure metric functions for every benchmark DeCo reports (no model, no torch)."""

from decovlm.eval.metrics.boxes import (
    FRAMES,
    format_box,
    from_pixels,
    iou,
    parse_box,
    rec_accuracy,
    to_pixels,
    xywh_to_xyxy,
)
from decovlm.eval.metrics.choice import (
    choice_accuracy,
    circular_accuracy,
    extract_option,
    options_from_list,
)
from decovlm.eval.metrics.mme import COGNITION, PERCEPTION, mme_scores, parse_mme_answer
from decovlm.eval.metrics.normalize import (
    evalai_normalize,
    process_digit_article,
    process_punctuation,
)
from decovlm.eval.metrics.vqa import (
    gqa_exact_match,
    gqa_normalize,
    mean,
    vqa_accuracy,
    vqa_exact_match,
)
from decovlm.eval.metrics.yesno import (
    YesNoScores,
    parse_yes_no_llava,
    parse_yes_no_strict,
    pope_scores,
    yes_no_metrics,
)

__all__ = [
    "COGNITION",
    "FRAMES",
    "PERCEPTION",
    "YesNoScores",
    "choice_accuracy",
    "circular_accuracy",
    "evalai_normalize",
    "extract_option",
    "format_box",
    "from_pixels",
    "gqa_exact_match",
    "gqa_normalize",
    "iou",
    "mean",
    "mme_scores",
    "options_from_list",
    "parse_box",
    "parse_mme_answer",
    "parse_yes_no_llava",
    "parse_yes_no_strict",
    "pope_scores",
    "process_digit_article",
    "process_punctuation",
    "rec_accuracy",
    "to_pixels",
    "vqa_accuracy",
    "vqa_exact_match",
    "xywh_to_xyxy",
    "yes_no_metrics",
]
