"""The distributed engine of a run: DDP (default), PyTorch FSDP or DeepSpeed ZeRO; real or refused.

    engine = check_engine(config)          # "ddp" | "fsdp" | "deepspeed", or EngineUnavailable
    TrainingArguments(..., **engine_arguments(config.training))

The HF Trainer runs the engines through accelerate. Where an engine cannot run, accelerate does not
complain: on CPU a run configured for FSDP trains as plain multi-process data parallel (every rank
holds every parameter) and exits 0, so FSDP would be a setting that silently does nothing. decovlm
refuses instead: FSDP and DeepSpeed need CUDA devices (and DeepSpeed its package).

FSDP is FSDP2 (`fully_shard`) where torch has it, FSDP1 otherwise. One process without torchrun
gets a one-process group (`single_process_group`), so `decovlm train ... training.fsdp=...` shards
for real on one GPU too instead of silently running without the engine.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
from pathlib import Path
from typing import Any

DEEPSPEED_HINT = "pip install 'decovlm[deepspeed]' (deepspeed>=0.15)"


class EngineUnavailable(RuntimeError):
    """The configured engine cannot run on this machine (one line saying why and what to do)."""


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def engine_name(training) -> str:
    """Which engine the training section selects (both at once is a config error)."""
    if training.deepspeed and training.fsdp:
        raise ValueError(
            "training.deepspeed and training.fsdp are both set: choose one engine "
            "(training.deepspeed=null or training.fsdp='')"
        )
    if training.deepspeed:
        return "deepspeed"
    if training.fsdp:
        return "fsdp"
    return "ddp"


def check_engine(config) -> str:
    """The engine of `config`, or `EngineUnavailable` when it cannot really run here."""
    t = config.training
    engine = engine_name(t)
    if engine == "fsdp" and (t.use_cpu or not _cuda_available()):
        raise EngineUnavailable(
            f"training.fsdp={t.fsdp!r} needs CUDA GPUs: on CPU accelerate would run plain data "
            "parallel (every process holding all parameters) without sharding anything; "
            "drop training.fsdp to train with DDP on CPU"
        )
    if engine == "deepspeed":
        if importlib.util.find_spec("deepspeed") is None:
            raise EngineUnavailable(
                f"training.deepspeed={t.deepspeed!r} needs the deepspeed package: {DEEPSPEED_HINT}, "
                "or set training.deepspeed=null"
            )
        if t.use_cpu or not _cuda_available():
            raise EngineUnavailable(
                f"training.deepspeed={t.deepspeed!r} needs a CUDA GPU (ZeRO shards across GPUs); "
                "set training.deepspeed=null to train with DDP on CPU"
            )
    return engine


def fsdp_version() -> int:
    """2 (FSDP2, `fully_shard`) where torch has it, else 1."""
    import torch.distributed.fsdp as fsdp

    return 2 if hasattr(fsdp, "fully_shard") else 1


def engine_arguments(training) -> dict[str, Any]:
    """The engine's `TrainingArguments` keywords: deepspeed json, or fsdp options + fsdp_config."""
    from decovlm.train.engine_files import resolve_engine_file

    engine = engine_name(training)
    if engine == "deepspeed":
        return {"deepspeed": resolve_engine_file(training.deepspeed, "deepspeed")}
    if engine == "fsdp":
        path = resolve_engine_file(training.fsdp_config, "fsdp_config")
        options: dict[str, Any] = {}
        if path:
            try:
                options = json.loads(Path(path).read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as err:
                raise ValueError(
                    f"training.fsdp_config {path}: not a readable JSON file ({err})"
                ) from err
        # An explicit version in the file wins; otherwise FSDP2 where torch has it (older
        # transformers default to FSDP1).
        options.setdefault("version", fsdp_version())
        return {"fsdp": training.fsdp, "fsdp_config": options}
    return {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def single_process_group(engine: str) -> bool:
    """Give a one-process run of FSDP / DeepSpeed the environment of a 1-process torchrun.

    Without it accelerate treats one process as "not distributed" and skips the engine. Returns
    True when the environment was set (nothing is changed under torchrun or for DDP).
    """
    if engine == "ddp" or "WORLD_SIZE" in os.environ:
        return False
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(_free_port()))
    return True


def describe_sharding(model) -> str:
    """How the parameters of a (possibly wrapped) model are held: the proof an engine is real."""
    params = list(model.parameters())
    if any(hasattr(p, "ds_id") for p in params):
        return "DeepSpeed ZeRO partitioned parameters"
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # torch < 2.5
        from torch.distributed._tensor import DTensor
    if any(isinstance(p, DTensor) for p in params):
        return "FSDP2 sharded parameters (DTensor)"
    from torch.distributed.fsdp import FullyShardedDataParallel

    if any(isinstance(m, FullyShardedDataParallel) for m in model.modules()):
        return "FSDP1 wrapped modules"
    return "NOT sharded (plain parameters)"


def engine_report(engine: str):
    """A TrainerCallback printing, after the first step, how the engine holds the parameters."""
    from transformers import TrainerCallback

    class EngineReport(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step == 1 and state.is_world_process_zero and model is not None:
                print(f"[decovlm] engine {engine}: {describe_sharding(model)}", flush=True)

    return EngineReport()
