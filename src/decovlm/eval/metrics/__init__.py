"""Pure metric functions for every benchmark DeCo reports (no model, no torch)."""

from decovlm.eval.metrics.boxes import (
    BOX_PARSERS,
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
    seed_letter,
)
from decovlm.eval.metrics.contractions import CONTRACTIONS
from decovlm.eval.metrics.conventions import (
    CONVENTIONS,
    Convention,
    conventions_for,
    default_convention,
    resolve_convention,
)
from decovlm.eval.metrics.mme import COGNITION, PERCEPTION, mme_scores, parse_mme_answer
from decovlm.eval.metrics.normalize import (
    clean_whitespace,
    evalai_normalize,
    process_digit_article,
    process_punctuation,
    vqaeval_prediction,
)
from decovlm.eval.metrics.vqa import (
    gqa_exact_match,
    gqa_normalize,
    llava_vqav2_accuracy,
    mean,
    vqa_accuracy,
    vqa_exact_match,
    vqaeval_2016_accuracy,
    vqaeval_accuracy,
)
from decovlm.eval.metrics.yesno import (
    YesNoScores,
    parse_yes_no_llava,
    parse_yes_no_strict,
    pope_scores,
    yes_no_metrics,
)

__all__ = [
    "BOX_PARSERS",
    "COGNITION",
    "CONTRACTIONS",
    "CONVENTIONS",
    "Convention",
    "FRAMES",
    "PERCEPTION",
    "YesNoScores",
    "choice_accuracy",
    "circular_accuracy",
    "clean_whitespace",
    "conventions_for",
    "default_convention",
    "evalai_normalize",
    "extract_option",
    "format_box",
    "from_pixels",
    "gqa_exact_match",
    "gqa_normalize",
    "iou",
    "llava_vqav2_accuracy",
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
    "resolve_convention",
    "seed_letter",
    "to_pixels",
    "vqa_accuracy",
    "vqa_exact_match",
    "vqaeval_2016_accuracy",
    "vqaeval_accuracy",
    "vqaeval_prediction",
    "xywh_to_xyxy",
    "yes_no_metrics",
]
