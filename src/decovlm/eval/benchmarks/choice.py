"""Multiple-choice benchmarks: MMBench (TSV with base64 images, CircularEval) and SEED-Bench (image).

- mmbench: <split>.tsv under --data (default mmbench_dev_20230712); columns index, question, hint,
  A..E, answer, category, image (base64; a short numeric value refers to another row's image).
  Rows whose index differs by a multiple of 1e6 are rotations of one question. A TSV without
  such rows is rotated here, as LLaVA's --all-rounds does (option `all_rounds`, default auto).
  Scored with VLMEvalKit's option matcher (convention `vlmevalkit`). A malformed row (no
  question, fewer than two options, a duplicate index) drops its whole question from CircularEval:
  its rotations cannot all be asked, so the question is neither passed nor failed; scores.json
  counts and lists the dropped questions (`n_dropped_questions`, `dropped_questions`).
- seed: SEED-Bench.json + SEED-Bench-image/<data_id>; --split image (default) or all (video
  questions then use LLaVA's extracted middle frames SEED-Bench-video-image/<question_id>.png).
  Convention `llava` (default: the answer must be exactly the letter, as LLaVA's
  convert_seed_for_submission.py) or `lmms-eval` (first character, case-insensitive).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from decovlm.eval.benchmarks.base import (
    Benchmark,
    EvalItem,
    choice_prompt,
    find_file,
    read_json,
    resolve_image,
    row_error,
    row_id,
)
from decovlm.eval.metrics import (
    choice_accuracy,
    circular_accuracy,
    extract_option,
    resolve_convention,
    seed_letter,
)

_ROTATION = 1_000_000
_MISSING = ("", "nan", "none")


def _cell(row: dict, key: str) -> str:
    value = row.get(key)
    return "" if value is None or str(value).strip().lower() in _MISSING else str(value).strip()


def _read_tsv(path: Path) -> list[dict]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # base64 images exceed the default cell limit
    from decovlm.errors import UserError

    try:
        with path.open(encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f, delimiter="\t"))
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    except csv.Error as err:
        raise UserError(f"{path}: not a readable TSV file ({err})") from None


def load_mmbench(data_dir: Path, split: str | None, options: dict) -> list[EvalItem]:
    split = split or "mmbench_dev_20230712"
    path = find_file(data_dir, [f"{split}.tsv", split], "MMBench TSV")
    rows = _read_tsv(path)
    images = {_cell(r, "index"): _cell(r, "image") for r in rows}
    # isdecimal, not isdigit: int() refuses digits such as '²' that isdigit accepts
    indices = [int(_cell(r, "index")) for r in rows if _cell(r, "index").lstrip("-").isdecimal()]
    has_rotations = any(i >= _ROTATION for i in indices)
    all_rounds = options.get("all_rounds", "auto")
    rotate = (not has_rotations) if all_rounds == "auto" else bool(all_rounds)
    items = []
    for n, row in enumerate(rows, 2):  # line 1 is the header
        index = _cell(row, "index")
        opts = {k: _cell(row, k) for k in "ABCDE" if _cell(row, k)}
        if not index.lstrip("-").isdecimal() or not _cell(row, "question") or len(opts) < 2:
            qid = index or f"line{n}"
            items.append(
                EvalItem(
                    qid, "", error=f"{path.name} line {n}: needs index, question and >= 2 options"
                )
            )
            continue
        image = _cell(row, "image")
        if len(image) <= 64 and image in images:  # a reference to the row that holds the image
            image = images[image]
        answer = _cell(row, "answer").upper() or None
        group = str(int(index) % _ROTATION)
        meta = {"group": group, "category": _cell(row, "category") or "unknown"}
        hint = _cell(row, "hint") or None
        letters = list(opts)
        texts = [opts[k] for k in letters]
        for r in range(len(letters) if rotate else 1):
            # Round r shifts the option texts by r places; the gold letter moves with its text.
            rotated = dict(zip(letters, texts[r:] + texts[:r]))
            gold = None
            if answer in opts:
                gold = letters[(letters.index(answer) - r) % len(letters)]
            qid = index if r == 0 else f"{index}@{r}"
            items.append(
                EvalItem(
                    qid,
                    choice_prompt(row["question"], rotated, hint),
                    image_b64=image or None,
                    gold=gold,
                    meta={**meta, "options": rotated},
                )
            )
    return items


def _row_group(question_id: str) -> str | None:
    """The CircularEval question a malformed row belongs to ("1000005" and "5#dup2" -> "5")."""
    head = question_id.split("#", 1)[0].split("@", 1)[0]
    return str(int(head) % _ROTATION) if head.lstrip("-").isdecimal() else None


def score_mmbench(items: list[EvalItem], answers: dict[str, str | None], options: dict) -> dict:
    resolve_convention("mmbench", options)  # one convention; rejects unknown names
    # A question with a malformed row is dropped whole: scoring its other rotations alone would
    # pass a question that was never asked in every rotation.
    dropped = {g for it in items if it.error for g in [_row_group(it.question_id)] if g}
    unplaced = sum(1 for it in items if it.error and _row_group(it.question_id) is None)
    groups, correct, cats = [], [], []
    extracted_none = 0
    for it in items:
        if it.error or it.gold is None or it.meta["group"] in dropped:
            continue  # malformed, in a dropped question, or a test split without an answer key
        letter = extract_option(answers.get(it.question_id), it.meta["options"])
        extracted_none += letter is None
        groups.append(it.meta["group"])
        correct.append(letter == it.gold)
        cats.append(it.meta["category"])
    out = circular_accuracy(groups, correct, cats)
    out["single_pass_accuracy"] = 100 * sum(correct) / len(correct) if correct else 0.0
    out["n_unextracted"] = extracted_none
    out["n_dropped_questions"] = len(dropped)
    out["dropped_questions"] = sorted(dropped, key=int)[:50]
    out["n_malformed_rows_without_index"] = unplaced
    return out


def load_seed(data_dir: Path, split: str | None, options: dict) -> list[EvalItem]:
    split = split or "image"
    if split not in ("image", "all"):
        raise ValueError(f"--split for seed must be 'image' or 'all', got {split!r}")
    data = read_json(find_file(data_dir, ["SEED-Bench.json"], "SEED-Bench question file"))
    types = data.get("question_type") if isinstance(data, dict) else None
    type_names = (
        {v: k for k, v in types.items() if isinstance(v, str | int)}
        if isinstance(types, dict)
        else {}
    )
    questions = data.get("questions") if isinstance(data, dict) else None
    items = []
    for i, q in enumerate(questions if isinstance(questions, list) else []):
        qid = row_id(q, "question_id", f"row{i}")
        err = row_error(
            q,
            f"question {qid}",
            text=("question", "data_id", "answer", "question_type_id", "data_type")
            + tuple(f"choice_{k}" for k in "abcd"),
        )
        if err:
            items.append(EvalItem(qid, "", error=err))
            continue
        kind = q.get("data_type", "image")
        if kind != "image" and split == "image":
            continue
        opts = {k: str(q.get(f"choice_{k.lower()}", "")).strip() for k in "ABCD"}
        if not q.get("question") or not all(opts.values()) or not q.get("data_id"):
            items.append(
                EvalItem(
                    qid, "", error=f"question {qid}: needs question, data_id and choice_a..choice_d"
                )
            )
            continue
        if kind == "image":
            image = resolve_image(data_dir, str(q["data_id"]), ("SEED-Bench-image", ""))
        else:
            image = resolve_image(data_dir, f"{qid}.png", ("SEED-Bench-video-image",))
        items.append(
            EvalItem(
                qid,
                choice_prompt(q["question"], opts),
                image=image,
                gold=str(q.get("answer", "")).strip().upper() or None,
                meta={
                    "options": opts,
                    "data_type": kind,
                    "question_type": type_names.get(
                        q.get("question_type_id"), str(q.get("question_type_id"))
                    ),
                },
            )
        )
    return items


def score_seed(items: list[EvalItem], answers: dict[str, str | None], options: dict) -> dict:
    convention = resolve_convention("seed", options).name
    scored = [it for it in items if it.error or it.gold]
    preds = [
        None if it.error else seed_letter(answers.get(it.question_id), convention) for it in scored
    ]
    golds = [it.gold or "" for it in scored]
    out = choice_accuracy(
        preds, golds, [it.meta.get("question_type", "malformed") for it in scored]
    )
    by_kind = choice_accuracy(
        preds, golds, [it.meta.get("data_type", "malformed") for it in scored]
    )
    out["data_types"] = by_kind["categories"]
    return out


_NOTE = "[hint\\n]question, 'A. option' lines, \"Answer with the option's letter from the given choices directly.\""
BENCHMARKS = [
    Benchmark(
        "mmbench",
        "MMBench (CircularEval, VLMEvalKit's rule-based option matcher)",
        load_mmbench,
        score_mmbench,
        "mmbench_dev_20230712",
        prompt_note=_NOTE,
    ),
    Benchmark("seed", "SEED-Bench (accuracy)", load_seed, score_seed, "image", prompt_note=_NOTE),
]
