"""Trainer callbacks: JSONL metrics, checkpoint completion markers, rotation and resume helpers.

The HF Trainer writes `checkpoint-N/` in place, so a crash mid-save leaves a folder that looks like
a checkpoint but is not one. `mark_complete` writes `checkpoint-N/COMPLETE` (atomically, after
every rank has finished writing) and `find_resume_checkpoint` only considers folders that have it.

Rotation (`save_total_limit`) is ours too (`rotate_checkpoints`, run by `CheckpointMarker` after the
marker; the Trainer's own is off): the Trainer's deletes old checkpoints *before* the new one is
marked, so a crash in between left nothing complete. Ours keeps the newest complete checkpoints, never deletes the
newest complete one, and removes a folder's marker before its files, so a half-deleted folder is
never taken for a checkpoint. A resume also checks the optimizer and scheduler state are there
(`check_resumable`): without them the run would silently continue with a fresh optimizer and
schedule.
"""

from __future__ import annotations

import re
import shutil
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


def mark_complete(folder: str | Path, step: int, is_main: bool) -> None:
    """Write `folder/COMPLETE` once every rank has written its part of the checkpoint."""
    _barrier()
    folder = Path(folder)
    if is_main and folder.is_dir() and not (folder / COMPLETE).is_file():
        atomic_write_text(folder / COMPLETE, f"step {step}\n")
    _barrier()


class CheckpointMarker(TrainerCallback):
    """Marks a checkpoint folder complete once every rank has written its part, then keeps the
    newest `save_total_limit` complete ones (`rotate_checkpoints`; None: all). The Trainer's own
    rotation must be off (`TrainingArguments(save_total_limit=None)`): it runs before this hook."""

    def __init__(self, save_total_limit: int | None = None):
        self.save_total_limit = save_total_limit

    def on_save(self, args, state, control, **kwargs: Any) -> None:
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        mark_complete(folder, state.global_step, state.is_world_process_zero)
        if args.should_save:
            rotate_checkpoints(
                args.output_dir, self.save_total_limit, keep=state.best_model_checkpoint
            )


def rotate_checkpoints(output_dir: str | Path, limit: int | None, keep: str | None = None) -> None:
    """Delete checkpoints beyond the newest `limit` complete ones (and incomplete ones older than
    the newest complete one). `keep` (the best checkpoint) is never deleted."""
    if limit is None or limit <= 0:
        return
    found = list_checkpoints(output_dir)
    complete = [path for _, path, ok in found if ok]
    if not complete:
        return  # nothing to fall back on: delete nothing
    kept = set(complete[-limit:])
    newest = max(step for step, _, ok in found if ok)
    protected = {Path(keep).resolve()} if keep else set()
    for step, path, ok in found:
        if path in kept or path.resolve() in protected or (not ok and step > newest):
            continue  # a newer incomplete folder may be a save still under way
        # the marker goes first: a crash mid-delete leaves an incomplete folder, never a
        # "complete" one with files missing
        (path / COMPLETE).unlink(missing_ok=True)
        shutil.rmtree(path, ignore_errors=True)


OPTIMIZER_FILES = ("optimizer.pt", "optimizer.bin")
SCHEDULER_FILE = "scheduler.pt"
MODEL_WEIGHTS = "model weights (model.safetensors)"


def has_model_weights(folder: Path) -> bool:
    """Whether a checkpoint holds the model's weights in a form the Trainer resumes from."""
    from decovlm.modeling.loading import WEIGHT_FILES

    names = (*WEIGHT_FILES, "adapter_model.safetensors", "adapter_model.bin")
    return (
        any((folder / name).is_file() for name in names)
        or any(p.is_dir() for p in folder.glob("pytorch_model_fsdp*"))  # FSDP sharded state
        or any(p.is_dir() for p in folder.glob("global_step*"))  # DeepSpeed: its own folder
    )


def missing_resume_state(checkpoint: str | Path) -> list[str]:
    """What a checkpoint lacks for an exact resume: trainer state, optimizer, scheduler."""
    folder = Path(checkpoint)
    missing = []
    if not (folder / "trainer_state.json").is_file():
        missing.append("trainer_state.json")
    if not has_model_weights(folder):
        missing.append(MODEL_WEIGHTS)
    has_optimizer = (
        any((folder / name).is_file() for name in OPTIMIZER_FILES)
        or any(folder.glob("rank*-of-*-optimizer.pt"))  # sharded (XLA / FSDP per-rank)
        or any(p.is_dir() for p in folder.glob("optimizer*"))  # FSDP sharded state dict
        or any(p.is_dir() for p in folder.glob("global_step*"))  # DeepSpeed: its own folder
    )
    if not has_optimizer:
        missing.append("optimizer state (optimizer.pt)")
    deepspeed = any(p.is_dir() for p in folder.glob("global_step*"))
    if not (folder / SCHEDULER_FILE).is_file() and not deepspeed:
        missing.append(SCHEDULER_FILE)
    return missing


def check_resumable(checkpoint: str | Path, allow_fresh_optimizer: bool = False) -> list[str]:
    """Raise a UserError when `checkpoint` cannot resume exactly, unless `allow_fresh_optimizer`
    (training.resume_without_optimizer) says to go on; returns what is missing."""
    from decovlm.errors import UserError

    missing = missing_resume_state(checkpoint)
    broken = [m for m in missing if m in ("trainer_state.json", MODEL_WEIGHTS)]
    if broken:
        # Nothing is deleted for the user: the folder may hold what they want to inspect.
        folder = Path(checkpoint)
        older = [p for _, p, ok in list_checkpoints(folder.parent) if ok and p != folder]
        older = [p for p in older if _step(p) < _step(folder)]
        then = f"the run resumes from {older[-1].name}" if older else "the run starts again"
        raise UserError(
            f"{checkpoint} is marked complete but has no {' and no '.join(broken)}: remove that "
            f"folder and rerun with --resume ({then})"
        )
    if missing and not allow_fresh_optimizer:
        raise UserError(
            f"{checkpoint} has no {' and no '.join(missing)}: resuming would restart the "
            "optimizer and learning-rate schedule (the run would differ from an uninterrupted "
            "one); set training.resume_without_optimizer=true to continue anyway"
        )
    return missing


def _step(folder: Path) -> int:
    match = _CKPT.match(folder.name)
    return int(match.group(1)) if match else -1


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
