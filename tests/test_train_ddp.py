"""Two-process DDP on CPU (gloo, torchrun) reaches the weights of one process with gradient accumulation."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file
from transformers import TrainerCallback

from decovlm.data.toy import write_toy_dataset
from decovlm.train import load_config, train


class Snapshot(TrainerCallback):
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}


pytestmark = pytest.mark.slow


def test_ddp_two_processes_equals_one_process_with_accumulation(tmp_path):
    data = write_toy_dataset(tmp_path / "data", n=24, kind="chat", text_only_every=4)
    common = [
        f"data.path={data}",
        "training.max_steps=3",
        "training.global_batch_size=4",
        "training.per_device_batch_size=2",
        "training.disable_tqdm=true",
        "training.learning_rate=5e-3",
        "training.save_steps=100",
    ]
    # one process: global batch 4 = 2 per step x 2 accumulation steps
    start = Snapshot()
    single = train(
        load_config("tiny_noalign", [*common, f"training.output_dir={tmp_path / 'one'}"]),
        callbacks=[start],
    )

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [
        torchrun,
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "decovlm",
        "train",
        "tiny_noalign",
        *common,
        f"training.output_dir={tmp_path / 'two'}",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]

    a = load_file(str(single.model_path / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    diffs = {k: float((a[k] - b[k]).abs().max()) for k in a}
    worst = max(diffs.values())
    print(f"DDP vs accumulation: max |diff| = {worst:.3g}")
    assert worst <= 1e-5, sorted(diffs.items(), key=lambda kv: -kv[1])[:3]
    # and training did move the weights (the comparison is not vacuous)
    assert max(float((a[k] - start.weights[k]).abs().max()) for k in a) > 1e-3
