"""The built-in synthetic world's held-out questions (<data>/eval/questions.jsonl), scored per category.

Each line: {"question_id", "image" (relative to --data), "text" (the full prompt), "category":
vqa | count | localization | yesno | multiple_choice, "answer" (gold string; a "[x1, y1, x2, y2]"
box in [0, 1] for localization), optional "answers" (accepted alternatives), "pope_split",
"options" (list of texts, or {letter: text})}. The prompt is used verbatim.

Scores (convention `decovlm`, each category by a named official rule): vqa / count exact match
after the EvalAI processor (any accepted answer), localization Acc@0.5 with lmms-eval's box
parsing (IoU of normalised boxes, which equals pixel IoU for the same frame), yes/no accuracy and
F1 (all rates in %) with LLaVA's eval_pope.py parser (also per pope_split), multiple-choice
accuracy with VLMEvalKit's option matcher. `overall` is the share of all questions answered right.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from decovlm.eval.benchmarks.base import (
    Benchmark,
    EvalItem,
    as_percent,
    check_types,
    read_jsonl_rows,
    require,
)
from decovlm.eval.metrics import (
    evalai_normalize,
    extract_option,
    iou,
    mean,
    options_from_list,
    parse_box,
    parse_yes_no_llava,
    resolve_convention,
    yes_no_metrics,
)

CATEGORIES = ("vqa", "count", "localization", "yesno", "multiple_choice")
QUESTIONS = Path("eval") / "questions.jsonl"


def _options(raw) -> dict[str, str] | None:
    if isinstance(raw, dict):
        return {str(k).strip().upper(): str(v) for k, v in raw.items()}
    if isinstance(raw, list) and raw:
        return options_from_list([str(o) for o in raw])
    return None


def _check(row: dict, where: str) -> str | None:
    err = require(row, ("question_id", "text", "category", "answer"), where) or check_types(
        row,
        where,
        paths=("image",),
        text=("question_id", "text", "category", "answer", "pope_split"),
        text_lists=("answers",),
    )
    if err:
        return err
    cat = row["category"]
    if cat not in CATEGORIES:
        return f"{where}: category must be one of {', '.join(CATEGORIES)}, got {cat!r}"
    if cat == "localization" and parse_box(str(row["answer"]), mode="lenient") is None:
        return f"{where}: localization answer {row['answer']!r} is not a box [x1, y1, x2, y2] in [0, 1]"
    if cat == "yesno" and str(row["answer"]).strip().lower() not in ("yes", "no"):
        return f"{where}: yes/no answer must be yes or no, got {row['answer']!r}"
    if (
        cat == "multiple_choice"
        and row.get("options") is not None
        and _options(row["options"]) is None
    ):
        return f"{where}: options must be a non-empty list or a {{letter: text}} object"
    return None


def load_synthetic(data_dir: Path, split: str | None, options: dict) -> list[EvalItem]:
    path = data_dir / QUESTIONS
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: write the synthetic world first (decovlm world --out {data_dir})"
        )
    items = []
    for line, row, err in read_jsonl_rows(path):
        where = f"{path.name} line {line}"
        qid = (
            str(row.get("question_id"))
            if row and row.get("question_id") is not None
            else f"line{line}"
        )
        err = err or _check(row, where)
        if err:
            items.append(
                EvalItem(
                    qid, "", error=err, meta={"category": (row or {}).get("category", "malformed")}
                )
            )
            continue
        answers = [str(row["answer"])] + [str(a) for a in row.get("answers") or []]
        items.append(
            EvalItem(
                qid,
                str(row["text"]),
                image=str(data_dir / row["image"]) if row.get("image") else None,
                gold=answers,
                meta={
                    "category": row["category"],
                    "pope_split": row.get("pope_split"),
                    "options": _options(row.get("options")),
                },
            )
        )
    return items


def _mc_correct(answer: str | None, gold: list[str], opts: dict[str, str] | None) -> bool:
    if not opts:  # no options given: compare the answer text itself
        return answer is not None and evalai_normalize(answer) in {
            evalai_normalize(g) for g in gold
        }
    letter = extract_option(answer, opts)
    golds = set()
    for g in gold:
        g = g.strip()
        if g.upper() in opts:
            golds.add(g.upper())
        golds.update(k for k, v in opts.items() if v.strip().lower() == g.lower())
    return letter is not None and letter in golds


def score_synthetic(items: list[EvalItem], answers: dict[str, str | None], options: dict) -> dict:
    resolve_convention("synthetic", options)  # one convention; rejects unknown names
    by_cat: dict[str, list[bool]] = defaultdict(list)
    ious: list[float] = []
    yn_pred, yn_gold, yn_split = [], [], []
    malformed = 0
    for it in items:
        cat = it.meta.get("category")
        if it.error and not it.gold:
            malformed += 1
            by_cat["malformed"].append(False)
            continue
        answer = None if it.error else answers.get(it.question_id)
        if cat in ("vqa", "count"):
            ok = answer is not None and evalai_normalize(answer) in {
                evalai_normalize(g) for g in it.gold
            }
        elif cat == "localization":
            box = parse_box(answer)
            value = iou(box, parse_box(it.gold[0], mode="lenient")) if box is not None else 0.0
            ious.append(value)
            ok = value >= 0.5
        elif cat == "yesno":
            pred = parse_yes_no_llava(answer)
            yn_pred.append(pred)
            yn_gold.append(it.gold[0].strip().lower())
            yn_split.append(it.meta.get("pope_split"))
            ok = pred == yn_gold[-1]
        else:
            ok = _mc_correct(answer, it.gold, it.meta.get("options"))
        by_cat[cat].append(ok)
    out: dict = {}
    for cat in CATEGORIES:
        if cat in by_cat:
            out[cat] = {"accuracy": 100 * mean(by_cat[cat]), "n": len(by_cat[cat])}
    if "localization" in out:
        out["localization"]["acc@0.5"] = out["localization"]["accuracy"]
        out["localization"]["mean_iou"] = mean(ious)
    if yn_pred:
        out["yesno"].update(
            {
                k: v
                for k, v in as_percent(yes_no_metrics(yn_pred, yn_gold).to_dict()).items()
                if k != "accuracy"
            }
        )
        splits = sorted({s for s in yn_split if s})
        if splits:
            out["yesno"]["pope_splits"] = {
                s: as_percent(
                    yes_no_metrics(
                        [p for p, sp in zip(yn_pred, yn_split) if sp == s],
                        [g for g, sp in zip(yn_gold, yn_split) if sp == s],
                    ).to_dict()
                )
                for s in splits
            }
    everything = [ok for oks in by_cat.values() for ok in oks]
    out["overall"] = {"accuracy": 100 * mean(everything), "n": len(everything)}
    out["n_malformed"] = malformed
    return out


BENCHMARKS = [
    Benchmark(
        "synthetic",
        "the synthetic world's held-out questions, per category",
        load_synthetic,
        score_synthetic,
        None,
        max_new_tokens=32,
        prompt_note="the question file's 'text', verbatim",
    ),
]
