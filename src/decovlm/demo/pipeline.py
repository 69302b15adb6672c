"""The demo's steps: world -> backbones -> (align, finetune) per projector and seed -> scores -> report.

Every artefact is cached under the output folder with a stamp of the settings that made it, so a
rerun reuses finished work, an added projector trains only itself, and a run killed mid-training
resumes from its last checkpoint.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict
from pathlib import Path

from decovlm.demo.config import DemoConfig, read_stamped, settings_hash
from decovlm.demo.convergence import CurveCallback
from decovlm.utils.device import resolve_device
from decovlm.utils.io import atomic_write_json

RESULT = "result.json"


def _cached(path: Path, stamp: str) -> dict | None:
    """The stored result when it was made with the same settings, else None (and a stale folder goes)."""
    result = read_stamped(path / RESULT, stamp)
    if result is None and (path / RESULT).exists():
        shutil.rmtree(path)  # made with other settings: redo from scratch
    return result


def _train_config(
    cfg, spec, seed, stage, data_path, out_dir, device, backbones, projector_path=None, steps=None
):
    from decovlm.train.config import DataSection, ModelSection, TrainConfig, TrainingSection

    b = cfg.budget
    align = stage == "align"
    # Finetune records hold 3 to 5 turns: in random batches 20% of the tokens were padding.
    # Captions are all about as long, so the align stage keeps plain random batches.
    return TrainConfig(
        model=ModelSection(vision=str(backbones.vision), llm=str(backbones.llm), projector=spec),
        data=DataSection(path=str(data_path), template="plain" if align else "tokenizer", max_length=512,
                         sampler="random" if align else "length", vision_features="auto"),
        training=TrainingSection(
            stage=stage, output_dir=str(out_dir), projector_path=str(projector_path) if projector_path else None,
            max_steps=steps or (b.align_steps if align else b.finetune_steps),
            learning_rate=b.align_lr if align else (b.grounding_lr if steps else b.finetune_lr),
            global_batch_size=b.batch_size, per_device_batch_size=b.batch_size, weight_decay=0.0,
            warmup_ratio=0.03, precision="fp32" if device == "cpu" else "bf16", gradient_checkpointing=False,
            logging_steps=5, save_steps=max(50, b.finetune_steps // 4), save_total_limit=1, seed=seed,
            report_to=[], use_cpu=device == "cpu", disable_tqdm=False,
        ),
    )  # fmt: skip


def run_folder(cfg: DemoConfig, spec: str, seed: int, backbones, device: str) -> tuple[Path, str]:
    """Where a run lives, and the stamp of the settings that decide it (a rerun reuses a match)."""
    stamp = settings_hash({"budget": asdict(cfg.budget), "spec": spec, "seed": seed,
                           "world": cfg.world_seed, "backbones": str(backbones.llm), "device": device,
                           "v": 5})  # fmt: skip
    return Path(cfg.out_dir) / "runs" / spec / f"seed{seed}", stamp


def train_and_evaluate(
    cfg: DemoConfig,
    spec: str,
    seed: int,
    files,
    backbones,
    swapped_data: Path,
    device: str,
    log,
    curve_data: Path | None = None,
    quiet: bool = False,
) -> dict:
    """Two-stage training of one projector with one seed, then the held-out scores. Cached.

    `quiet`: progress as log lines (`workers.Progress`) instead of the Trainer's bars, for runs
    side by side.

    `swapped_data`: the held-out questions paired with other scenes' images (`demo.swapped`);
    `curve_data`: the questions scored along the finetune stage (`demo.convergence`).
    """
    from decovlm import DecoVLMForConditionalGeneration, DecoVLMProcessor
    from decovlm.demo.stats import question_outcomes

    b = cfg.budget
    run_dir, stamp = run_folder(cfg, spec, seed, backbones, device)
    cached = _cached(run_dir, stamp)
    if cached is not None:
        log(f"{spec} seed {seed}: reusing {run_dir}")
        return cached
    log(f"{spec} seed {seed}: align stage ({b.align_steps} steps, projector only)")
    start = time.perf_counter()
    name = f"{spec} seed {seed}"
    aligned = _stage(_train_config(cfg, spec, seed, "align", files.align, run_dir / "align", device, backbones),
                     log, f"{name} align", quiet)  # fmt: skip
    align_time = time.perf_counter() - start
    log(f"{spec} seed {seed}: finetune stage ({b.finetune_steps} steps, projector + LLM)")
    curve = CurveCallback(run_dir / "curve", curve_data or files.root, b, device)
    start = time.perf_counter()
    tuned = _stage(
        _train_config(cfg, spec, seed, "finetune", files.finetune, run_dir / "finetune", device, backbones,
                      projector_path=aligned.projector_path),
        log, f"{name} finetune", quiet, callbacks=[curve],
    )  # fmt: skip
    finetune_time = time.perf_counter() - start - curve.seconds
    model = DecoVLMForConditionalGeneration.from_pretrained(tuned.model_path).to(device).eval()
    processor = DecoVLMProcessor.from_pretrained(tuned.model_path)
    log(f"{spec} seed {seed}: scoring the held-out questions (own and swapped images)")
    start = time.perf_counter()
    scores, swapped = _score(model, processor, b, files.root, swapped_data, run_dir)
    steps = b.align_steps + b.finetune_steps
    outcomes = question_outcomes(files.root, run_dir / "eval")
    swapped_outcomes = question_outcomes(swapped_data, run_dir / "eval_swapped")
    grounding = None
    if b.grounding_steps and files.grounding:
        grounding = _grounding_stage(cfg, spec, seed, files, backbones, swapped_data, device, log,
                                     run_dir, aligned.projector_path,
                                     {"eval": set(outcomes), "eval_swapped": set(swapped_outcomes)},
                                     quiet)  # fmt: skip
        for key, own in (("eval", scores), ("eval_swapped", swapped)):
            own["localization"] = grounding[key]["scores"].get(
                "localization", own.get("localization")
            )
        outcomes.update(grounding["eval"]["outcomes"])
        swapped_outcomes.update(grounding["eval_swapped"]["outcomes"])
        for own, table in ((scores, outcomes), (swapped, swapped_outcomes)):
            own["overall"] = {
                "accuracy": 100 * sum(table.values()) / max(1, len(table)),
                "n": len(table),
            }
    # Scoring only: the grounding stage's training is timed on its own.
    eval_time = time.perf_counter() - start - (grounding["seconds"] if grounding else 0.0)
    result = {
        "stamp": stamp,
        "spec": spec,
        "seed": seed,
        "model_path": str(tuned.model_path),
        "visual_tokens": model.num_image_tokens,
        "patches": model.patch_grid[0] * model.patch_grid[1],
        "projector_params": model.projector.trainable,
        "scores": scores,
        "swapped_scores": swapped,
        "curve": curve.points,
        # Per-question right/wrong, for the paired bootstrap intervals of the report (demo.stats).
        "outcomes": outcomes,
        "swapped_outcomes": swapped_outcomes,
        "grounding": grounding,
        "train_seconds": align_time + finetune_time,
        "align_seconds": align_time,
        "finetune_seconds": finetune_time,
        "curve_seconds": curve.seconds,
        "eval_seconds": eval_time,
        "samples_per_second": steps * b.batch_size / max(align_time + finetune_time, 1e-9),
        "final_loss": _last_loss(tuned.metrics),
        "skipped": tuned.skipped.get("total", 0),
    }
    atomic_write_json(run_dir / RESULT, result)
    return result


def _stage(config, log, name: str, quiet: bool, callbacks=()):
    """One training stage (resumed from its last complete checkpoint); with `quiet`, its progress as
    log lines (several runs side by side would interleave their progress bars)."""
    from decovlm.demo.workers import Progress
    from decovlm.train import train
    from decovlm.train.callbacks import list_checkpoints

    extra = [Progress(log, name)] if quiet else []
    # Resume only a stage a killed run left behind (a fresh one has nothing to resume, and
    # `--resume` without a checkpoint warns).
    resume = bool(list_checkpoints(config.training.output_dir))
    return train(config, callbacks=[*callbacks, *extra], resume=resume, quiet=quiet)


def _score(
    model, processor, b, data: Path, swapped_data: Path, run_dir: Path, prefix: str = "eval"
):
    """Held-out scores with each question's own image and with another scene's image (the control)."""
    from decovlm.eval import decovlm_generate_fn, evaluate_synthetic

    generate = decovlm_generate_fn(model, processor, batch_size=b.eval_batch_size,
                                   max_new_tokens=b.max_new_tokens)  # fmt: skip
    scores = evaluate_synthetic(generate, data, run_dir / prefix, limit=b.eval_questions,
                                batch_size=b.eval_batch_size)  # fmt: skip
    # The same questions about another scene's image: how much of the score the image earned.
    swapped = evaluate_synthetic(generate, swapped_data, run_dir / f"{prefix}_swapped",
                                 limit=_fewest(b.eval_questions, b.swapped_questions),
                                 batch_size=b.eval_batch_size)  # fmt: skip
    return scores, swapped


def _fewest(*limits: int | None) -> int | None:
    given = [n for n in limits if n is not None]
    return min(given) if given else None


def _grounding_stage(
    cfg,
    spec,
    seed,
    files,
    backbones,
    swapped_data,
    device,
    log,
    run_dir,
    projector_path,
    ids: dict[str, set[str]],
    quiet,
) -> dict:
    """A box-only finetune from the aligned projector; its localization scores (own and swapped image,
    on the questions `ids["eval"]` and `ids["eval_swapped"]` the question model was scored on)."""
    from decovlm import DecoVLMForConditionalGeneration, DecoVLMProcessor
    from decovlm.demo.stats import question_outcomes
    from decovlm.demo.swapped import write_category_questions
    from decovlm.eval import decovlm_generate_fn, evaluate_synthetic

    b = cfg.budget
    log(f"{spec} seed {seed}: grounding stage ({b.grounding_steps} steps on box questions alone)")
    start = time.perf_counter()
    tuned = _stage(
        _train_config(cfg, spec, seed, "finetune", files.grounding, run_dir / "grounding", device,
                      backbones, projector_path=projector_path, steps=b.grounding_steps),
        log, f"{spec} seed {seed} grounding", quiet,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    model = DecoVLMForConditionalGeneration.from_pretrained(tuned.model_path).to(device).eval()
    processor = DecoVLMProcessor.from_pretrained(tuned.model_path)
    generate = decovlm_generate_fn(model, processor, batch_size=b.eval_batch_size,
                                   max_new_tokens=b.max_new_tokens)  # fmt: skip
    out: dict = {
        "model_path": str(tuned.model_path),
        "steps": b.grounding_steps,
        "seconds": seconds,
    }
    for key, source in (("eval", files.root), ("eval_swapped", swapped_data)):
        data = write_category_questions(
            source, run_dir / f"grounding_{key}_data", ["localization"], ids[key]
        )
        answers = run_dir / f"grounding_{key}"
        out[key] = {"scores": evaluate_synthetic(generate, data, answers, batch_size=b.eval_batch_size),
                    "outcomes": question_outcomes(data, answers)}  # fmt: skip
    return out


def _last_loss(metrics: list[dict]) -> float | None:
    losses = [m["loss"] for m in metrics if "loss" in m]
    return losses[-1] if losses else None


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
    from decovlm.demo.workers import default_workers, run_all
    from decovlm.projectors import ProjectorSpec

    jobs = [
        {"cfg": cfg, "spec": spec, "seed": seed, "files": files, "backbones": backbones,
         "swapped_data": swapped_data, "device": device, "curve_data": curve_data,
         "cost": 2.0 if ProjectorSpec.parse(spec).tokens is None else 1.0}  # all patches: slower
        for spec in cfg.projectors
        for seed in range(cfg.n_seeds)
    ]  # fmt: skip
    done = {}  # finished runs are read here: no worker is started for them
    for k, job in enumerate(jobs):
        run_dir, stamp = run_folder(cfg, job["spec"], job["seed"], backbones, device)
        if (cached := read_stamped(run_dir / RESULT, stamp)) is not None:
            log(f"{job['spec']} seed {job['seed']}: reusing {run_dir}")
            done[k] = cached
    todo = [job for k, job in enumerate(jobs) if k not in done]
    workers = cfg.workers or default_workers(device, len(todo))
    start = time.perf_counter()
    fresh = iter(run_all(train_and_evaluate, todo, workers, log))
    if todo:
        times["runs"] = time.perf_counter() - start
        times["workers"] = min(workers, len(todo))
    results = [done[k] if k in done else next(fresh) for k in range(len(jobs))]
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
