"""Trainer callbacks: JSONL metrics, checkpoint completion markers, and resume helpers.

The HF Trainer writes `checkpoint-N/` in place, so a crash mid-save leaves a folder that looks like
a checkpoint but is not one. `CheckpointMarker` writes `checkpoint-N/COMPLETE` (atomically, after
every rank has finished writing) and `find_resume_checkpoint` only considers folders that have it.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from decovlm.utils.io import append_jsonl, atomic_write_text, json_line, read_jsonl

COMPLETE = "COMPLETE"
_CKPT = re.compile(r"^checkpoint-(\d+)$")
METRIC_KEYS = {"loss": "loss", "learning_rate": "lr", "grad_norm": "grad_norm"}


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


class JsonlMetrics(TrainerCallback):
    """Appends loss / lr / grad_norm / step / epoch / time per log step to `metrics.jsonl`.

    On resume, lines past the resumed step (written after the checkpoint by the killed run) are
    dropped first, so the file reads like one uninterrupted run.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.start = time.time()

    def on_train_begin(self, args, state, control, **kwargs: Any) -> None:
        self.start = time.time()
        if state.is_world_process_zero and state.global_step > 0 and self.path.exists():
            kept = [r for r in read_jsonl(self.path) if r.get("step", 0) <= state.global_step]
            atomic_write_text(self.path, "".join(json_line(r) for r in kept))

    def on_log(
        self, args, state, control, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero or not logs:
            return
        record: dict[str, Any] = {"step": state.global_step, "epoch": state.epoch}
        for key, value in logs.items():
            record[METRIC_KEYS.get(key, key)] = value
        record["time"] = round(time.time() - self.start, 3)
        append_jsonl(self.path, record)


class CheckpointMarker(TrainerCallback):
    """Marks a checkpoint folder complete once every rank has written its part."""

    def on_save(self, args, state, control, **kwargs: Any) -> None:
        _barrier()
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                atomic_write_text(folder / COMPLETE, f"step {state.global_step}\n")
        _barrier()


class StopAfterStep(TrainerCallback):
    """Stops training cleanly after `step` optimizer steps (used by tests and the demo)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs: Any):
        if state.global_step >= self.step:
            control.should_training_stop = True
        return control


def list_checkpoints(output_dir: str | Path) -> list[tuple[int, Path, bool]]:
    """(step, folder, complete) for every `checkpoint-N` folder, oldest first."""
    out = []
    root = Path(output_dir)
    if not root.is_dir():
        return out
    for child in root.iterdir():
        match = _CKPT.match(child.name)
        if match and child.is_dir():
            out.append((int(match.group(1)), child, (child / COMPLETE).is_file()))
    return sorted(out)


def find_resume_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint in `output_dir` (incomplete ones are skipped), or None."""
    complete = [path for _, path, ok in list_checkpoints(output_dir) if ok]
    return complete[-1] if complete else None
