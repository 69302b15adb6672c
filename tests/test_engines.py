"""Distributed engines: selection, their TrainingArguments, and the refusals where they cannot run
(FSDP on CPU trains as plain data parallel in accelerate, so decovlm refuses it there)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from decovlm.train import engines
from decovlm.train.config import load_config
from decovlm.train.engines import (
    EngineUnavailable,
    check_engine,
    engine_arguments,
    engine_name,
    single_process_group,
)

FSDP = ["training.fsdp=full_shard auto_wrap", "training.fsdp_config=fsdp_full_shard"]


def config(*overrides, use_cpu=False):
    return load_config(
        "tiny_noalign",
        ["data.path=unused.json", f"training.use_cpu={str(use_cpu).lower()}", *overrides],
    )


@pytest.fixture
def cuda(monkeypatch):
    """Pretend a CUDA device is present / absent."""

    def set_(present: bool):
        monkeypatch.setattr(engines, "_cuda_available", lambda: present)

    return set_


@pytest.fixture
def deepspeed_installed(monkeypatch):
    real = engines.importlib.util.find_spec

    def set_(present: bool):
        monkeypatch.setattr(
            engines.importlib.util,
            "find_spec",
            lambda name, *a: (
                (object() if present else None) if name == "deepspeed" else real(name, *a)
            ),
        )

    return set_


def test_engine_selection():
    assert engine_name(config().training) == "ddp"
    assert engine_name(config(*FSDP).training) == "fsdp"
    assert engine_name(config("training.deepspeed=zero3").training) == "deepspeed"
    both = config("training.deepspeed=zero3", *FSDP)
    with pytest.raises(ValueError, match="choose one engine"):
        both.validate()


def test_fsdp_refused_on_cpu(cuda):
    cuda(False)
    with pytest.raises(EngineUnavailable, match="needs CUDA GPUs.*plain data parallel"):
        check_engine(config(*FSDP))
    cuda(True)  # a GPU machine told to train on CPU is refused too
    with pytest.raises(EngineUnavailable, match="needs CUDA GPUs"):
        check_engine(config(*FSDP, use_cpu=True))
    assert check_engine(config(*FSDP)) == "fsdp"
    assert check_engine(config(use_cpu=True)) == "ddp"


def test_deepspeed_refused_without_package_or_gpu(cuda, deepspeed_installed):
    cuda(True)
    deepspeed_installed(False)
    with pytest.raises(
        EngineUnavailable, match=r"deepspeed package: pip install 'decovlm\[deepspeed\]'"
    ):
        check_engine(config("training.deepspeed=zero3"))
    deepspeed_installed(True)
    assert check_engine(config("training.deepspeed=zero2")) == "deepspeed"
    cuda(False)
    with pytest.raises(EngineUnavailable, match="needs a CUDA GPU"):
        check_engine(config("training.deepspeed=zero3"))


def test_engine_arguments():
    ds = engine_arguments(config("training.deepspeed=zero3").training)
    assert Path(ds["deepspeed"]).name == "zero3.json"
    fsdp = engine_arguments(config(*FSDP).training)
    assert fsdp["fsdp"] == "full_shard auto_wrap"
    assert fsdp["fsdp_config"]["version"] == engines.fsdp_version() == 2  # torch >= 2.6: FSDP2
    assert "LlamaDecoderLayer" in fsdp["fsdp_config"]["transformer_layer_cls_to_wrap"]
    assert engine_arguments(config().training) == {}


def test_fsdp_training_arguments_select_fsdp2():
    from decovlm.train.runner import training_arguments

    args = training_arguments(config(*FSDP, "training.global_batch_size=8"), has_text_only=False)
    assert args.fsdp_plugin_args["fsdp_version"] == 2
    assert args.fsdp_plugin_args["reshard_after_forward"] is True  # full_shard


def test_single_process_group_environment(monkeypatch):
    for key in (
        "RANK",
        "LOCAL_RANK",
        "WORLD_SIZE",
        "LOCAL_WORLD_SIZE",
        "MASTER_ADDR",
        "MASTER_PORT",
    ):
        monkeypatch.setenv(key, "x")  # recorded, so the test's changes are undone
        monkeypatch.delenv(key)
    assert single_process_group("ddp") is False and "WORLD_SIZE" not in os.environ
    assert single_process_group("fsdp") is True
    assert os.environ["WORLD_SIZE"] == "1" and os.environ["RANK"] == "0"
    assert int(os.environ["MASTER_PORT"]) > 0
    assert single_process_group("deepspeed") is False  # already set up (or under torchrun)


def test_train_refuses_before_any_work(cuda, tmp_path):
    from decovlm.train import train

    cuda(False)
    out = tmp_path / "run"
    with pytest.raises(EngineUnavailable):
        train(config(*FSDP, f"training.output_dir={out}"))
    assert not out.exists()


def test_cli_refusal_is_one_line(cuda, capsys):
    from decovlm.cli import main

    cuda(False)
    rc = main(["train", "tiny_noalign", "data.path=unused.json", *FSDP])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("decovlm train: error: training.fsdp=") and "needs CUDA GPUs" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_two_process_fsdp_on_gloo_is_refused(tmp_path):
    """torchrun with 2 CPU processes: refused (accelerate would run plain DDP), not silently DDP."""
    from decovlm.data.toy import write_toy_dataset

    data = write_toy_dataset(tmp_path / "data", n=8, kind="chat")
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    proc = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "--master_port", "29533", "-m", "decovlm", "train",
         "tiny_noalign", f"data.path={data}", f"training.output_dir={tmp_path / 'run'}", *FSDP],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "needs CUDA GPUs" in proc.stdout + proc.stderr
    assert not (tmp_path / "run" / "model").exists()


def test_sharding_report_of_a_plain_model():
    from decovlm.testing import tiny_model

    model, _ = tiny_model()
    assert engines.describe_sharding(model) == "NOT sharded (plain parameters)"
