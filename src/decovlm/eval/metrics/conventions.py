"""Scoring conventions: per benchmark, which official scorer decovlm's numbers equal.

Each benchmark has one default convention that reproduces a named official scorer exactly, and
possibly named alternatives. A run picks one with the option `convention` (CLI `--convention`);
`scores.json` records the one used (`"convention"`, `"convention_source"`).

    resolve_convention("vqav2", {})                       -> vqaeval
    resolve_convention("refcoco", {"convention": "strict"}) -> strict

Older option names still work: `box_parse` (RefCOCO) and `gqa_strip_punctuation` (GQA).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Convention:
    """A named scoring rule and the official scorer it equals."""

    name: str
    source: str


_VQAEVAL = Convention(
    "vqaeval",
    "GT-Vision-Lab/VQA PythonEvaluationTools/vqaEvaluation/vqaEval.py (official VQA scorer)",
)
_EVALAI = Convention(
    "evalai",
    "haotian-liu/LLaVA llava/eval/m4c_evaluator.py TextVQAAccuracyEvaluator "
    "(EvalAI answer processor on prediction and answers)",
)
_REC_LMMS = Convention(
    "lmms-eval",
    "lmms-eval 0.7.3 tasks/refcoco/utils_rec.py (first [a, b, c, d] in the answer, IoU >= 0.5)",
)

CONVENTIONS: dict[str, dict[str, Convention]] = {
    "vqav2": {c.name: c for c in (_VQAEVAL, _EVALAI)},
    "okvqa": {c.name: c for c in (_EVALAI, _VQAEVAL)},
    "textvqa": {c.name: c for c in (_EVALAI, _VQAEVAL)},
    "vizwiz": {c.name: c for c in (_EVALAI, _VQAEVAL)},
    "gqa": {
        "llava": Convention(
            "llava",
            "haotian-liu/LLaVA scripts/convert_gqa_for_eval.py + GQA eval.py (exact match)",
        ),
        "vlm-evaluation": Convention(
            "vlm-evaluation",
            "TRI-ML/vlm-evaluation harnesses/gqa.py (punctuation removed) + GQA eval.py",
        ),
    },
    "mmbench": {
        "vlmevalkit": Convention(
            "vlmevalkit",
            "open-compass/VLMEvalKit vlmeval/utils/matching_util.py can_infer "
            "(exact matching, no LLM judge) + CircularEval",
        ),
    },
    "seed": {
        "llava": Convention(
            "llava", "haotian-liu/LLaVA scripts/convert_seed_for_submission.py (answer == letter)"
        ),
        "lmms-eval": Convention(
            "lmms-eval",
            "lmms-eval 0.7.3 tasks/seedbench/utils.py (first character, case-insensitive)",
        ),
    },
    "pope": {"llava": Convention("llava", "haotian-liu/LLaVA llava/eval/eval_pope.py")},
    "mme": {"mme": Convention("mme", "MME eval_tool/calculation.py (official)")},
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
            "per category: EvalAI processor exact match (vqa, count), lmms-eval box parsing + "
            "IoU >= 0.5 (localization), LLaVA eval_pope.py parser (yesno), VLMEvalKit can_infer "
            "(multiple_choice)",
        ),
    },
}
# The family a benchmark's conventions are listed under (RefCOCO+ and RefCOCOg share RefCOCO's).
FAMILY = {"refcoco+": "refcoco", "refcocog": "refcoco"}


def has_conventions(benchmark: str) -> bool:
    """Whether `benchmark` is one decovlm knows the scoring conventions of."""
    return FAMILY.get(benchmark, benchmark) in CONVENTIONS


def conventions_for(benchmark: str) -> dict[str, Convention]:
    """The conventions a benchmark can be scored with, default first."""
    family = FAMILY.get(benchmark, benchmark)
    if family not in CONVENTIONS:
        raise ValueError(f"no scoring conventions known for benchmark {benchmark!r}")
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

    ValueError, naming the valid ones, for an unknown name or two options that disagree.
    """
    options = options or {}
    known = conventions_for(benchmark)
    chosen = options.get("convention")
    legacy = _legacy_choice(benchmark, options)
    if chosen is not None and legacy is not None and str(chosen) != legacy:
        raise ValueError(
            f"{benchmark}: option convention={chosen!r} disagrees with the older option that "
            f"selects {legacy!r}; give one of them"
        )
    name = str(chosen) if chosen is not None else legacy
    if name is None:
        return default_convention(benchmark)
    if name not in known:
        raise ValueError(
            f"{benchmark}: unknown scoring convention {name!r}; known: {', '.join(known)} "
            f"(default {default_convention(benchmark).name})"
        )
    return known[name]
