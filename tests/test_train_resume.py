"""A run killed mid-training and resumed with --resume ends with the same weights as a run never killed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from decovlm.data.toy import write_toy_dataset
from decovlm.train import load_config, train
from decovlm.train.callbacks import COMPLETE, find_resume_checkpoint

pytestmark = pytest.mark.slow
ARGS = [
    "training.max_steps=7",
    "training.save_steps=2",
    "training.global_batch_size=4",
    "training.per_device_batch_size=2",
    "training.disable_tqdm=true",
    "training.learning_rate=5e-3",
]

KILLED_RUN = textwrap.dedent(
    """
    import os, sys
    from transformers import TrainerCallback
    from decovlm.train import load_config, train

    class Die(TrainerCallback):
        # after step 5's update, before any later save: the newest checkpoint is step 4
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 5:
                os._exit(17)

    train(load_config("tiny_noalign", sys.argv[1:]), callbacks=[Die()])
    """
)


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def test_kill_and_resume_equals_uninterrupted(tmp_path):
    data = write_toy_dataset(tmp_path / "data", n=24, kind="chat", text_only_every=5)
    common = [f"data.path={data}", *ARGS]

    straight = train(
        load_config("tiny_noalign", [*common, f"training.output_dir={tmp_path / 'a'}"])
    )

    killed = tmp_path / "b"
    args = [*common, f"training.output_dir={killed}"]
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, *args], env=_env(), capture_output=True, text=True
    )
    assert proc.returncode == 17, proc.stderr[-2000:]
    assert find_resume_checkpoint(killed).name == "checkpoint-4"
    # a crash mid-save leaves a folder without COMPLETE: --resume must not pick it
    (killed / "checkpoint-5").mkdir()
    (killed / "checkpoint-5" / "model.safetensors").write_bytes(b"half written")
    assert find_resume_checkpoint(killed).name == "checkpoint-4"

    proc = subprocess.run(
        [sys.executable, "-m", "decovlm", "train", "tiny_noalign", *args, "--resume"],
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = load_file(str(straight.model_path / "model.safetensors"))
    b = load_file(str(killed / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst <= 1e-6, worst
    # the metrics read like one run: steps 1..7 once each
    from decovlm.utils.io import read_jsonl

    steps = [m["step"] for m in read_jsonl(killed / "metrics.jsonl") if "loss" in m]
    assert steps == list(range(1, 8))
    assert not (killed / "checkpoint-5").exists()  # the broken folder was cleaned up
    assert (killed / "checkpoint-6" / COMPLETE).is_file()
    print(
        f"kill/resume max |diff| = {worst:.3g}; bitwise equal: {all(torch.equal(a[k], b[k]) for k in a)}"
    )


def test_fresh_run_refuses_a_folder_with_checkpoints(tmp_path):
    (tmp_path / "out" / "checkpoint-2").mkdir(parents=True)
    cfg = load_config(
        "tiny_noalign", [f"data.path={tmp_path}/x.json", f"training.output_dir={tmp_path / 'out'}"]
    )
    with pytest.raises(ValueError, match="--resume"):
        train(cfg)
