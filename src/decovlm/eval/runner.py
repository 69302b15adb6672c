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
  Scored with another convention than the run's own (a rerun with another `convention`, or
  `rescore_benchmark`), the scores go to scores.<convention>.json beside it instead.
- run.json: benchmark / split / the options that change prompts or answers / model, and the run's
  own convention. A rerun into the same folder with other prompts or another model is refused, so
  answers from two set-ups never mix; one that only changes how answers are scored (the
  convention, or naming the default explicitly) reuses them.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm.auto import tqdm

from decovlm.errors import MissingFileError, UserError, disk_full_is_a_user_error
from decovlm.eval.benchmarks import Benchmark, EvalItem, get_benchmark
from decovlm.eval.metrics.conventions import (
    Convention,
    generation_options,
    has_conventions,
    resolve_convention,
)
from decovlm.utils.io import append_jsonl_many, atomic_write_json, read_json, read_jsonl

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


def convention_of(bench: Benchmark, options: dict[str, Any]) -> Convention | None:
    """The scoring convention `options` select (UserError for an unknown one or a conflict); None
    for a benchmark defined outside decovlm (a custom `Benchmark` has no registered conventions)."""
    return resolve_convention(bench.name, options) if has_conventions(bench.name) else None


def run_info(
    bench: Benchmark, split: str | None, options: dict[str, Any], model_name: str | None
) -> dict[str, Any]:
    """What run.json records: what decides the answers, plus the convention they are scored with."""
    convention = convention_of(bench, options)
    return {
        "benchmark": bench.name,
        "split": split,
        "options": generation_options(options),
        "model": model_name,
        "convention": convention.name if convention else None,
    }


_RUN_KEYS = ("benchmark", "split", "options", "model")


def check_run_folder(out_dir: str | Path, info: dict[str, Any]) -> str | None:
    """The convention of the run `out_dir` already holds (None when it holds none yet).

    UserError when it holds answers of another set-up (benchmark, split, prompt options, model):
    they must not mix. Scoring options are not compared, so rerunning with another convention, or
    naming the default explicitly, reuses the answers.
    """
    path = Path(out_dir) / RUN
    if not path.is_file():
        return None
    previous = read_json(path)
    if not isinstance(previous, dict):
        previous = {}
    prev = {**previous, "options": generation_options(previous.get("options") or {})}
    # A run without a model name (a bare generate_fn) matches any model.
    differ = [
        k
        for k in _RUN_KEYS
        if prev.get(k) != info.get(k) and not (k == "model" and None in (prev.get(k), info.get(k)))
    ]
    if differ:
        was = ", ".join(f"{k}={prev.get(k)!r}" for k in differ)
        now = ", ".join(f"{k}={info.get(k)!r}" for k in differ)
        raise UserError(
            f"{out_dir} holds answers of another run ({was}; this run: {now}); use another --out "
            "folder or delete it"
        )
    if "convention" in previous:
        return previous["convention"]
    # run.json of an older decovlm: the convention its options select
    name = str(previous.get("benchmark"))
    return (
        resolve_convention(name, previous.get("options") or {}).name
        if has_conventions(name)
        else None
    )


def scores_name(convention: str | None, run_convention: str | None) -> str:
    """scores.json for the run's own convention, scores.<convention>.json for any other."""
    if convention is None or run_convention in (None, convention):
        return SCORES
    return f"scores.{convention}.json"


def _prepare_run_folder(out_dir: Path, info: dict[str, Any]) -> str | None:
    if (out_dir / RUN).is_file():
        return check_run_folder(out_dir, info)
    atomic_write_json(out_dir / RUN, info)
    return info["convention"]


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
    """Generate the answers still missing in `out_dir`, then score all of them; returns the scores dict.

    The scores go to scores.json, or scores.<convention>.json when `out_dir` holds a run first
    scored with another convention (`scores_name`). A full disk is one line naming `out_dir`.
    """
    bench = get_benchmark(benchmark) if isinstance(benchmark, str) else benchmark
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}")
    if limit is not None and limit < 0:
        raise UserError(f"limit must be >= 0, got {limit}")
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if not data_dir.is_dir():
        raise MissingFileError(f"--data folder {data_dir} does not exist")
    options = dict(options or {})
    # An unknown convention name fails here, before anything is generated.
    split = split or bench.default_split
    info = run_info(bench, split, options, model_name)
    with disk_full_is_a_user_error(out_dir, "the answers written so far are kept and reused"):
        out_dir.mkdir(parents=True, exist_ok=True)
        run_convention = _prepare_run_folder(out_dir, info)
        items = _dedupe(bench.load(data_dir, split, options))
        if limit is not None:
            items = items[:limit]
        done = _generate(bench, generate_fn, items, out_dir / ANSWERS, batch_size, progress)
        result = score_answers(bench, items, done, split, options, model_name)
        atomic_write_json(out_dir / scores_name(info["convention"], run_convention), result)
    return result


def _generate(
    bench: Benchmark,
    generate_fn: GenerateFn,
    items: list[EvalItem],
    answers_path: Path,
    batch_size: int,
    progress: bool,
) -> dict[str, dict[str, Any]]:
    """Answer the items without an answer in `answers_path` (appending each); all records by id."""
    done = {str(r["question_id"]): r for r in read_jsonl(answers_path) if "question_id" in r}
    todo = [it for it in items if it.question_id not in done or done[it.question_id].get("error")]
    if batch_size > 1:
        # Batches of similar prompts (as lmms-eval sorts by length): less padding, and the long
        # answers of one task decode together instead of holding up every batch.
        todo.sort(key=lambda it: len(it.prompt))
    bar = tqdm(total=len(todo), desc=bench.name, disable=not progress, unit="q")
    pending: list[dict[str, Any]] = []  # written once per batch: one write and fsync

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
            pending.append(rec)
        done[item.question_id] = rec
        bar.update(1)

    def write() -> None:
        append_jsonl_many(answers_path, pending)
        pending.clear()

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
        write()

    for item in todo:
        if item.error:
            record(item, None, item.error)
            write()
            continue
        try:
            image = open_item_image(item)
        except ValueError as err:
            record(item, None, f"question {item.question_id}: {err}")
            write()
            continue
        batch.append((item, image))
        if len(batch) >= batch_size:
            flush()
    flush()
    bar.close()
    return done


def score_answers(
    bench: Benchmark,
    items: list[EvalItem],
    done: dict[str, dict[str, Any]],
    split: str | None,
    options: dict[str, Any],
    model_name: str | None,
) -> dict[str, Any]:
    """The scores dict of `items` given the answer records `done` (by question id)."""
    convention = convention_of(bench, options)
    answers = {qid: (None if r.get("error") else r.get("answer")) for qid, r in done.items()}
    errors = [
        done[it.question_id]["error"] for it in items if done.get(it.question_id, {}).get("error")
    ]
    return {
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


def rescore_benchmark(
    out_dir: str | Path,
    data_dir: str | Path,
    options: dict[str, Any] | None = None,
    benchmark: str | None = None,
) -> tuple[dict[str, Any], Path]:
    """Score the answers saved in `out_dir` again, under the scoring `options` (e.g. another
    `convention`); nothing is generated and no model is needed. Returns (scores, file written).

    Benchmark, split and prompt options are the run's own (run.json); `data_dir` supplies the
    reference answers. The questions scored are those with an answer record in answers.jsonl (the
    ones the run asked, `--limit` included). The file is scores.json for the run's own convention,
    scores.<convention>.json for another (`scores_name`), written atomically.
    """
    out_dir, data_dir = Path(out_dir), Path(data_dir)
    if not (out_dir / RUN).is_file() or not (out_dir / ANSWERS).is_file():
        raise MissingFileError(
            f"--out {out_dir}: no saved run to rescore (it needs the {RUN} and {ANSWERS} that "
            "`decovlm eval` writes)"
        )
    if not data_dir.is_dir():
        raise MissingFileError(f"--data folder {data_dir} does not exist")
    saved = read_json(out_dir / RUN)
    if not isinstance(saved, dict) or not saved.get("benchmark"):
        raise UserError(f"{out_dir / RUN}: not a decovlm eval run file (no benchmark)")
    name = str(saved["benchmark"])
    if benchmark is not None and benchmark != name:
        raise UserError(f"--benchmark {benchmark}: {out_dir} holds answers of benchmark {name}")
    bench = get_benchmark(name)
    scoring = {k: v for k, v in (options or {}).items() if k not in generation_options(options)}
    run_options = {**generation_options(saved.get("options") or {}), **scoring}
    split = saved.get("split")
    info = run_info(bench, split, run_options, saved.get("model"))
    run_convention = check_run_folder(out_dir, info)
    done = {str(r["question_id"]): r for r in read_jsonl(out_dir / ANSWERS) if "question_id" in r}
    items = [
        it for it in _dedupe(bench.load(data_dir, split, run_options)) if it.question_id in done
    ]
    result = score_answers(bench, items, done, split, run_options, saved.get("model"))
    path = out_dir / scores_name(info["convention"], run_convention)
    with disk_full_is_a_user_error(out_dir, "the saved answers are unchanged"):
        atomic_write_json(path, result)
    return result, path


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
