"""Paper-scale training step: decovlm vs transformers' LLaVA, and every projector of the study.

CLIP ViT-L/14-336 + a Vicuna-7B-shaped Llama (random init, `--scale paper`), bf16 weights, fused
AdamW, vision tower frozen, projector + LLM trained, no gradient checkpointing. Per model: step time
(median), samples/s, tokens/s, MFU (model FLOPs of one step counted by `torch.utils.flop_counter`,
divided by the step time and the matmul peak measured on this device), and peak memory. The
compressed projectors are run a second time at the largest batch that fits in the memory
`mlp2x_gelu` needed at `--batch` (memory is fitted as fixed + per-sample from two batches, then the
predicted batch is checked), reported beside the ideal sequence ratio.

    python benchmarks/step.py --device cuda            # the GPU check (scripts/gpu_check.sh)
    python benchmarks/step.py --scale tiny --device cpu --steps 1 --no-write   # the CPU test

decovlm `mlp2x_gelu` is made from the LLaVA model with `decovlm.convert.from_llava` (same tensors),
the other projectors reuse its vision tower and LLM, so every row trains the same LLM weights.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, markdown_table, write_section  # noqa: E402

PROJECTORS = [
    "mlp2x_gelu",
    "avgpool2_144",
    "avgpool2_64",
    "qformer2_144",
    "cabstractor_144",
    "dabstractor_144",
]
IMAGE_TOKEN = 32000  # the paper layout: <image> just past Vicuna's 32,000 ids
SCALES = {
    # overrides of decovlm.presets' CLIP_VIT_L_14_336 / VICUNA_7B
    "paper": ({}, {}),
    # the paper's token ids and patch size at 224 px (16x16 patches), tiny widths: the CPU test
    "tiny": (
        dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
             image_size=224),
        dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
             num_key_value_heads=2),
    ),
}  # fmt: skip


# -- measuring -----------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int | None = None) -> float:
    """Measured dense matmul FLOP/s (the MFU denominator): the best of a few n x n x n products."""
    n = n or (8192 if device.type == "cuda" else 512)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(5):
        sync(device)
        t = time.perf_counter()
        for _ in range(10):
            a @ b
        sync(device)
        best = min(best, (time.perf_counter() - t) / 10)
    return 2 * n**3 / best


def peak_memory(device: torch.device) -> float | None:
    """Peak allocated bytes since the last reset (CUDA); None where it cannot be read."""
    return float(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


def reset_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def fit_batch(points: list[tuple[int, float]], budget: float, ceiling: int = 4096) -> int:
    """The largest batch whose predicted memory (a line through two (batch, bytes) points) fits."""
    (b0, m0), (b1, m1) = points[:2]
    per_sample = (m1 - m0) / (b1 - b0) if b1 != b0 else 0.0
    if per_sample <= 0:
        return ceiling
    return max(1, min(ceiling, int((budget - (m0 - per_sample * b0)) // per_sample)))


# -- models and data -------------------------------------------------------------------------------
def build_llava(scale: str, device: torch.device, dtype: torch.dtype):
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )

    from decovlm.presets import CLIP_VIT_L_14_336, VICUNA_7B

    vision, text = SCALES[scale]
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**{**CLIP_VIT_L_14_336, **vision}),
        text_config=LlamaConfig(**{**VICUNA_7B, **text, "vocab_size": IMAGE_TOKEN + 1}),
        image_token_id=IMAGE_TOKEN,
        vision_feature_layer=-2,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = LlavaForConditionalGeneration._from_config(config, dtype=dtype)
    return model


def batch_of(model, n: int, text: int, device: torch.device):
    """`n` samples of one 336 px image (M placeholders) + `text` random text tokens, and labels."""
    m = num_image_tokens(model)
    g = torch.Generator().manual_seed(0)
    words = torch.randint(3, 31000, (n, text), generator=g)
    ids = torch.cat([words[:, :1], torch.full((n, m), IMAGE_TOKEN), words[:, 1:]], dim=1)
    size = model.config.vision_config.image_size
    pixels = torch.randn(n, 3, size, size, generator=g)
    labels = ids.masked_fill(ids == IMAGE_TOKEN, -100)
    return {
        "input_ids": ids.to(device),
        "pixel_values": pixels.to(device),
        "labels": labels.to(device),
    }


def num_image_tokens(model) -> int:
    if hasattr(model, "num_image_tokens"):
        return model.num_image_tokens
    cfg = model.config.vision_config
    return (cfg.image_size // cfg.patch_size) ** 2  # LLaVA: every patch


def trainable(model):
    vision = model.vision_tower if hasattr(model, "vision_tower") else model.model.vision_tower
    for p in model.parameters():
        p.requires_grad_(True)
    for p in vision.parameters():
        p.requires_grad_(False)
    return [p for p in model.parameters() if p.requires_grad]


def run(model, batch: int, args, device: torch.device, count_flops: bool = False) -> dict:
    """Warm-up + timed optimizer steps of `model` at `batch`; peak memory; FLOPs of one step."""
    params = trainable(model)
    model.train()
    opt = torch.optim.AdamW(params, lr=1e-5, fused=device.type == "cuda")
    data = batch_of(model, batch, args.text, device)

    def step():
        opt.zero_grad(set_to_none=True)
        model(**data).loss.backward()
        opt.step()

    reset_memory(device)
    try:
        for _ in range(args.warmup):
            step()
        times = []
        for _ in range(args.steps):
            sync(device)
            t = time.perf_counter()
            step()
            sync(device)
            times.append(time.perf_counter() - t)
        flops = None
        if count_flops:
            from torch.utils.flop_counter import FlopCounterMode

            counter = FlopCounterMode(display=False)
            with counter:
                opt.zero_grad(set_to_none=True)
                model(**data).loss.backward()
            flops = counter.get_total_flops()
        result = {
            "batch": batch,
            "visual": num_image_tokens(model),
            "sequence": data["input_ids"].shape[1],
            "step_s": statistics.median(times),
            "peak_bytes": peak_memory(device),
            "flops": flops,
        }
    finally:
        opt.zero_grad(set_to_none=True)
        opt = data = None  # free the optimizer state and batch before the next model
        reset_memory(device)
    return result


def is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def equal_memory(model, budget: float, first: dict, args, device: torch.device) -> dict | None:
    """The compressed model at the largest batch whose peak memory stays within `budget`."""
    half = max(1, args.batch // 2)
    if half == args.batch:
        return None
    second = run(model, half, args, device)
    batch = fit_batch([(half, second["peak_bytes"]), (args.batch, first["peak_bytes"])], budget)
    for _ in range(4):  # the fit is linear; allocator slack may need a smaller batch
        try:
            result = run(model, batch, args, device)
            if result["peak_bytes"] <= budget * 1.01:
                return result
        except RuntimeError as err:
            if not is_oom(err):
                raise
            reset_memory(device)
        batch = max(1, int(batch * 0.9))
    return None


def measure(args) -> dict:
    from decovlm import DecoVLMForConditionalGeneration
    from decovlm.convert import from_llava

    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    peak = matmul_peak(device, dtype)
    rows = []

    def add(name: str, model, count_flops: bool = True) -> dict:
        r = run(model, args.batch, args, device, count_flops=count_flops)
        r["model"] = name
        rows.append(r)
        print(json.dumps(r), flush=True)
        return r

    llava = build_llava(args.scale, device, dtype)
    add("LLaVA (transformers)", llava)
    ours = from_llava(llava)  # the same tensors, decovlm's forward
    base = add("decovlm mlp2x_gelu", ours)
    vision, llm = ours.vision_tower, ours.language_model
    del llava
    equal = []
    for spec in args.projectors:
        if spec == "mlp2x_gelu":
            continue
        torch.manual_seed(0)
        model = DecoVLMForConditionalGeneration.from_components(
            vision, llm, projector=spec, image_token_id=IMAGE_TOKEN
        )
        first = add(f"decovlm {spec}", model)
        if base["peak_bytes"] is not None and first["visual"] < base["visual"]:
            r = equal_memory(model, base["peak_bytes"], first, args, device)
            if r is not None:
                r["model"] = f"decovlm {spec}"
                equal.append(r)
                print(json.dumps({"equal_memory": r}), flush=True)
        del model
        reset_memory(device)
    return {"peak_flops": peak, "rows": rows, "equal_memory": equal, "base": base}


# -- report ----------------------------------------------------------------------------------------
def tokens(r: dict) -> int:
    return r["batch"] * r["sequence"]


def report(result: dict, args) -> str:
    peak, base = result["peak_flops"], result["base"]
    gib = lambda b: "-" if b is None else f"{b / 2**30:.1f}"  # noqa: E731
    rows = []
    for r in result["rows"]:
        mfu = "-" if not r["flops"] else f"{100 * r['flops'] / r['step_s'] / peak:.0f}%"
        rows.append([r["model"], r["visual"], r["sequence"], r["batch"], f"{r['step_s'] * 1e3:.0f}",
                     f"{r['batch'] / r['step_s']:.1f}", f"{tokens(r) / r['step_s']:.0f}", mfu,
                     gib(r["peak_bytes"]), f"{base['step_s'] / r['step_s']:.2f}x",
                     f"{base['sequence'] / r['sequence']:.2f}x"])  # fmt: skip
    body = [
        "### Paper-scale training step (`benchmarks/step.py`)",
        "",
        f"Machine: {machine()}. Scale `{args.scale}` (CLIP ViT-L/14-336 + Vicuna-7B shape at `paper`), "
        f"random init, {args.dtype} weights, fused AdamW, vision frozen, projector + LLM trained, "
        f"no gradient checkpointing, sdpa; one image + {args.text} text tokens per sample; median of "
        f"{args.steps} steps after {args.warmup} warm-up. MFU = FLOPs of one step "
        f"(`torch.utils.flop_counter`) / step time / measured matmul peak "
        f"({peak / 1e12:.0f} TFLOP/s, {args.dtype}).",
        "",
        markdown_table(["model", "visual tokens", "sequence", "batch", "step (ms)", "samples/s", "tokens/s",
                        "MFU", "peak (GiB)", "speed-up vs mlp2x_gelu", "ideal (sequence ratio)"], rows),
    ]  # fmt: skip
    if result["equal_memory"]:
        eq = []
        base_rate = args.batch / base["step_s"]
        for r in result["equal_memory"]:
            rate = r["batch"] / r["step_s"]
            eq.append([r["model"], r["batch"], gib(r["peak_bytes"]), f"{r['step_s'] * 1e3:.0f}",
                       f"{rate:.1f}", f"{tokens(r) / r['step_s']:.0f}", f"{rate / base_rate:.2f}x",
                       f"{base['sequence'] / r['sequence']:.2f}x"])  # fmt: skip
        body += [
            "",
            f"At equal memory: the compressed projectors at the largest batch within mlp2x_gelu's peak "
            f"({gib(base['peak_bytes'])} GiB at batch {args.batch}):",
            "",
            markdown_table(["model", "batch", "peak (GiB)", "step (ms)", "samples/s", "tokens/s",
                            "samples/s vs mlp2x_gelu", "ideal (sequence ratio)"], eq),
        ]  # fmt: skip
    return "\n".join(body)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--scale", default="paper", choices=list(SCALES))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--text", type=int, default=96, help="text tokens per sample")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--projectors", nargs="+", default=PROJECTORS)
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument(
        "--no-write", action="store_true", help="print only, leave RESULTS.md alone"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = measure(args)
    body = report(result, args)
    print(body)
    if args.json:
        Path(args.json).write_text(json.dumps({**result, "report": body}, indent=1))
    if not args.no_write:
        write_section("gpu-step", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
