"""Open-ended VQA benchmarks from their official files: VQAv2, OK-VQA, TextVQA, VizWiz (soft accuracy), GQA.

Layouts under --data (split names follow the official files):
- vqav2:   v2_OpenEnded_mscoco_<split>_questions.json + v2_mscoco_<split>_annotations.json,
           images <split>/COCO_<split>_<image_id:012d>.jpg (default split val2014)
- okvqa:   OpenEnded_mscoco_<split>_questions.json + mscoco_<split>_annotations.json (same images)
- textvqa: TextVQA_0.5.1_<split>.json, images train_images/<image_id>.jpg; with LLaVA's
           llava_textvqa_val_v051_ocr.jsonl present its prompts (with OCR tokens) are used verbatim
- vizwiz:  <split>.json (list of {image, question, answers}), images <split>/<image>
- gqa:     <split>_questions.json (dict qid -> {imageId, question, answer}), images images/<imageId>.jpg
Without annotations (test splits) answers are written but not scored.

Scoring conventions (option `convention`, see docs/evaluation.md): VQAv2 defaults to LLaVA-1.5's
way (`llava`: the EvalAI processor on the prediction, then the current official `vqaEval.py`),
with the bare current `vqaEval.py` (`vqaeval`) and its 2016 revision (`vqaeval-2016`) as options;
OK-VQA / TextVQA / VizWiz to LLaVA's m4c evaluator (`evalai`); GQA to LLaVA's exact match
(`llava`) or vlm-evaluation's punctuation-free one (`vlm-evaluation`).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from decovlm.eval.benchmarks.base import (
    Benchmark,
    EvalItem,
    check_types,
    find_file,
    read_json,
    read_jsonl_rows,
    resolve_image,
    row_error,
    row_id,
    short_answer_prompt,
)
from decovlm.eval.metrics import (
    gqa_exact_match,
    llava_vqav2_accuracy,
    mean,
    resolve_convention,
    vqa_accuracy,
    vqaeval_2016_accuracy,
    vqaeval_accuracy,
)


def _answer_texts(raw) -> list[str] | None:
    """Annotator answers as strings from [{"answer": ..}, ..] or [str, ..]; None if unusable."""
    if not isinstance(raw, list) or not raw:
        return None
    out = [a.get("answer") if isinstance(a, dict) else a for a in raw]
    return [str(a) for a in out] if all(a is not None for a in out) else None


def _load_coco_vqa(data_dir: Path, split: str, q_name: str, a_name: str) -> list[EvalItem]:
    questions = read_json(find_file(data_dir, [q_name.format(split=split)], "question file"))
    ann_path = data_dir / a_name.format(split=split)
    gold: dict[str, dict] = {}
    if ann_path.is_file():
        anns = read_json(ann_path)
        for ann in _list(anns.get("annotations") if isinstance(anns, dict) else None):
            if isinstance(ann, dict):
                gold[row_id(ann, "question_id", "")] = ann
    items = []
    for i, q in enumerate(
        _list(questions.get("questions") if isinstance(questions, dict) else None)
    ):
        qid = row_id(q, "question_id", f"row{i}")
        err = row_error(q, f"question {qid}", ("question", "image_id"), text=("question",))
        if not err and not str(q["image_id"]).strip().isdecimal():
            err = f"question {qid}: image_id must be a number, got {q['image_id']!r}"
        if err:
            items.append(EvalItem(qid, "", error=err))
            continue
        rel = f"COCO_{split}_{int(q['image_id']):012d}.jpg"
        ann = gold.get(qid)
        items.append(
            EvalItem(
                qid,
                short_answer_prompt(q["question"]),
                image=resolve_image(data_dir, rel, (split, "images", "")),
                gold=_answer_texts(ann.get("answers")) if ann else None,
                meta={"answer_type": ann.get("answer_type")} if ann else {},
            )
        )
    return items


def _list(value) -> list:
    return value if isinstance(value, list) else []


def load_vqav2(data_dir: Path, split: str | None, options: dict) -> list[EvalItem]:
    split = split or "val2014"
    return _load_coco_vqa(
        data_dir,
        split,
        "v2_OpenEnded_mscoco_{split}_questions.json",
        "v2_mscoco_{split}_annotations.json",
    )


def load_okvqa(data_dir: Path, split: str | None, options: dict) -> list[EvalItem]:
    split = split or "val2014"
    return _load_coco_vqa(
        data_dir,
        split,
        "OpenEnded_mscoco_{split}_questions.json",
        "mscoco_{split}_annotations.json",
    )


def load_textvqa(data_dir: Path, split: str | None, options: dict) -> list[EvalItem]:
    split = split or "val"
    ann = read_json(find_file(data_dir, [f"TextVQA_0.5.1_{split}.json"], "TextVQA annotation file"))
    records = ann.get("data", []) if isinstance(ann, dict) else []
    llava = data_dir / "llava_textvqa_val_v051_ocr.jsonl"
    use_ocr = options.get("ocr", True)
    llava_prompts: dict[tuple[str, str], str] = {}
    if llava.is_file() and split == "val" and use_ocr:
        # LLaVA's exact prompts; they match the annotations on (image_id, question) as in its scorer.
        for _, row, _err in read_jsonl_rows(llava):
            if row and row.get("text") and row.get("image"):
                key = (
                    Path(str(row["image"])).stem,
                    str(row["text"]).split("\n")[0].strip().lower(),
                )
                llava_prompts[key] = str(row["text"])
    items = []
    for i, rec in enumerate(_list(records)):
        qid = row_id(rec, "question_id", f"row{i}")
        err = row_error(
            rec,
            f"question {qid}",
            ("question", "image_id"),
            paths=("image_id",),
            text=("question",),
            text_lists=("ocr_tokens",),
        )
        if err:
            items.append(EvalItem(qid, "", error=err))
            continue
        prompt = llava_prompts.get((str(rec["image_id"]), str(rec["question"]).strip().lower()))
        if prompt is None:
            question = str(rec["question"]).strip()
            tokens = rec.get("ocr_tokens")
            if use_ocr and tokens:
                question += "\nReference OCR token: " + ", ".join(map(str, tokens))
            prompt = short_answer_prompt(question)
        items.append(
            EvalItem(
                qid,
                prompt,
                image=resolve_image(
                    data_dir, f"{rec['image_id']}.jpg", ("train_images", "images", "")
                ),
                gold=_answer_texts(rec.get("answers")),
            )
        )
    return items


def load_vizwiz(data_dir: Path, split: str | None, options: dict) -> list[EvalItem]:
    split = split or "val"
    records = read_json(
        find_file(
            data_dir, [f"{split}.json", f"Annotations/{split}.json"], "VizWiz annotation file"
        )
    )
    items = []
    for i, rec in enumerate(records if isinstance(records, list) else []):
        qid = row_id(rec, "image", f"row{i}")
        err = row_error(
            rec, f"row {i}", ("question", "image"), paths=("image",), text=("question",)
        )
        if err:
            items.append(EvalItem(qid, "", error=err))
            continue
        items.append(
            EvalItem(
                qid,
                short_answer_prompt(rec["question"], unanswerable=True),
                image=resolve_image(data_dir, rec["image"], (split, "images", "")),
                gold=_answer_texts(rec.get("answers")),
                meta={"answer_type": rec.get("answer_type")},
            )
        )
    return items


_SOFT = {
    "llava": llava_vqav2_accuracy,
    "vqaeval": vqaeval_accuracy,
    "vqaeval-2016": vqaeval_2016_accuracy,
    "evalai": vqa_accuracy,
}


def make_vqa_scorer(benchmark: str):
    """The soft-accuracy scorer of `benchmark`, in the convention its options select."""

    def score(items: list[EvalItem], answers: dict[str, str | None], options: dict) -> dict:
        soft = _SOFT[resolve_convention(benchmark, options).name]
        return score_vqa(items, answers, options, soft)

    return score


def score_vqa(
    items: list[EvalItem], answers: dict[str, str | None], options: dict, soft=vqa_accuracy
) -> dict:
    """VQA soft accuracy (%) over items with annotations, overall and per answer type.

    `soft(prediction, answers)` is the per-question accuracy (default: LLaVA's m4c evaluator).
    """

    def one(it: EvalItem) -> float:
        answer = answers.get(it.question_id)
        return 0.0 if it.error or answer is None or not it.gold else soft(answer, it.gold)

    scored = [(it, one(it)) for it in items if it.gold or it.error]
    per_type: dict[str, list[float]] = defaultdict(list)
    for it, acc in scored:
        if it.meta.get("answer_type"):
            per_type[str(it.meta["answer_type"])].append(acc)
    out = {
        "accuracy": 100 * mean([a for _, a in scored]),
        "n": len(scored),
        "n_unscored": len(items) - len(scored),
    }
    if per_type:
        out["answer_types"] = {k: 100 * mean(v) for k, v in sorted(per_type.items())}
    return out


def load_gqa(data_dir: Path, split: str | None, options: dict) -> list[EvalItem]:
    split = split or "testdev_balanced"
    questions = read_json(
        find_file(data_dir, [f"{split}_questions.json", f"questions/{split}_questions.json"], "GQA")
    )
    items = []
    for qid, q in questions.items() if isinstance(questions, dict) else []:
        err = row_error(q, f"question {qid}", ("question", "imageId"), paths=("imageId",))
        err = err or check_types(q, f"question {qid}", text=("question", "answer"))
        if err:
            items.append(EvalItem(str(qid), "", error=err))
            continue
        items.append(
            EvalItem(
                str(qid),
                short_answer_prompt(q["question"]),
                image=resolve_image(data_dir, f"{q['imageId']}.jpg", ("images", "")),
                gold=q.get("answer"),
                meta={
                    "type": q["types"].get("structural")
                    if isinstance(q.get("types"), dict)
                    else None
                },
            )
        )
    return items


def score_gqa(items: list[EvalItem], answers: dict[str, str | None], options: dict) -> dict:
    strip = resolve_convention("gqa", options).name == "vlm-evaluation"
    scored = [it for it in items if it.gold is not None or it.error]
    accs = [
        gqa_exact_match(answers.get(it.question_id), it.gold or "", strip) if not it.error else 0.0
        for it in scored
    ]
    return {
        "accuracy": 100 * mean(accs),
        "n": len(scored),
    }


_NOTE = "question + '\\n" + "Answer the question using a single word or phrase.' (LLaVA-1.5)"
BENCHMARKS = [
    Benchmark(
        "vqav2",
        "VQAv2 (soft accuracy)",
        load_vqav2,
        make_vqa_scorer("vqav2"),
        "val2014",
        prompt_note=_NOTE,
    ),
    Benchmark(
        "okvqa",
        "OK-VQA (soft accuracy)",
        load_okvqa,
        make_vqa_scorer("okvqa"),
        "val2014",
        prompt_note=_NOTE,
    ),
    Benchmark(
        "textvqa",
        "TextVQA (soft accuracy)",
        load_textvqa,
        make_vqa_scorer("textvqa"),
        "val",
        prompt_note=_NOTE + " with OCR tokens",
    ),
    Benchmark(
        "vizwiz",
        "VizWiz (soft accuracy)",
        load_vizwiz,
        make_vqa_scorer("vizwiz"),
        "val",
        prompt_note=_NOTE + " + Unanswerable",
    ),
    Benchmark(
        "gqa",
        "GQA test-dev (exact match)",
        load_gqa,
        score_gqa,
        "testdev_balanced",
        prompt_note=_NOTE,
    ),
]
