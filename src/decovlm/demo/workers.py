"""Run the demo's jobs (each run's align stage, then its question and grounding branches) side by
side, in worker processes.

The world's models are tiny: a training step is mostly small matrix products and Python, so a
second intra-op thread barely speeds it up, while a second process training another projector
does twice the work in the same time. On a CPU the demo therefore gives each job its own process
with `cores // workers` threads (at least one): by default one worker per job, up to two per core,
the system sharing the cores between them; jobs start longest first, so the last to start are
short and the workers finish together. On a GPU, or with `--workers 1`, the jobs go one after
another in this process. Each part is cached in its run's folder (`demo.runs`), so a killed demo
resumes whatever was finished.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback


def default_workers(device: str, runs: int) -> int:
    """On a CPU one worker per job, at most two per core; one on a GPU."""
    if not device.startswith("cpu"):
        return 1
    return max(1, min(runs, 2 * (os.cpu_count() or 1)))


class Progress(TrainerCallback):
    """A line every tenth of a stage: what a side-by-side run reports instead of a progress bar."""

    def __init__(self, log, name: str) -> None:
        self.log, self.name, self.start, self.last = log, name, time.perf_counter(), None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.last = logs["loss"]

    def on_step_end(self, args, state, control, **kwargs):
        every = max(1, state.max_steps // 10)
        if state.global_step % every == 0 or state.global_step == state.max_steps:
            loss = f", loss {self.last:.3f}" if self.last is not None else ""
            self.log(f"{self.name}: step {state.global_step}/{state.max_steps}{loss} "
                     f"({time.perf_counter() - self.start:.0f} s)")  # fmt: skip


def _prefixed_log(start: float, prefix: str):
    def log(message: str) -> None:
        print(f"[decovlm demo {time.perf_counter() - start:6.1f}s] {prefix}{message}", flush=True)

    return log


def _work(run: Callable[..., dict], job: dict[str, Any]) -> dict:
    """One run in a worker process: its own threads, its own log prefix."""
    import torch

    torch.set_num_threads(job.pop("threads"))
    log = _prefixed_log(job.pop("start"), f"[worker {os.getpid()}] ")
    return run(**job, log=log, quiet=True)


def run_all(run: Callable[..., dict], jobs: list[dict[str, Any]], workers: int, log) -> list[dict]:
    """`run(**job)` for every job, in `workers` processes (1: here); results in job order.

    `run` is a module-level function (a worker imports it by name), e.g. `runs.run_part`.
    """
    if workers <= 1 or len(jobs) <= 1:
        return [run(**_plain(job), log=log) for job in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, (os.cpu_count() or 1) // workers)
    log(f"{len(jobs)} jobs in {workers} worker processes ({threads} thread(s) each)")
    # The workers' log lines count from the demo's start (the monotonic clock is system-wide).
    start = getattr(log, "start", time.perf_counter())
    # Longest first (the non-compressive projector has 4x the visual tokens), so the last run to
    # start is a short one and the workers finish together.
    order = sorted(range(len(jobs)), key=lambda k: jobs[k].get("cost", 1.0), reverse=True)
    # "spawn": a forked child would inherit torch's thread pools from this process.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {k: pool.submit(_work, run, {**_plain(jobs[k]), "threads": threads, "start": start})
                   for k in order}  # fmt: skip
        return [futures[k].result() for k in range(len(jobs))]


def _plain(job: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in job.items() if k != "cost"}
