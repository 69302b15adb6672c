"""`decovlm predict`: answer every question of a JSONL file with a saved model, batched and resumable.

    decovlm predict --model runs/deco/model --input questions.jsonl --out answers.jsonl

Each input line is `{"id": ..., "question": "...", "image": "images/1.png"}`; `image` is optional
(text-only) and relative to the input file's folder; `id` defaults to the line number. Each answer
is appended to `--out` as the input row with the answer added under `"prediction"` (`--prediction-key`;
every other field, a reference `"answer"` included, is kept as it was) as soon as its batch is done,
so a run that stops is continued by running the same command again: ids already in `--out` are
skipped. Bad rows (not JSON, no question, a duplicate id, a missing or unreadable image) are
skipped, counted, named on the terminal and written once to `OUT.errors.jsonl` (rewritten each
run, so a fixed row leaves it). Questions are prompted through the processor with the chat
template saved with the model, exactly as `decovlm eval` does (greedy decoding).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from decovlm.cli_args import add_chat_template_argument, add_loading_arguments

PREDICTION_KEY = "prediction"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="a saved decovlm model folder (with its processor)"
    )
    parser.add_argument(
        "--input", required=True, help='questions JSONL: {"id", "question", "image"} per line'
    )
    parser.add_argument(
        "--out",
        required=True,
        help="answers JSONL (appended to; resumable): each input row, every field kept, with the "
        "answer under --prediction-key",
    )
    parser.add_argument(
        "--prediction-key",
        default=PREDICTION_KEY,
        help=f"the field the answer is written to (default {PREDICTION_KEY!r}; a row that already "
        "has it is a bad row)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=8,
        help="questions per generate call (1 gives exactly `decovlm eval`'s answers: left "
        "padding changes a few greedy answers)",
    )
    parser.add_argument("--max-new-tokens", type=int, default=128, help="longest answer, in tokens")
    add_chat_template_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_loading_arguments(parser)


@dataclass
class Question:
    id: object
    question: str
    image: str | None  # as written in the input
    image_path: Path | None  # resolved against the input's folder
    row: dict = field(default_factory=dict)  # the input row, written back with the answer


@dataclass
class PredictStats:
    answered: int = 0
    skipped_done: int = 0
    bad: list[dict] = field(default_factory=list)


def read_questions(
    path: str | os.PathLike, prediction_key: str = PREDICTION_KEY
) -> tuple[list[Question], list[dict]]:
    """The valid questions of a JSONL file, and one {"line", "id", "error"} per bad row."""
    from decovlm.errors import MissingFileError

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"--input: no file {path}")
    root = path.resolve().parent
    questions: list[Question] = []
    bad: list[dict] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                bad.append({"line": n, "id": None, "error": f"not valid JSON ({err.msg})"})
                continue
            if not isinstance(row, dict):
                bad.append({"line": n, "id": None, "error": "not a JSON object"})
                continue
            qid = row.get("id", n)
            error = _row_error(row, qid, seen, root, prediction_key)
            if error:
                bad.append({"line": n, "id": qid, "error": error})
                continue
            seen.add(str(qid))
            image = row.get("image")
            questions.append(
                Question(qid, row["question"], image, (root / image) if image else None, row)
            )
    return questions, bad


def _row_error(row: dict, qid, seen: set[str], root: Path, prediction_key: str) -> str | None:
    if not isinstance(qid, str | int) or isinstance(qid, bool):
        return f"id must be a string or an integer, got {qid!r}"
    if str(qid) in seen:
        return f"duplicate id {qid!r}"
    if prediction_key in row:
        return f'already has a "{prediction_key}" field (the answer goes there: --prediction-key)'
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        return 'no "question" (a non-empty string)'
    image = row.get("image")
    if image is not None:
        if not isinstance(image, str) or not image:
            return '"image" must be a path (string)'
        if not (root / image).is_file():
            return f"image not found: {root / image}"
    return None


def done_ids(out: Path) -> set[str]:
    """Ids already answered in `out`; a line cut short by a crash is removed first."""
    from decovlm.utils.io import atomic_write_text, read_jsonl

    if not out.is_file():
        return set()
    text = out.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):  # appending after a half line would corrupt the next
        atomic_write_text(out, text[: text.rfind("\n") + 1])
    return {str(r.get("id")) for r in read_jsonl(out)}


def predict(
    model,
    processor,
    questions: list[Question],
    out: str | os.PathLike,
    batch_size: int = 8,
    max_new_tokens: int = 128,
    chat_template: str | None = None,
    progress: bool = True,
    prediction_key: str = PREDICTION_KEY,
) -> PredictStats:
    """Answer the questions not yet in `out`, appending one JSON line per answer."""
    from tqdm.auto import tqdm

    from decovlm.eval.generate import generate_answers
    from decovlm.modeling.processing import load_image
    from decovlm.utils.io import append_jsonl

    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    out = Path(out)
    done = done_ids(out)
    todo = [q for q in questions if str(q.id) not in done]
    stats = PredictStats(skipped_done=len(questions) - len(todo))
    model.eval()
    bar = tqdm(total=len(todo), desc="predict", unit="q", disable=not progress)
    for start in range(0, len(todo), batch_size):
        batch, items = [], []
        for q in todo[start : start + batch_size]:
            try:
                image = load_image(q.image_path) if q.image_path is not None else None
            except ValueError as err:
                stats.bad.append({"line": None, "id": q.id, "error": str(err)})
                continue
            batch.append((image, q.question))
            items.append(q)
        answers = generate_answers(model, processor, batch, max_new_tokens, chat_template or "auto")
        for q, answer in zip(items, answers, strict=True):
            append_jsonl(out, {"id": q.id, **q.row, prediction_key: answer})
            stats.answered += 1
        bar.update(len(todo[start : start + batch_size]))
    bar.close()
    return stats


def errors_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".errors.jsonl")


def write_errors(out: str | os.PathLike, bad: list[dict]) -> Path | None:
    """This run's bad rows, once each, in OUT.errors.jsonl (removed when there are none)."""
    from decovlm.utils.io import atomic_write_text

    path = errors_path(out)
    if not bad:
        path.unlink(missing_ok=True)
        return None
    atomic_write_text(path, "".join(json.dumps(b, default=str) + "\n" for b in bad))
    return path


def run(args: argparse.Namespace) -> int:
    from decovlm.errors import UserError
    from decovlm.modeling.loading import check_model_folder, load_model

    # Bad arguments and input are reported before the model loads.
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    questions, bad = read_questions(args.input, args.prediction_key)
    if not questions and not bad:
        raise UserError(
            f'--input {args.input}: no questions (the file is empty; one {{"id", "question", '
            '"image"} JSON object per line)'
        )
    check_model_folder(args.model, "--model")
    model, processor = load_model(
        args.model, args.device, args.dtype, args.use_kernels, args.allow_missing_weights
    )
    stats = PredictStats()
    try:
        stats = predict(
            model,
            processor,
            questions,
            args.out,
            args.batch_size,
            args.max_new_tokens,
            args.chat_template,
            progress=not args.no_progress,
            prediction_key=args.prediction_key,
        )
    finally:
        bad = bad + stats.bad
        errors = write_errors(args.out, bad)
    print(
        f"answered {stats.answered} question(s) -> {args.out}"
        + (f" ({stats.skipped_done} already there)" if stats.skipped_done else "")
    )
    if bad:
        named = ", ".join(
            f"line {b['line']}" if b["id"] is None else f"id {b['id']}" for b in bad[:10]
        )
        print(f"skipped {len(bad)} bad row(s): {named}{' ...' if len(bad) > 10 else ''}")
        print(f"  reasons written to {errors}; first: {bad[0]['error']}")
    return 0
