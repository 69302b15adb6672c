"""The demo's steps: world -> backbones -> features -> runs (align, then questions and grounding
per projector and seed, in worker processes) -> relevance -> figures -> report.

Every artefact is cached under the output folder with a stamp of the settings that made it, so a
rerun reuses finished work, an added projector trains only itself, and a run killed mid-training
resumes from its last checkpoint (`demo.runs`).
"""

from __future__ import annotations

import time
from pathlib import Path

from decovlm.demo.config import DemoConfig, read_stamped, settings_hash
from decovlm.utils.device import resolve_device
from decovlm.utils.io import atomic_write_json


def relevance_scores(
    cfg: DemoConfig, results: list[dict], files, device: str, log
) -> dict[str, dict]:
    """Pointing game and energy of each projector's Text-to-Patch maps on the world's masks (seed 0)."""
    from decovlm import DecoVLMForConditionalGeneration, DecoVLMProcessor
    from decovlm.interpret import load_cases, score_cases

    cases, root = load_cases(files.relevance_cases, root=files.root)
    cases = cases[: cfg.budget.relevance_cases]
    out: dict[str, dict] = {}
    for result in results:
        if result["seed"] != 0:
            continue
        cache = Path(result["model_path"]).parent.parent / "relevance.json"
        stamp = settings_hash({"run": result["stamp"], "cases": len(cases), "v": 2})
        if (cached := read_stamped(cache, stamp)) is not None:
            out[result["spec"]] = cached["scores"]
            continue
        log(f"{result['spec']}: relevance maps for {len(cases)} cases")
        model = DecoVLMForConditionalGeneration.from_pretrained(result["model_path"]).to(device)
        processor = DecoVLMProcessor.from_pretrained(result["model_path"])
        scores = score_cases(model, processor, cases, root, chat=True, progress=True)
        atomic_write_json(cache, {"stamp": stamp, "scores": scores})
        out[result["spec"]] = scores
    return out


def _timed_log(start: float):
    def log(message: str) -> None:
        print(f"[decovlm demo {time.perf_counter() - start:6.1f}s] {message}", flush=True)

    log.start = start  # type: ignore[attr-defined]  (worker processes log on the same clock)
    return log


def run_demo(cfg: DemoConfig, log=None) -> dict:
    """Run (or resume) the whole comparison and write REPORT.md / report.json; returns the report."""
    from decovlm.demo.figure import draw_paper_figure
    from decovlm.demo.report import build_report, write_report
    from decovlm.demo.setup import prepare_world, vision_features
    from decovlm.demo.swapped import write_curve_questions, write_swapped_questions

    log = log or _timed_log(time.perf_counter())
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    started = time.perf_counter()
    times: dict[str, float] = {}
    files, backbones = prepare_world(cfg, out, device, log, times)
    vision_features(files, backbones, log, times)
    swapped_data = write_swapped_questions(files.root, out / "swapped_data")
    curve_data = write_curve_questions(files.root, out / "curve_data", cfg.budget.curve_questions)
    results = train_all(cfg, files, backbones, swapped_data, curve_data, device, log, times)
    start = time.perf_counter()
    relevance = relevance_scores(cfg, results, files, device, log)
    times["relevance"] = time.perf_counter() - start
    log("figures: relevance maps of a fixed example")
    start = time.perf_counter()
    figure = draw_paper_figure(results, files, out / "figures", device)
    times["figures"] = time.perf_counter() - start
    report = build_report(
        cfg, results, relevance, files, backbones, figure, time.perf_counter() - started, times
    )
    write_report(report, out)
    return report


def train_all(
    cfg, files, backbones, swapped_data, curve_data, device, log, times: dict
) -> list[dict]:
    """Every (projector, seed) run: finished ones read back, the rest trained in worker processes.

    First every run's align stage, then its two branches (questions, grounding) as separate jobs,
    longest first (`demo.runs`, `demo.workers`).
    """
    from decovlm.demo.runs import cached_result, merge, run_folder, run_part
    from decovlm.demo.workers import default_workers, run_all
    from decovlm.projectors import ProjectorSpec

    runs = [(spec, seed) for spec in cfg.projectors for seed in range(cfg.n_seeds)]
    done: dict[tuple[str, int], dict] = {}
    for spec, seed in runs:
        run_dir, stamp = run_folder(cfg, spec, seed, backbones, device)
        if (found := cached_result(run_dir, stamp)) is not None:
            log(f"{spec} seed {seed}: reusing {run_dir}")
            done[spec, seed] = found
    todo = [run for run in runs if run not in done]
    if not todo:
        return [done[run] for run in runs]
    start = time.perf_counter()
    grounding = bool(cfg.budget.grounding_steps and files.grounding)

    def job(part: str, spec: str, seed: int, **extra) -> dict:
        # The non-compressive projector keeps every patch: its steps cost about 1.4x.
        full = ProjectorSpec.parse(spec).tokens is None
        cost = {"align": 0.1, "questions": 1.0, "grounding": 0.6}[part] * (1.4 if full else 1.0)
        return {"part": part, "cfg": cfg, "spec": spec, "seed": seed, "files": files,
                "backbones": backbones, "device": device, "cost": cost, **extra}  # fmt: skip

    align_jobs = [job("align", spec, seed) for spec, seed in todo]
    workers = cfg.workers or default_workers(device, len(todo) * (2 if grounding else 1))
    aligned = dict(zip(todo, run_all(run_part, align_jobs, workers, log), strict=True))
    branches, keys = [], []
    for spec, seed in todo:
        branch = {
            "swapped_data": swapped_data,
            "projector_path": aligned[spec, seed]["projector_path"],
        }
        branches.append(job("questions", spec, seed, curve_data=curve_data, **branch))
        keys.append((spec, seed, "questions"))
        if grounding:
            branches.append(job("grounding", spec, seed, **branch))
            keys.append((spec, seed, "grounding"))
    parts = dict(zip(keys, run_all(run_part, branches, workers, log), strict=True))
    for spec, seed in todo:
        done[spec, seed] = merge(cfg, spec, seed, backbones, device, aligned[spec, seed],
                                 parts[spec, seed, "questions"], parts.get((spec, seed, "grounding")))  # fmt: skip
    times["runs"] = time.perf_counter() - start
    times["workers"] = min(workers, len(branches))
    return [done[run] for run in runs]
