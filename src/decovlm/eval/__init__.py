"""Evaluation: pure metrics, benchmark loaders/scorers, a resumable runner, the synthetic benchmark, lmms-eval adapter.

from decovlm.eval import run_benchmark, rescore_benchmark, evaluate_synthetic, decovlm_generate_fn
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from decovlm.eval.benchmarks import BENCHMARKS, Benchmark, EvalItem, get_benchmark
from decovlm.eval.runner import GenerateFn, print_scores, rescore_benchmark, run_benchmark


def evaluate_synthetic(
    generate_fn: GenerateFn,
    data_dir: str | Path,
    out_dir: str | Path,
    limit: int | None = None,
    progress: bool = False,
    batch_size: int = 1,
) -> dict[str, Any]:
    """Score `generate_fn` on the synthetic world's held-out questions (<data_dir>/eval/questions.jsonl).

    Returns the per-category scores (vqa, count, localization, yesno, multiple_choice, overall;
    accuracies in %); answers.jsonl and scores.json are written to `out_dir` (resumable).
    `batch_size` questions go to `generate_fn` at a time.
    """
    return run_benchmark(
        "synthetic",
        generate_fn,
        data_dir,
        out_dir,
        limit=limit,
        progress=progress,
        batch_size=batch_size,
    )["scores"]


def decovlm_generate_fn(
    model, processor, batch_size: int = 1, max_new_tokens: int = 128, chat_template: str = "auto"
):
    """See `decovlm.eval.generate.decovlm_generate_fn` (imported lazily: it needs torch)."""
    from decovlm.eval.generate import decovlm_generate_fn as make

    return make(model, processor, batch_size, max_new_tokens, chat_template)


__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "EvalItem",
    "GenerateFn",
    "decovlm_generate_fn",
    "evaluate_synthetic",
    "get_benchmark",
    "print_scores",
    "rescore_benchmark",
    "run_benchmark",
]
