"""Score relevance maps over a set of cases (image, prompt, answer, target word, object mask).

A case is one JSON line as the synthetic world writes it to `DIR/eval/relevance_cases.jsonl`::

    {"case_id": "...", "image": "images/eval_000001.png", "prompt": "What colour is the circle?",
     "answer": "red", "target_word": "red", "mask": "eval/masks/eval_000001_r0.png"}

(a `"box": [x0, y0, x1, y1]` in pixels may replace `"mask"`). `image` and `mask` are relative to a
**root** folder: `load_cases(path)` uses the jsonl's folder's parent (DIR above) unless `root` is
given. The answer is teacher-forced, the target word's Text-to-Patch map is compared with the
mask downsampled to the patch grid (covered fraction per patch, after the processor's geometry).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from tqdm.auto import tqdm

from decovlm.interpret.scores import box_to_mask, load_mask, mask_to_grid, score_map, summarise
from decovlm.utils.io import read_jsonl

REQUIRED = ("case_id", "image", "prompt", "answer", "target_word")


def load_cases(
    path: str | os.PathLike, root: str | os.PathLike | None = None
) -> tuple[list[dict], Path]:
    """The cases of a jsonl file and the root their paths are relative to (default: its folder's parent)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cases file not found: {path}")
    cases = read_jsonl(path)
    if not cases:
        raise ValueError(f"{path}: no cases")
    for i, case in enumerate(cases, 1):
        missing = [k for k in REQUIRED if k not in case]
        if "mask" not in case and "box" not in case:
            missing.append("mask (or box)")
        if missing:
            raise ValueError(f"{path}: case {i} ({case.get('case_id', '?')}) lacks {missing}")
    return cases, Path(root) if root is not None else path.resolve().parent.parent


def case_mask(case: dict, root: Path, image_size: tuple[int, int]):
    """The case's object mask (H, W) at image resolution, from its mask PNG or its pixel box."""
    if "mask" in case:
        mask = load_mask(root / case["mask"])
        if mask.shape != (image_size[1], image_size[0]):
            raise ValueError(
                f"case {case['case_id']}: mask {case['mask']} is {mask.shape[1]}x{mask.shape[0]} but the image "
                f"is {image_size[0]}x{image_size[1]}"
            )
        return mask
    return box_to_mask(case["box"], image_size)


def score_cases(
    model,
    processor,
    cases: list[dict],
    root: str | os.PathLike,
    chat: bool = True,
    chat_template: str | None = None,
    start_layer: int = 0,
    end_layer: int | None = None,
    progress: bool = True,
    extra_methods="all",
    vanish_tol: float | None = None,
) -> dict:
    """Explain every case and score the target word's Text-to-Patch map against its mask.

    Prompts are formatted by the processor with the model's chat template (as in training);
    `chat_template` overrides it, `chat=False` gives "<image>\\n" + prompt with no template.
    Every Query-to-Patch method is scored (`extra_methods`, see `explain`): the projector's own
    and, where they apply, raw attention rollout and gradient x input, so a miss can be told
    apart as the model's (every method misses) or the method's (only one does).
    Returns {"projector", "query_to_patch" (its own method), "summary" (means over scored cases
    for that method, with "unreliable_share"), "methods" ({method: summary}), "cases" (per-case
    scores; "methods" holds each method's, with its "unreliable" flag and reason), "skipped"
    (case_id and reason: e.g. the target word is not a word of the answer), "vanish_tol"}.
    """
    from decovlm.interpret.explain import explain, read_image

    root = Path(root)
    rows, skipped, method = [], [], None
    mode = getattr(processor, "image_resize_mode", "naive")
    for case in tqdm(
        cases, desc=f"relevance {model.config.projector}", disable=not progress, leave=False
    ):
        image = read_image(root / case["image"])
        mask = case_mask(case, root, image.size)
        expl = explain(
            model,
            processor,
            image,
            case["prompt"],
            answer=case["answer"],
            chat_template=chat_template,
            raw_prompt=not chat,
            start_layer=start_layer,
            end_layer=end_layer,
            extra_methods=extra_methods,
            vanish_tol=vanish_tol,
        )
        method = expl.method
        try:
            index = expl.word_index(case["target_word"])
        except ValueError as err:
            skipped.append({"case_id": case["case_id"], "reason": str(err)})
            continue
        grid_mask = mask_to_grid(mask, expl.patch_grid, mode)
        per_method = {}
        for name in expl.methods:
            verdict = expl.verdicts(name)[index]
            kept = expl.method_word_kept(name)
            per_method[name] = {
                **score_map(expl.word_map(index, name), grid_mask),
                "q2p_mass": float(expl.method_word_mass(name)[index]),
                "kept_share": None if kept is None else float(kept[index]),
                "unreliable": verdict.unreliable,
                "unreliable_reason": verdict.reason,
                "vanished": verdict.unreliable,  # the issue-26 name
            }
        rows.append(
            {
                "case_id": case["case_id"],
                "word": expl.words[index].text,
                **per_method[expl.method],
                "methods": per_method,
            }
        )
    names = list(dict.fromkeys(n for r in rows for n in r["methods"]))
    methods = {n: summarise([r["methods"][n] for r in rows if n in r["methods"]]) for n in names}
    return {
        "projector": model.config.projector,
        "query_to_patch": method,
        "summary": methods.get(method, summarise([])),
        "methods": methods,
        "vanish_tol": vanish_tol,
        "cases": rows,
        "skipped": skipped,
    }


def markdown_table(results: list[dict]) -> str:
    """One row per model and Query-to-Patch method: the means of every score (pointing and energy
    higher is better) and the share of maps flagged unreliable (`decovlm.interpret.reliability`)."""
    head = (
        "| model | projector | Q2P | cases | pointing | energy | mask area | entropy | eff. patches | k50 | k90 | unreliable |\n"
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = []
    for r in results:
        methods = r.get("methods") or {r["query_to_patch"]: r["summary"]}
        for name, s in methods.items():
            lines.append(_table_row(r, name, s))
    return head + "\n".join(lines) + "\n"


def _table_row(r: dict, method: str, s: dict) -> str:
    cells = [
        f"{s[k]:.3f}" if not math.isnan(s[k]) else "-"
        for k in (
            "pointing",
            "energy",
            "mask_area",
            "entropy",
            "effective_patches",
            "k50",
            "k90",
        )
    ]
    vanished = s.get("unreliable_share", s.get("vanished_share", float("nan")))
    own = " (own)" if method == r["query_to_patch"] and len(r.get("methods") or {}) > 1 else ""
    return (
        f"| {r.get('model', '')} | {r['projector']} | {method}{own} | {s['cases']} | "
        + " | ".join(cells)
        + f" | {'-' if math.isnan(vanished) else f'{vanished:.0%}'} |"
    )
