"""Training throughput (samples/s, tokens/s) of one model with each projector: same LLM, same data.

The real training path (`decovlm.train.train`, HF Trainer, stage `no-align`: projector + LLM
trained, vision frozen) on a mid-size random CPU model whose vision tower has a 24x24 patch grid,
so the visual token counts are the paper's: 576 (mlp2x_gelu), 144 and 64 (avgpool2_*). The
speed-up over mlp2x_gelu is reported next to the ideal ratio from the sequence lengths (what a
cost linear in the sequence would give; attention makes the real gain larger for long sequences,
the fixed vision-tower cost makes it smaller).

    python benchmarks/training_throughput.py [--steps 6] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, markdown_table, write_section  # noqa: E402

PROJECTORS = ["mlp2x_gelu", "avgpool2_144", "avgpool2_64"]


class StepTimer(TrainerCallback):
    """CPU time of the process per optimizer step: with one thread and no data workers this is the
    work done, unaffected by other jobs competing for a shared machine's cores (wall time is not)."""

    def __init__(self):
        self.times: list[float] = []
        self._t = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._t = time.process_time()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.process_time() - self._t)


def run_one(
    projector: str, data: Path, out: Path, args: argparse.Namespace
) -> tuple[list[float], dict]:
    from decovlm.train import load_config, train

    overrides = [
        f"data.path={data}",
        f"training.output_dir={out}",
        f"model.projector={projector}",
        "model.tiny.image_size=96",
        "model.tiny.patch_size=4",  # 24x24 patches, as CLIP-L/14 at 336 px
        f"model.tiny.vision_hidden={args.vision_hidden}",
        f"model.tiny.llm_hidden={args.llm_hidden}",
        "data.sampler=random",
        "data.max_length=1024",
        f"training.max_steps={args.warmup + args.steps}",
        "training.save_steps=100000",
        f"training.global_batch_size={args.batch}",
        f"training.per_device_batch_size={args.batch}",
        "training.disable_tqdm=true",
        "training.logging_steps=1000",
    ]
    timer = StepTimer()
    train(load_config("tiny_noalign", overrides), callbacks=[timer])
    # tokens per sample: the same text for every projector, plus M image tokens
    from decovlm.train.build import build_dataset, build_model

    cfg = load_config("tiny_noalign", overrides)
    _, processor = build_model(cfg.model)
    dataset = build_dataset(cfg, processor, None, log_validation=False)
    tokens = statistics.mean(len(dataset[i]["input_ids"]) for i in range(min(len(dataset), 32)))
    info = {"projector": projector, "visual": processor.num_image_tokens, "tokens": tokens}
    return timer.times[args.warmup :], info


def measure(data: Path, tmp: Path, args: argparse.Namespace) -> list[dict]:
    """Rounds of every projector in turn (a shared machine's load then hits all of them alike)."""
    times: dict[str, list[float]] = {p: [] for p in PROJECTORS}
    info: dict[str, dict] = {}
    for round_ in range(args.rounds):
        for p in PROJECTORS:
            t, info[p] = run_one(p, data, tmp / f"{p}-{round_}", args)
            times[p] += t
    rows = []
    for p in PROJECTORS:
        step = statistics.median(times[p])
        rows.append(
            {
                **info[p],
                "step_s": step,
                "samples_s": args.batch / step,
                "tokens_s": args.batch * info[p]["tokens"] / step,
                "n": len(times[p]),
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--steps", type=int, default=4, help="timed optimizer steps per projector and round"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument(
        "--threads", type=int, default=1, help="1 makes CPU time = single-core wall time"
    )
    parser.add_argument("--llm-hidden", type=int, default=256)
    parser.add_argument("--vision-hidden", type=int, default=64)
    parser.add_argument(
        "--no-write", action="store_true", help="print only, leave RESULTS.md alone"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from decovlm.data.toy import write_toy_dataset

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = write_toy_dataset(tmp / "data", n=64, kind="chat", image_size=96)
        rows = measure(data, tmp, args)
    base = rows[0]
    table = []
    for r in rows:
        table.append(
            [
                r["projector"],
                r["visual"],
                f"{r['tokens']:.0f}",
                f"{r['step_s'] * 1000:.0f}",
                f"{r['samples_s']:.2f}",
                f"{r['tokens_s']:.0f}",
                f"{base['step_s'] / r['step_s']:.2f}x",
                f"{base['tokens'] / r['tokens']:.2f}x",
            ]
        )
    verdicts = "; ".join(
        f"{r['projector']} reaches {100 * (base['step_s'] / r['step_s']) / (base['tokens'] / r['tokens']):.0f}% "
        "of the ideal ratio"
        for r in rows[1:]
    )
    headers = [
        "projector",
        "visual tokens",
        "sequence (mean)",
        "step CPU time (ms)",
        "samples/s",
        "tokens/s",
        "speed-up vs 576",
        "ideal (sequence ratio)",
    ]
    body = (
        "## Training throughput per projector (`benchmarks/training_throughput.py`)\n\n"
        f"Machine: {machine()}.\n"
        f"Setup: `decovlm.train.train`, stage `no-align` (projector + LLM trained, vision frozen), fp32; "
        f"random CLIP-shaped tower at 96 px / patch 4 (24x24 = 576 patches, width {args.vision_hidden}, 2 layers) "
        f"+ Llama-shaped LLM (width {args.llm_hidden}, 2 layers); toy LLaVA chat data (vicuna_v1 template); "
        f"batch {args.batch}; median step time over {args.rounds} interleaved rounds x {args.steps} steps "
        f"(after {args.warmup} warm-up steps each). Times are process CPU time with {args.threads} thread(s) "
        "and no data workers, so they do not depend on other jobs sharing the machine; samples/s and "
        "tokens/s are per core.\n\n"
        + markdown_table(headers, table)
        + "\n\nThe ideal ratio is the sequence-length ratio (a cost linear in tokens). The measured speed-up "
        "can exceed it (attention is quadratic in the sequence) or fall short of it (fixed costs: the "
        "vision tower, which sees all 576 patches whatever the projector, the optimizer step over the same "
        "LLM weights, data loading). Here: " + verdicts + ".\n"
    )
    print(body)
    if not args.no_write:
        write_section("training", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
