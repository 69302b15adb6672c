"""Yes/no benchmarks: POPE (official jsonl files) and MME (the official release folders).

- pope: coco_pope_{random,popular,adversarial}.json under --data or --data/output/coco (jsonl
  despite the extension; each line {question_id, image, text, label}); images under val2014/,
  images/ or --data. --split picks one split or a comma list; default all three.
- mme: --data is MME_Benchmark_release_version (or its parent); each subtask folder holds either
  images/ + questions_answers_YN/*.txt or images and .txt side by side; each .txt line is
  "question<TAB>answer", two lines per image.
"""

from __future__ import annotations

import re
from pathlib import Path

from decovlm.eval.benchmarks.base import (
    SHORT_ANSWER,
    Benchmark,
    EvalItem,
    as_percent,
    check_types,
    read_jsonl_rows,
    require,
    resolve_image,
    short_answer_prompt,
)
from decovlm.eval.metrics import mme_scores, pope_scores

POPE_SPLITS = ("random", "popular", "adversarial")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")


def load_pope(data_dir: Path, split: str | None, options: dict) -> list[EvalItem]:
    splits = (
        POPE_SPLITS if split in (None, "", "all") else tuple(s.strip() for s in split.split(","))
    )
    for s in splits:
        if s not in POPE_SPLITS:
            raise ValueError(
                f"--split for pope must be one of {', '.join(POPE_SPLITS)} or 'all', got {s!r}"
            )
    items = []
    for s in splits:
        name = f"coco_pope_{s}.json"
        path = (
            data_dir / name if (data_dir / name).is_file() else data_dir / "output" / "coco" / name
        )
        if not path.is_file():
            raise FileNotFoundError(
                f"POPE split {s!r}: {name} not found under {data_dir} or {data_dir}/output/coco"
            )
        for line, row, err in read_jsonl_rows(path):
            qid = f"{s}/{row.get('question_id', f'line{line}')}" if row else f"{s}/line{line}"
            where = f"{path.name} line {line}"
            err = (
                err
                or require(row, ("image", "text", "label"), where)
                or check_types(row, where, paths=("image",), text=("text", "label"))
            )
            label = str(row.get("label", "")).strip().lower() if row else ""
            if not err and label not in ("yes", "no"):
                err = f"{path.name} line {line}: label must be yes/no, got {row.get('label')!r}"
            if err:
                items.append(EvalItem(qid, "", error=err, meta={"split": s}))
                continue
            items.append(
                EvalItem(
                    qid,
                    short_answer_prompt(str(row["text"])),
                    image=resolve_image(data_dir, str(row["image"]), ("val2014", "images", "")),
                    gold=label,
                    meta={"split": s},
                )
            )
    return items


def score_pope(items: list[EvalItem], answers: dict[str, str | None], options: dict) -> dict:
    # Malformed rows have no label: they can only be reported, not put in the confusion matrix.
    valid = [it for it in items if it.gold in ("yes", "no")]
    scores = as_percent(
        pope_scores(
            [None if it.error else answers.get(it.question_id) for it in valid],
            [it.gold for it in valid],
            [it.meta["split"] for it in valid],
        )
    )
    scores["n_malformed"] = len(items) - len(valid)
    return scores


_PLEASE = re.compile(r"\s*Please answer yes or no\.?\s*$")


def _mme_root(data_dir: Path) -> Path:
    nested = data_dir / "MME_Benchmark_release_version"
    root = nested if nested.is_dir() else data_dir
    if not root.is_dir() or not any(p.is_dir() for p in root.iterdir()):
        raise FileNotFoundError(f"no MME subtask folders under {root}")
    return root


def _find_image(folder: Path, stem: str) -> Path:
    for suffix in _IMAGE_SUFFIXES:
        if (folder / f"{stem}{suffix}").exists():
            return folder / f"{stem}{suffix}"
    return folder / f"{stem}.png"


def load_mme(data_dir: Path, split: str | None, options: dict) -> list[EvalItem]:
    root = _mme_root(data_dir)
    wanted = None if split in (None, "", "all") else {s.strip() for s in split.split(",")}
    items = []
    for task_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        task = task_dir.name
        if wanted is not None and task not in wanted:
            continue
        qa_dir = task_dir / "questions_answers_YN"
        img_dir = task_dir / "images"
        if not qa_dir.is_dir():
            qa_dir, img_dir = task_dir, task_dir
        for txt in sorted(qa_dir.glob("*.txt")):
            image = _find_image(img_dir, txt.stem)
            lines = [
                ln
                for ln in txt.read_text(encoding="utf-8", errors="replace").splitlines()
                if ln.strip()
            ]
            for k, line in enumerate(lines):
                qid = f"{task}/{image.name}/{k}"
                meta = {"subtask": task, "image_id": f"{task}/{image.name}"}
                parts = line.split("\t")
                if len(parts) < 2 or parts[1].strip().lower() not in ("yes", "no"):
                    items.append(
                        EvalItem(
                            qid,
                            "",
                            error=f"{txt}: line {k + 1} is not 'question<TAB>yes|no'",
                            meta=meta,
                        )
                    )
                    continue
                question = _PLEASE.sub("", parts[0]).strip()
                items.append(
                    EvalItem(
                        qid,
                        f"{question}\n{SHORT_ANSWER}",
                        image=str(image),
                        gold=parts[1].strip().lower(),
                        meta=meta,
                    )
                )
    return items


def score_mme(items: list[EvalItem], answers: dict[str, str | None], options: dict) -> dict:
    valid = [it for it in items if it.gold in ("yes", "no")]
    scores = mme_scores(
        [None if it.error else answers.get(it.question_id) for it in valid],
        [it.gold for it in valid],
        [it.meta["subtask"] for it in valid],
        [it.meta["image_id"] for it in valid],
    )
    scores["n_malformed"] = len(items) - len(valid)
    return scores


BENCHMARKS = [
    Benchmark(
        "pope",
        "POPE (LLaVA yes/no parser; acc / precision / recall / F1 / yes-ratio per split)",
        load_pope,
        score_pope,
        None,
        prompt_note="POPE text + '\\nAnswer the question using a single word or phrase.'",
    ),
    Benchmark(
        "mme",
        "MME (perception / cognition = sum of 100*acc + 100*acc+)",
        load_mme,
        score_mme,
        None,
        prompt_note="' Please answer yes or no.' replaced by the short-answer suffix (LLaVA-1.5)",
    ),
]
