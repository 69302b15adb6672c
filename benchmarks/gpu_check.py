"""The GPU check: one run on one GPU, offline, that exercises what CPU tests cannot, and records it.

    scripts/gpu_check.sh                 # what a person runs (packages, then this script)
    python benchmarks/gpu_check.py [--out gpu_check_out] [--parts tests step ...] [--budget 470]
    python benchmarks/gpu_check.py --missing     # requirements this machine does not meet
    python benchmarks/gpu_check.py --dry-run     # the plan (commands and time limits) only

Parts, in order, each a subprocess with its own time limit inside one overall budget (default
470 s, the script's target is <= 8 minutes):
  tests      the device-aware tests (model, training, generation, relevance) on CUDA in bf16:
             `pytest --device cuda tests/test_gpu_path.py tests/test_engines.py`
  step       the paper-scale step benchmark (`benchmarks/step.py`): decovlm vs LLaVA, each projector
  fsdp       20 steps of `decovlm train` with FSDP (one process, one GPU)
  deepspeed  20 steps of `decovlm train` with DeepSpeed ZeRO-3 (one process, one GPU)
  demo       `decovlm demo --quick --device cuda`
  relevance  `benchmarks/relevance.py --sizes mid` (explain: batched vs per-token gradients)
The results go to the `gpu` section of benchmarks/RESULTS.md, with the machine named.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS = ["tests", "step", "fsdp", "deepspeed", "demo", "relevance"]
# Time limit of each part (s); the overall budget cuts the later ones when earlier ones run long.
LIMITS = {"tests": 90, "step": 150, "fsdp": 40, "deepspeed": 60, "demo": 100, "relevance": 60}
MIN_LIMIT = 20  # a part with less time left is skipped, not started
EXTRA_REQUIREMENTS = ["pytest>=8"]  # the check's own needs beyond the package's dependencies


@dataclass
class Part:
    name: str
    cmd: list[str]
    limit: int
    env: dict = field(default_factory=dict)


# -- packages ------------------------------------------------------------------------------------
def declared_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """`[project] dependencies` of pyproject.toml (tomllib on 3.11+, a plain parse before)."""
    text = pyproject.read_text(encoding="utf-8")
    try:
        import tomllib

        return list(tomllib.loads(text)["project"]["dependencies"])
    except ImportError:
        block = re.search(r"^dependencies\s*=\s*\[(.*?)\]", text, re.S | re.M)
        return re.findall(r'"([^"]+)"', block.group(1)) if block else []


def missing_requirements(requirements: list[str]) -> list[str]:
    """The requirements that the installed packages do not meet (absent or the wrong version)."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import Requirement

    missing = []
    for spec in requirements:
        req = Requirement(spec)
        try:
            installed = version(req.name)
        except PackageNotFoundError:
            missing.append(spec)
            continue
        if req.specifier and not req.specifier.contains(installed, prereleases=True):
            missing.append(spec)
    return missing


# -- the plan ------------------------------------------------------------------------------------
def train_cmd(py: str, data: Path, out: Path, engine: list[str]) -> list[str]:
    return [py, "-m", "decovlm", "train", "tiny_noalign", f"data.path={data}",
            f"training.output_dir={out}", "training.max_steps=20", "training.global_batch_size=8",
            "training.per_device_batch_size=8", "training.use_cpu=false", "training.precision=bf16",
            "training.disable_tqdm=true", "training.save_steps=1000", "model.tiny.llm_hidden=256",
            *engine]  # fmt: skip


def plan(args: argparse.Namespace, data: Path) -> list[Part]:
    py, out = args.python, Path(args.out)
    tests = [py, "-m", "pytest", "--device", args.device, "-p", "no:randomly", "-q", "-m", "not slow",
             "tests/test_gpu_path.py", "tests/test_engines.py"]  # fmt: skip
    commands = {
        "tests": tests,
        "step": [py, "benchmarks/step.py", "--device", args.device, "--no-write",
                 "--json", str(out / "step.json"), *args.step_args],  # fmt: skip
        "fsdp": train_cmd(py, data, out / "fsdp",
                          ["training.fsdp=full_shard auto_wrap", "training.fsdp_config=fsdp_full_shard"]),  # fmt: skip
        "deepspeed": train_cmd(py, data, out / "deepspeed", ["training.deepspeed=zero3"]),
        "demo": [py, "-m", "decovlm", "demo", "--quick", "--device", args.device, "--out", str(out / "demo")],
        "relevance": [py, "benchmarks/relevance.py", "--sizes", "mid", "--repeats", "2", "--no-write"],
    }  # fmt: skip
    return [Part(name, commands[name], LIMITS[name]) for name in args.parts]


def limits_within(parts: list[Part], budget: float) -> list[int]:
    """Each part's time limit given what is left when it starts, if every earlier part used all
    of its own (the worst case): later parts keep MIN_LIMIT each where the budget allows, and
    a part left with less than MIN_LIMIT is skipped."""
    left, out = budget, []
    for i, part in enumerate(parts):
        later = MIN_LIMIT * (len(parts) - i - 1)
        limit = int(max(0, min(part.limit, max(MIN_LIMIT, left - later), left)))
        out.append(limit)
        left -= limit
    return out


# -- running -------------------------------------------------------------------------------------
def run_part(part: Part, limit: int, out: Path) -> dict:
    log = out / f"{part.name}.log"
    if limit < MIN_LIMIT:
        return {
            "part": part.name,
            "status": "skipped (time budget)",
            "wall_s": 0.0,
            "log": str(log),
        }
    env = {**os.environ, **part.env}
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            part.cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit
        )
        rc, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
        status = "ok" if rc == 0 else f"failed (rc {rc})"
    except subprocess.TimeoutExpired as err:
        rc, status = None, f"timed out ({limit} s)"
        stdout = (
            (err.stdout or b"").decode(errors="replace")
            if isinstance(err.stdout, bytes)
            else err.stdout or ""
        )
        stderr = (
            (err.stderr or b"").decode(errors="replace")
            if isinstance(err.stderr, bytes)
            else err.stderr or ""
        )
    wall = time.perf_counter() - start
    log.write_text(f"$ {' '.join(part.cmd)}\n{stdout}\n--- stderr ---\n{stderr}", encoding="utf-8")
    refused = re.search(r"error: (training\.\w+=.*)", stdout + stderr)
    if rc and refused:
        status = f"refused: {refused.group(1).strip()[:160]}"
    return {"part": part.name, "status": status, "wall_s": wall, "log": str(log), "stdout": stdout}


def summarize(result: dict, out: Path) -> str:
    """One line of what a part showed (steps, loss, sharding, pass counts)."""
    name, stdout = result["part"], result.get("stdout", "")
    if name == "tests":
        m = re.findall(r"(\d+ (?:passed|failed|skipped|error)\w*)", stdout)
        return ", ".join(m[-3:])
    if name in ("fsdp", "deepspeed"):
        metrics = out / name / "metrics.jsonl"
        lines = (
            [json.loads(x) for x in metrics.read_text().splitlines()] if metrics.is_file() else []
        )
        losses = [x["loss"] for x in lines if "loss" in x]
        shard = re.search(r"\[decovlm\] engine .*", stdout)
        parts = [f"{len(losses)} logged steps"]
        if losses:
            parts.append(f"loss {losses[0]:.3f} -> {losses[-1]:.3f}")
        if shard:
            parts.append(shard.group(0).replace("[decovlm] ", ""))
        return "; ".join(parts)
    if name == "demo":
        report = out / "demo" / "REPORT.md"
        return f"report: {report}" if report.is_file() else ""
    return ""


def machine_line() -> str:
    import torch
    import transformers

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    try:
        from importlib.metadata import version

        ds = version("deepspeed")
    except Exception:  # noqa: BLE001 - absent or broken: reported as such
        ds = "not installed"
    return (
        f"{gpu}, torch {torch.__version__} (CUDA {torch.version.cuda}), transformers "
        f"{transformers.__version__}, deepspeed {ds}, {os.cpu_count()} CPU cores"
    )


def report(results: list[dict], out: Path, total_s: float) -> str:
    from common import markdown_table

    rows = [[r["part"], r["status"], f"{r['wall_s']:.0f}", summarize(r, out)] for r in results]
    body = [
        "## GPU check (`scripts/gpu_check.sh`)",
        "",
        f"Machine: {machine_line()}. Offline (HF_HUB_OFFLINE=1), hub kernels off. "
        f"Total {total_s / 60:.1f} min.",
        "",
        markdown_table(["part", "status", "wall (s)", "what it showed"], rows),
    ]
    step = out / "step.json"
    if step.is_file():
        body += ["", json.loads(step.read_text())["report"]]
    for r in results:
        if r["part"] == "relevance" and "## Relevance maps" in r.get("stdout", ""):
            text = r["stdout"][r["stdout"].index("## Relevance maps") :]
            body += ["", "#" + text.strip()]  # one level down inside this section
    return "\n".join(body)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_check_out", help="logs, runs and raw results")
    parser.add_argument("--parts", nargs="+", default=PARTS, choices=PARTS)
    parser.add_argument("--budget", type=float, default=470.0, help="seconds for all parts")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument(
        "--step-args", nargs=argparse.REMAINDER, default=[],
        help="the rest goes to benchmarks/step.py, e.g. --step-args --batch 16",
    )  # fmt: skip
    parser.add_argument("--missing", action="store_true", help="print unmet requirements and exit")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    parser.add_argument("--no-write", action="store_true", help="leave RESULTS.md alone")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.missing:
        print("\n".join(missing_requirements(declared_requirements() + EXTRA_REQUIREMENTS)))
        return 0
    out = ROOT / args.out  # an absolute --out stays as it is
    args.out = str(out)
    data = out / "data" / "train.json"
    parts = plan(args, data)
    limits = limits_within(parts, args.budget)
    if args.dry_run:
        for part, limit in zip(parts, limits, strict=True):
            print(f"[{part.name}] limit {limit} s: {' '.join(part.cmd)}")
        return 0
    sys.path.insert(0, str(ROOT / "src"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("DECOVLM_USE_KERNELS", "0")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])
    )
    out.mkdir(parents=True, exist_ok=True)
    from decovlm.data.toy import write_toy_dataset

    data = write_toy_dataset(out / "data", n=160, kind="chat")
    parts = plan(args, data)
    start, results = time.perf_counter(), []
    for part in parts:
        left = args.budget - (time.perf_counter() - start)
        limit = limits_within([part, *parts[len(results) + 1 :]], left)[0]
        result = run_part(part, limit, out)
        print(
            f"[gpu-check] {part.name}: {result['status']} in {result['wall_s']:.0f} s", flush=True
        )
        results.append(result)
    body = report(results, out, time.perf_counter() - start)
    print(body)
    if not args.no_write:
        from common import write_section

        write_section("gpu", body)
    return (
        0 if all(r["status"] == "ok" or r["status"].startswith("refused") for r in results) else 1
    )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
