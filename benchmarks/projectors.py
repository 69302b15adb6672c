"""Forward+backward time and peak memory of every projector at the paper's size, on CPU.

    python benchmarks/projectors.py                    # 576 x 1024 -> 4096, batch 8, float32
    python benchmarks/projectors.py --repeats 5 --specs avgpool2_144 reference

Each projector runs in its own subprocess, so that memory is measured in isolation: the worker
builds the module and the input (a frozen encoder's output: no gradient), records
`resource.getrusage(RUSAGE_SELF).ru_maxrss`, runs warm-up + timed forward+backward passes
(gradients set to None between passes) and reports the growth of the peak RSS: activations, saved
tensors and parameter gradients (plus allocator slack), not the weights themselves. The time is
the median (and min) over the timed passes. `reference` is the DeCo README's AvgPoolProjector.

Q-Former note: its DeCo default hidden size is llm_dim (4096, ~491M parameters), too big for a CPU
benchmark; it runs with `--qformer-hidden` (default 768, BLIP-2's width: 12 heads, FFN 3072).

The table is written between the `<!-- projectors:start -->` / `<!-- projectors:end -->` markers of
benchmarks/RESULTS.md; the rest of the file (other benchmarks' sections) is left as it is.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from decovlm.projectors import build_projector, example_specs, parse_grid

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, write_section  # noqa: E402

RESULTS = Path(__file__).with_name("RESULTS.md")


class ReferenceAvgPool(nn.Module):
    """The DeCo README's AvgPoolProjector (same computation; einops' rearrange as reshape/permute)."""

    def __init__(self, layer_num: int, query_num: int, mm_hidden_size: int, llm_hidden_size: int):
        super().__init__()
        hw = int(query_num**0.5)
        self.sampler = nn.AdaptiveAvgPool2d((hw, hw))
        modules = [nn.Linear(mm_hidden_size, llm_hidden_size)]
        for _ in range(1, layer_num):
            modules += [nn.GELU(), nn.Linear(llm_hidden_size, llm_hidden_size)]
        self.mlp_projector = nn.Sequential(*modules)

    def forward(self, visual_feat: torch.Tensor) -> torch.Tensor:
        from einops import rearrange

        hw = int(visual_feat.shape[1] ** 0.5)
        x = rearrange(visual_feat, "b (h w) d -> b d h w", h=hw, w=hw)
        x = rearrange(self.sampler(x), "b d h w -> b (h w) d")
        return self.mlp_projector(x)


def _maxrss_mib() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def worker(args: argparse.Namespace) -> dict:
    """Runs in the subprocess: time and peak memory of one projector."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    h, w = parse_grid(args.grid)
    if args.worker == "reference":
        proj = ReferenceAvgPool(2, 144, args.vision_dim, args.llm_dim)
        tokens, call = 144, (lambda x: proj(x))
    else:
        overrides = (
            {"hidden_size": args.qformer_hidden} if args.worker.startswith("qformer") else {}
        )
        proj = build_projector(
            args.worker, args.vision_dim, args.llm_dim, input_grid=(h, w), **overrides
        )
        tokens, call = proj.num_output_tokens(h, w), (lambda x: proj(x, grid=(h, w)))
    x = torch.randn(args.batch, h * w, args.vision_dim)
    params = sum(p.numel() for p in proj.parameters() if p.requires_grad)
    before = _maxrss_mib()
    times = []
    for i in range(args.warmup + args.repeats):
        proj.zero_grad(set_to_none=True)
        start = time.perf_counter()
        out = call(x)
        # A fixed projection of the output as the loss, as a training step would backpropagate.
        F.mse_loss(out, torch.zeros_like(out)).backward()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    return {
        "spec": args.worker,
        "tokens": tokens,
        "params": params,
        "median_ms": 1000 * statistics.median(times),
        "min_ms": 1000 * min(times),
        "peak_mib": _maxrss_mib() - before,
        "runs": len(times),
    }


def interleaved(args: argparse.Namespace) -> dict:
    """avgpool2_144 vs the reference, alternating in one process (a fair A/B on a noisy machine).

    Full passes (pool + MLP, same weights) and the pooling step alone (where the two differ), with
    the order swapped every round so that neither always runs on a warm cache.
    """
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ref = ReferenceAvgPool(2, 144, args.vision_dim, args.llm_dim)
    ours = build_projector("avgpool2_144", args.vision_dim, args.llm_dim)
    ours.load_state_dict(ref.state_dict())
    h, w = parse_grid(args.grid)
    x = torch.randn(args.batch, h * w, args.vision_dim)

    def full(module):
        module.zero_grad(set_to_none=True)
        out = module(x)
        F.mse_loss(out, torch.zeros_like(out)).backward()

    xg = x.clone().requires_grad_(True)
    grad = torch.randn(args.batch, 144, args.vision_dim)

    def pool(compress):
        compress(xg).backward(grad)
        xg.grad = None

    def ref_pool(t):
        from einops import rearrange

        t = rearrange(t, "b (h w) d -> b d h w", h=h, w=w)
        return rearrange(ref.sampler(t), "b d h w -> b (h w) d")

    cases = {
        "full": {"ours": lambda: full(ours), "ref": lambda: full(ref)},
        "pool": {"ours": lambda: pool(ours.compress), "ref": lambda: pool(ref_pool)},
    }
    result = {"rounds": args.ab_rounds}
    for case, fns in cases.items():
        rounds = args.ab_rounds if case == "full" else 20 * args.ab_rounds
        times: dict[str, list[float]] = {"ours": [], "ref": []}
        for i in range(args.warmup + rounds):
            for name in ("ours", "ref") if i % 2 else ("ref", "ours"):
                start = time.perf_counter()
                fns[name]()
                if i >= args.warmup:
                    times[name].append(time.perf_counter() - start)
        for name, t in times.items():
            result[f"{case}_{name}"] = 1000 * statistics.median(t)
    return result


def _load() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def run_one(spec: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", spec]
    names = (
        "grid",
        "vision_dim",
        "llm_dim",
        "batch",
        "repeats",
        "warmup",
        "threads",
        "qformer_hidden",
        "ab_rounds",
    )
    for name in names:
        cmd += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark of {spec!r} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def render(rows: list[dict], ab: dict | None, args: argparse.Namespace) -> str:
    ref = next((r for r in rows if r["spec"] == "reference"), None)
    h, w = parse_grid(args.grid)
    lines = [
        "## Projectors: forward + backward on CPU",
        "",
        f"`python benchmarks/projectors.py --repeats {args.repeats}` on "
        f"{datetime.date.today().isoformat()}. Input {args.batch} x {h * w} patches ({h}x{w}) x "
        f"{args.vision_dim} -> {args.llm_dim}, float32, {args.threads} thread(s); median (min) of "
        f"{args.repeats} timed passes after {args.warmup} warm-up. Machine: {machine()}.",
        "",
        "Peak memory = growth of the worker process's max RSS (`getrusage`) over the built module "
        "and its input: activations, saved tensors, parameter gradients. Each projector runs in a "
        f"fresh subprocess. Q-Former rows use hidden size {args.qformer_hidden}"
        f"{' (BLIP-2 width)' if args.qformer_hidden == 768 else ''}; the DeCo default hidden = llm_dim "
        f"has ~491M parameters at 4096. `reference` = the DeCo README's "
        "AvgPoolProjector (576 -> 144, 2-layer MLP).",
        "",
        "The machine is shared, so absolute times are noisy (1-minute load average "
        f"{' -> '.join(f'{v:.1f}' for v in args.load if v is not None)} on {os.cpu_count()} cores "
        "during this run); the interleaved A/B below is the fair avgpool-vs-reference comparison.",
        "",
        "| spec | tokens | trainable params | fwd+bwd ms, median (min) | x reference | peak MiB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = f"{r['median_ms'] / ref['median_ms']:.2f}" if ref else "-"
        lines.append(
            f"| {r['spec']} | {r['tokens']} | {r['params']:,} | {r['median_ms']:.0f} ({r['min_ms']:.0f}) "
            f"| {ratio} | {r['peak_mib']:.0f} |"
        )
    if ab:
        lines += [
            "",
            f"A/B, avgpool2_144 vs reference in one process, alternating (same weights, order "
            f"swapped every round): full pass {ab['full_ours']:.0f} vs {ab['full_ref']:.0f} ms "
            f"(ratio {ab['full_ours'] / ab['full_ref']:.2f}, {ab['rounds']} rounds); the pooling "
            f"step alone (fwd+bwd, where the two differ: `avg_pool2d` vs `AdaptiveAvgPool2d`) "
            f"{ab['pool_ours']:.1f} vs {ab['pool_ref']:.1f} ms "
            f"(ratio {ab['pool_ours'] / ab['pool_ref']:.2f}, {20 * ab['rounds']} rounds).",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--specs", nargs="+", help="specs to run (default: every example + reference)"
    )
    parser.add_argument("--grid", default="24x24")
    parser.add_argument("--vision-dim", type=int, default=1024)
    parser.add_argument("--llm-dim", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--ab-rounds", type=int, default=8, help="rounds of the avgpool/reference A/B"
    )
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--qformer-hidden", type=int, default=768)
    parser.add_argument("--no-write", action="store_true", help="print the table, leave RESULTS.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(interleaved(args) if args.worker == "ab" else worker(args)))
        return 0

    from tqdm import tqdm

    specs = args.specs or ["reference", *example_specs()]
    args.load = [_load()]
    rows = []
    for spec in tqdm(specs, desc="projectors", unit="spec"):
        rows.append(run_one(spec, args))
        tqdm.write(f"{spec}: {rows[-1]['median_ms']:.0f} ms, {rows[-1]['peak_mib']:.0f} MiB")
    ab = run_one("ab", args) if args.ab_rounds else None
    if ab:
        tqdm.write(f"A/B: {ab}")
    args.load.append(_load())
    section = render(rows, ab, args)
    print(section)
    if not args.no_write:
        write_section("projectors", section)
        print(f"wrote the projectors section of {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
