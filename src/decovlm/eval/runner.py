"""Run one benchmark with a given `generate_fn`: load items, generate in batches, append answers, score.

    result = run_benchmark("pope", generate_fn, data_dir, out_dir, batch_size=1)

`generate_fn(list of (PIL image or None, prompt)) -> list of answers` is all the runner knows of
the model, so the same runner serves the real model (`decovlm.eval.generate`), fakes in tests and
any other backend. Output folder:
- answers.jsonl: one line per question {question_id, prompt, answer, image[, error]}, appended
  (and fsynced) as answers come, so an interrupted run resumes where it stopped: a rerun skips
  questions already answered and retries those that failed.
- scores.json: the benchmark's scores plus run facts (prompts, options, counts, errors) and the
  scoring convention (`convention`, and `convention_source`: the official scorer it equals), atomic.
- run.json: benchmark / split / options of the run; a rerun into the same folder with different
  ones is refused, so answers from two set-ups never mix.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm.auto import tqdm

from decovlm.eval.benchmarks import Benchmark, EvalItem, get_benchmark
from decovlm.eval.metrics.conventions import has_conventions, resolve_convention
from decovlm.utils.io import append_jsonl, atomic_write_json, read_jsonl

GenerateFn = Callable[[Sequence[tuple[Image.Image | None, str]]], list[str]]
ANSWERS, SCORES, RUN = "answers.jsonl", "scores.json", "run.json"
MAX_LISTED_ERRORS = 50


def open_item_image(item: EvalItem) -> Image.Image | None:
    """The item's image as RGB, None for text-only items; ValueError naming the file when unreadable."""
    if item.image is None and item.image_b64 is None:
        return None
    from decovlm.utils.images import load_image

    if item.image is not None:
        if not Path(item.image).is_file():
            raise ValueError(f"missing image {item.image}")
        return load_image(item.image)
    try:
        data = base64.b64decode(item.image_b64, validate=False)
    except (ValueError, TypeError) as err:
        raise ValueError(f"cannot read image (inline base64): {err}") from None
    return load_image(data, name="(inline base64)")


def _check_run_file(out_dir: Path, run_info: dict) -> None:
    path = out_dir / RUN
    if path.is_file():
        from decovlm.utils.io import read_json

        previous = read_json(path)
        if not isinstance(previous, dict):
            previous = {}
        keys = ("benchmark", "split", "options", "model")
        # A run without a model name (a bare generate_fn) matches any model.
        if any(
            previous.get(k) != run_info.get(k)
            and not (k == "model" and None in (previous.get(k), run_info.get(k)))
            for k in keys
        ):
            raise ValueError(
                f"{out_dir} holds answers of another run ({', '.join(f'{k}={previous.get(k)!r}' for k in keys)}); "
                "use another --out folder or delete it"
            )
    atomic_write_json(path, run_info)


def _dedupe(items: list[EvalItem]) -> list[EvalItem]:
    """Keep the first item per question_id; later duplicates become errors with their own id."""
    seen: set[str] = set()
    out = []
    for it in items:
        if it.question_id in seen:
            n = 2
            while f"{it.question_id}#dup{n}" in seen:
                n += 1
            it = EvalItem(
                f"{it.question_id}#dup{n}",
                it.prompt,
                error=f"duplicate question_id {it.question_id}",
            )
        seen.add(it.question_id)
        out.append(it)
    return out


def run_benchmark(
    benchmark: str | Benchmark,
    generate_fn: GenerateFn,
    data_dir: str | Path,
    out_dir: str | Path,
    split: str | None = None,
    limit: int | None = None,
    batch_size: int = 1,
    options: dict[str, Any] | None = None,
    model_name: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate the answers still missing in `out_dir`, then score all of them; returns the scores.json dict."""
    bench = get_benchmark(benchmark) if isinstance(benchmark, str) else benchmark
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"--data folder {data_dir} does not exist")
    options = dict(options or {})
    # An unknown convention name fails here, before anything is generated. A benchmark defined
    # outside decovlm (a custom `Benchmark`) has no registered conventions and reports none.
    convention = resolve_convention(bench.name, options) if has_conventions(bench.name) else None
    split = split or bench.default_split
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_run_file(
        out_dir, {"benchmark": bench.name, "split": split, "options": options, "model": model_name}
    )
    items = _dedupe(bench.load(data_dir, split, options))
    if limit is not None:
        items = items[:limit]

    answers_path = out_dir / ANSWERS
    done = {str(r["question_id"]): r for r in read_jsonl(answers_path) if "question_id" in r}
    todo = [it for it in items if it.question_id not in done or done[it.question_id].get("error")]
    bar = tqdm(total=len(todo), desc=bench.name, disable=not progress, unit="q")

    def record(item: EvalItem, answer: str | None, error: str | None = None) -> None:
        rec = {
            "question_id": item.question_id,
            "prompt": item.prompt,
            "answer": answer,
            "image": item.image
            if item.image is not None
            else ("<inline>" if item.image_b64 else None),
        }
        if error:
            rec["error"] = error
        # A row that fails the same way again (a malformed row, a still-missing image) is
        # already recorded: one line per id, however many reruns.
        if not (error and done.get(item.question_id, {}).get("error") == error):
            append_jsonl(answers_path, rec)
        done[item.question_id] = rec
        bar.update(1)

    batch: list[tuple[EvalItem, Image.Image | None]] = []

    def flush() -> None:
        if not batch:
            return
        outputs = generate_fn([(img, it.prompt) for it, img in batch])
        if len(outputs) != len(batch):
            raise ValueError(
                f"generate_fn returned {len(outputs)} answers for {len(batch)} prompts"
            )
        for (it, _), text in zip(batch, outputs):
            record(it, str(text))
        batch.clear()

    for item in todo:
        if item.error:
            record(item, None, item.error)
            continue
        try:
            image = open_item_image(item)
        except ValueError as err:
            record(item, None, f"question {item.question_id}: {err}")
            continue
        batch.append((item, image))
        if len(batch) >= batch_size:
            flush()
    flush()
    bar.close()

    answers = {qid: (None if r.get("error") else r.get("answer")) for qid, r in done.items()}
    errors = [
        done[it.question_id]["error"] for it in items if done.get(it.question_id, {}).get("error")
    ]
    result = {
        "benchmark": bench.name,
        "description": bench.description,
        "split": split,
        "model": model_name,
        "options": options,
        "convention": convention.name if convention else None,
        "convention_source": convention.source if convention else None,
        "prompt": bench.prompt_note,
        "n_questions": len(items),
        "n_errors": len(errors),
        "errors": errors[:MAX_LISTED_ERRORS],
        "scores": bench.score(items, answers, options),
    }
    atomic_write_json(out_dir / SCORES, result)
    return result


def flatten_scores(scores: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """[("pope.random.f1", 0.87), ...]: nested score dicts as dotted rows for a table."""
    rows: list[tuple[str, Any]] = []
    for key, value in scores.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(flatten_scores(value, name + "."))
        elif isinstance(value, int | float | str) and not isinstance(value, bool):
            rows.append((name, value))
    return rows


def print_scores(result: dict[str, Any], console=None) -> None:
    """A rich table of a run's scores (the nested dicts flattened to dotted names)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    title = f"{result['benchmark']}" + (f" [{result['split']}]" if result.get("split") else "")
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in flatten_scores(result["scores"]):
        table.add_row(name, f"{value:.2f}" if isinstance(value, float) else str(value))
    console.print(table)
    if result.get("n_errors"):
        console.print(
            f"[yellow]{result['n_errors']} question(s) failed and count as wrong, e.g.: {result['errors'][0]}"
        )
