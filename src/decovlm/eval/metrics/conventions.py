"""Scoring conventions: per benchmark, which official scorer decovlm's numbers equal.

Each benchmark has one default convention that reproduces a named official scorer exactly, and
possibly named alternatives. A run picks one with the option `convention` (CLI `--convention`);
`scores.json` records the one used (`"convention"`, `"convention_source"`).

    resolve_convention("vqav2", {})                       -> llava
    resolve_convention("refcoco", {"convention": "strict"}) -> strict

Older option names still work: `box_parse` (RefCOCO) and `gqa_strip_punctuation` (GQA).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from decovlm.errors import UserError


@dataclass(frozen=True)
class Convention:
    """A named scoring rule and the official scorer it equals."""

    name: str
    source: str


# The revisions every source below was read at (tests/test_eval_official.py holds their tables).
VQA_REPO = "GT-Vision-Lab/VQA PythonEvaluationTools/vqaEvaluation/vqaEval.py"
VQA_CURRENT = (
    "a013f0043c1e2cdc995922dfe257f7149aa9af06"  # 2021-03-11 "Fixed processing answers bug"
)
VQA_2016 = "458a8b268b1a239dc388e0af4423f3fe7477b04f"  # 2016-10-08, the revision before that fix
LLAVA = (
    "haotian-liu/LLaVA@c121f0432da27facab705978f83c4ada465e46fd"  # files as of ce1aa08 (LLaVA-1.5)
)
LMMS_EVAL = "lmms-eval 0.7.3 (PyPI)"
VLMEVALKIT = "open-compass/VLMEvalKit@e8e78f0"
VLM_EVALUATION = "TRI-ML/vlm-evaluation@d9f5896"

_LLAVA_VQAV2 = Convention(
    "llava",
    f"{LLAVA} scripts/convert_vqav2_for_submission.py (EvalAIAnswerProcessor of "
    f"llava/eval/m4c_evaluator.py on the prediction), then {VQA_REPO} @ {VQA_CURRENT} "
    "(current official scorer, 2021-03-11)",
)
_VQAEVAL = Convention(
    "vqaeval",
    f"{VQA_REPO} @ {VQA_CURRENT} (current official scorer, 2021-03-11) on the prediction as generated",
)
_VQAEVAL_2016 = Convention(
    "vqaeval-2016",
    f"{VQA_REPO} @ {VQA_2016} (the 2016-10-08 revision, before the 2021 answer-processing fix)",
)
_EVALAI = Convention(
    "evalai",
    f"{LLAVA} llava/eval/m4c_evaluator.py TextVQAAccuracyEvaluator "
    "(EvalAI answer processor on prediction and answers)",
)
_REC_LMMS = Convention(
    "lmms-eval",
    f"{LMMS_EVAL} lmms_eval/tasks/refcoco/utils_rec.py (first [a, b, c, d] in the answer, IoU >= 0.5)",
)
_OTHER_VQA = (_EVALAI, _LLAVA_VQAV2, _VQAEVAL, _VQAEVAL_2016)

CONVENTIONS: dict[str, dict[str, Convention]] = {
    "vqav2": {c.name: c for c in (_LLAVA_VQAV2, _VQAEVAL, _VQAEVAL_2016, _EVALAI)},
    "okvqa": {c.name: c for c in _OTHER_VQA},
    "textvqa": {c.name: c for c in _OTHER_VQA},
    "vizwiz": {c.name: c for c in _OTHER_VQA},
    "gqa": {
        "llava": Convention(
            "llava",
            f"{LLAVA} scripts/convert_gqa_for_eval.py + GQA 1.2 eval.py (exact match)",
        ),
        "vlm-evaluation": Convention(
            "vlm-evaluation",
            f"{VLM_EVALUATION} vlm_eval/tasks/harnesses/gqa.py (punctuation removed) + GQA 1.2 eval.py",
        ),
    },
    "mmbench": {
        "vlmevalkit": Convention(
            "vlmevalkit",
            f"{VLMEVALKIT} vlmeval/utils/matching_util.py can_infer "
            "(exact matching, no LLM judge) + CircularEval",
        ),
    },
    "seed": {
        "llava": Convention(
            "llava", f"{LLAVA} scripts/convert_seed_for_submission.py (answer == letter)"
        ),
        "lmms-eval": Convention(
            "lmms-eval",
            f"{LMMS_EVAL} lmms_eval/tasks/seedbench/utils.py (first character, case-insensitive)",
        ),
    },
    "pope": {"llava": Convention("llava", f"{LLAVA} llava/eval/eval_pope.py")},
    "mme": {
        "mme": Convention(
            "mme",
            "MME eval_tool/calculation.py (official; read as copied in "
            "zjunlp/Deco@a3ccc150b715373f3019fc07cb1836c1961d7e15)",
        )
    },
    "refcoco": {
        "lmms-eval": _REC_LMMS,
        "strict": Convention(
            "strict", "decovlm: the whole answer must be [x1, y1, x2, y2] in [0, 1]; IoU >= 0.5"
        ),
        "lenient": Convention(
            "lenient",
            "decovlm: first bracketed 4-tuple, clipped to [0, 1] and reordered; IoU >= 0.5",
        ),
    },
    "synthetic": {
        "decovlm": Convention(
            "decovlm",
            f"per category: EvalAI processor exact match (vqa, count; {LLAVA} m4c_evaluator.py), "
            f"{LMMS_EVAL} box parsing + IoU >= 0.5 (localization), {LLAVA} eval_pope.py parser "
            f"(yesno), {VLMEVALKIT} can_infer (multiple_choice)",
        ),
    },
}
# Options that only change how saved answers are scored, never what is asked or generated: a
# rerun that changes only these reuses the answers (see decovlm.eval.runner).
SCORING_OPTIONS = ("convention", "box_parse", "gqa_strip_punctuation")
# The family a benchmark's conventions are listed under (RefCOCO+ and RefCOCOg share RefCOCO's).
FAMILY = {"refcoco+": "refcoco", "refcocog": "refcoco"}


def has_conventions(benchmark: str) -> bool:
    """Whether `benchmark` is one decovlm knows the scoring conventions of."""
    return FAMILY.get(benchmark, benchmark) in CONVENTIONS


def conventions_for(benchmark: str) -> dict[str, Convention]:
    """The conventions a benchmark can be scored with, default first."""
    family = FAMILY.get(benchmark, benchmark)
    if family not in CONVENTIONS:
        raise UserError(f"no scoring conventions known for benchmark {benchmark!r}")
    return CONVENTIONS[family]


def default_convention(benchmark: str) -> Convention:
    return next(iter(conventions_for(benchmark).values()))


def _legacy_choice(benchmark: str, options: Mapping[str, Any]) -> str | None:
    family = FAMILY.get(benchmark, benchmark)
    if family == "refcoco" and options.get("box_parse") is not None:
        return str(options["box_parse"])
    if family == "gqa" and "gqa_strip_punctuation" in options:
        return "vlm-evaluation" if options["gqa_strip_punctuation"] else "llava"
    return None


def resolve_convention(benchmark: str, options: Mapping[str, Any] | None = None) -> Convention:
    """The convention `options` select for `benchmark` (its default when none is named).

    UserError (a ValueError), naming the valid ones, for an unknown name or two options that
    disagree.
    """
    options = options or {}
    known = conventions_for(benchmark)
    chosen = options.get("convention")
    legacy = _legacy_choice(benchmark, options)
    if chosen is not None and legacy is not None and str(chosen) != legacy:
        raise UserError(
            f"{benchmark}: option convention={chosen!r} disagrees with the older option that "
            f"selects {legacy!r}; give one of them"
        )
    name = str(chosen) if chosen is not None else legacy
    if name is None:
        return default_convention(benchmark)
    if name not in known:
        raise UserError(
            f"{benchmark}: unknown scoring convention {name!r}; known: {', '.join(known)} "
            f"(default {default_convention(benchmark).name})"
        )
    return known[name]


def generation_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """`options` without the scoring-only ones: what decides the prompts and answers of a run."""
    return {k: v for k, v in (options or {}).items() if k not in SCORING_OPTIONS}
