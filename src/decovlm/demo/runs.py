"""One (projector, seed) run of the demo, in parts that worker processes can run side by side.

    align      the projector alone on captions (stage 1 of the recipe)
    questions  from the aligned projector: the finetune on the question mix (projector + LLM), its
               convergence curve and its held-out scores, own image and another scene's
    grounding  from the same aligned projector: box questions alone (`Budget.grounding_steps`),
               and localization scored on the same held-out box questions

The two branches after alignment do not depend on each other, so the demo trains them as separate
jobs: the longest run (the non-compressive projector's question branch) no longer trains its
grounding stage alone at the end while a core idles. Each part is cached in the run's folder with
the stamp of the settings that made it; `merge` writes the run's `result.json`, the record the
report reads (`pipeline.train_all` schedules the parts).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict
from pathlib import Path

from decovlm.demo.config import DemoConfig, read_stamped, settings_hash
from decovlm.demo.convergence import CurveCallback
from decovlm.utils.io import atomic_write_json

RESULT = "result.json"
PARTS = {"align": "aligned.json", "questions": "questions.json", "grounding": "grounding.json"}


def run_folder(cfg: DemoConfig, spec: str, seed: int, backbones, device: str) -> tuple[Path, str]:
    """Where a run lives, and the stamp of the settings that decide it (a rerun reuses a match)."""
    stamp = settings_hash({"budget": asdict(cfg.budget), "spec": spec, "seed": seed,
                           "world": cfg.world_seed, "backbones": str(backbones.llm), "device": device,
                           "v": 6})  # fmt: skip
    return Path(cfg.out_dir) / "runs" / spec / f"seed{seed}", stamp


def cached_result(run_dir: Path, stamp: str) -> dict | None:
    """The run's result when it was made with these settings, else None; a folder made with other
    settings is removed (its checkpoints must not be resumed)."""
    result = read_stamped(run_dir / RESULT, stamp)
    if result is not None:
        return result
    for name in (RESULT, *PARTS.values()):
        if (run_dir / name).exists() and read_stamped(run_dir / name, stamp) is None:
            shutil.rmtree(run_dir)
            break
    return None


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


def scored_limits(b) -> dict[str, int | None]:
    """How many held-out questions (the first ones) each scoring asks: with each question's own
    image, and with another scene's image (the control, a subset). Both branches of a run score
    these same questions, so localization from the grounding branch pairs with the rest."""
    swapped = [n for n in (b.eval_questions, b.swapped_questions) if n is not None]
    return {"eval": b.eval_questions, "eval_swapped": min(swapped) if swapped else None}


def _load(model_path: Path, device: str):
    from decovlm import DecoVLMForConditionalGeneration, DecoVLMProcessor

    model = DecoVLMForConditionalGeneration.from_pretrained(model_path).to(device).eval()
    return model, DecoVLMProcessor.from_pretrained(model_path)


def _generate_fn(model, processor, b):
    from decovlm.eval import decovlm_generate_fn

    return decovlm_generate_fn(model, processor, batch_size=b.eval_batch_size,
                               max_new_tokens=b.max_new_tokens)  # fmt: skip


def align_part(cfg, spec, seed, files, backbones, device, log, quiet=False) -> dict:
    """Stage 1: the projector alone on captions. {"projector_path", "seconds"}."""
    run_dir, stamp = run_folder(cfg, spec, seed, backbones, device)
    if (found := read_stamped(run_dir / PARTS["align"], stamp)) is not None:
        return found
    log(f"{spec} seed {seed}: align stage ({cfg.budget.align_steps} steps, projector only)")
    start = time.perf_counter()
    aligned = _stage(_train_config(cfg, spec, seed, "align", files.align, run_dir / "align", device, backbones),
                     log, f"{spec} seed {seed} align", quiet)  # fmt: skip
    out = {"stamp": stamp, "projector_path": str(aligned.projector_path),
           "seconds": time.perf_counter() - start}  # fmt: skip
    atomic_write_json(run_dir / PARTS["align"], out)
    return out


def questions_part(
    cfg, spec, seed, files, backbones, swapped_data, device, log, projector_path, curve_data=None,
    quiet=False,
) -> dict:  # fmt: skip
    """The question finetune from the aligned projector, its curve and its held-out scores.

    `swapped_data`: the held-out questions paired with other scenes' images (`demo.swapped`);
    `curve_data`: the questions scored along the finetune stage (`demo.convergence`).
    """
    from decovlm.demo.stats import question_outcomes
    from decovlm.eval import evaluate_synthetic

    b = cfg.budget
    run_dir, stamp = run_folder(cfg, spec, seed, backbones, device)
    if (found := read_stamped(run_dir / PARTS["questions"], stamp)) is not None:
        return found
    log(f"{spec} seed {seed}: finetune stage ({b.finetune_steps} steps, projector + LLM)")
    curve = CurveCallback(run_dir / "curve", curve_data or files.root, b, device)
    start = time.perf_counter()
    tuned = _stage(
        _train_config(cfg, spec, seed, "finetune", files.finetune, run_dir / "finetune", device, backbones,
                      projector_path=projector_path),
        log, f"{spec} seed {seed} finetune", quiet, callbacks=[curve],
    )  # fmt: skip
    finetune_time = time.perf_counter() - start - curve.seconds
    model, processor = _load(tuned.model_path, device)
    log(f"{spec} seed {seed}: scoring the held-out questions (own and swapped images)")
    start = time.perf_counter()
    generate = _generate_fn(model, processor, b)
    limits = scored_limits(b)
    scores = evaluate_synthetic(generate, files.root, run_dir / "eval", limit=limits["eval"],
                                batch_size=b.eval_batch_size)  # fmt: skip
    # The same questions about another scene's image: how much of the score the image earned.
    swapped = evaluate_synthetic(generate, swapped_data, run_dir / "eval_swapped",
                                 limit=limits["eval_swapped"], batch_size=b.eval_batch_size)  # fmt: skip
    out = {
        "stamp": stamp,
        "model_path": str(tuned.model_path),
        "visual_tokens": model.num_image_tokens,
        "patches": model.patch_grid[0] * model.patch_grid[1],
        "projector_params": model.projector.trainable,
        "scores": scores,
        "swapped_scores": swapped,
        "curve": curve.points,
        # Per-question right/wrong, for the paired bootstrap intervals of the report (demo.stats).
        "outcomes": question_outcomes(files.root, run_dir / "eval"),
        "swapped_outcomes": question_outcomes(swapped_data, run_dir / "eval_swapped"),
        "finetune_seconds": finetune_time,
        "curve_seconds": curve.seconds,
        "eval_seconds": time.perf_counter() - start,
        "final_loss": _last_loss(tuned.metrics),
        "skipped": tuned.skipped.get("total", 0),
    }
    atomic_write_json(run_dir / PARTS["questions"], out)
    return out


def _question_ids(data: Path, limit: int | None) -> set[str]:
    """The ids of the held-out questions a limit of `limit` scores (the first ones, as the runner)."""
    from decovlm.eval.benchmarks.synthetic import load_synthetic

    items = load_synthetic(Path(data), None, {})
    return {it.question_id for it in (items if limit is None else items[:limit])}


def grounding_part(
    cfg, spec, seed, files, backbones, swapped_data, device, log, projector_path, quiet=False
) -> dict:
    """A box-only finetune from the aligned projector; localization scored on the held-out box
    questions the question branch scores (own image, and the swapped subset)."""
    from decovlm.demo.stats import question_outcomes
    from decovlm.demo.swapped import write_category_questions
    from decovlm.eval import evaluate_synthetic

    b = cfg.budget
    run_dir, stamp = run_folder(cfg, spec, seed, backbones, device)
    if (found := read_stamped(run_dir / PARTS["grounding"], stamp)) is not None:
        return found
    log(f"{spec} seed {seed}: grounding stage ({b.grounding_steps} steps on box questions alone)")
    start = time.perf_counter()
    tuned = _stage(
        _train_config(cfg, spec, seed, "finetune", files.grounding, run_dir / "grounding", device,
                      backbones, projector_path=projector_path, steps=b.grounding_steps),
        log, f"{spec} seed {seed} grounding", quiet,
    )  # fmt: skip
    out: dict = {"stamp": stamp, "model_path": str(tuned.model_path), "steps": b.grounding_steps,
                 "seconds": time.perf_counter() - start}  # fmt: skip
    start = time.perf_counter()
    generate = _generate_fn(*_load(tuned.model_path, device), b)
    limits = scored_limits(b)
    for key, source in (("eval", files.root), ("eval_swapped", swapped_data)):
        ids = _question_ids(source, limits[key])
        data = write_category_questions(
            source, run_dir / f"grounding_{key}_data", ["localization"], ids
        )
        answers = run_dir / f"grounding_{key}"
        out[key] = {"scores": evaluate_synthetic(generate, data, answers, batch_size=b.eval_batch_size),
                    "outcomes": question_outcomes(data, answers)}  # fmt: skip
    out["eval_seconds"] = time.perf_counter() - start
    atomic_write_json(run_dir / PARTS["grounding"], out)
    return out


def run_part(part: str, **job) -> dict:
    """One part of a run by name (what a worker process is given)."""
    return {"align": align_part, "questions": questions_part, "grounding": grounding_part}[part](
        **job
    )


def merge(
    cfg, spec, seed, backbones, device, aligned: dict, questions: dict, grounding: dict | None
) -> dict:
    """The run's record (`result.json`): the question branch's scores, localization from the
    grounding branch when there is one, and every part's time."""
    b = cfg.budget
    run_dir, stamp = run_folder(cfg, spec, seed, backbones, device)
    scores, swapped = questions["scores"], questions["swapped_scores"]
    outcomes, swapped_outcomes = dict(questions["outcomes"]), dict(questions["swapped_outcomes"])
    if grounding is not None:
        for key, own, table in (
            ("eval", scores, outcomes),
            ("eval_swapped", swapped, swapped_outcomes),
        ):
            own["localization"] = grounding[key]["scores"].get(
                "localization", own.get("localization")
            )
            table.update(grounding[key]["outcomes"])
            own["overall"] = {
                "accuracy": 100 * sum(table.values()) / max(1, len(table)),
                "n": len(table),
            }
    train_time = aligned["seconds"] + questions["finetune_seconds"]
    result = {
        "stamp": stamp,
        "spec": spec,
        "seed": seed,
        **{k: questions[k] for k in ("model_path", "visual_tokens", "patches", "projector_params", "curve",
                                     "curve_seconds", "final_loss", "skipped", "finetune_seconds")},
        "scores": scores,
        "swapped_scores": swapped,
        "outcomes": outcomes,
        "swapped_outcomes": swapped_outcomes,
        "grounding": grounding,
        "train_seconds": train_time,
        "align_seconds": aligned["seconds"],
        "eval_seconds": questions["eval_seconds"] + (grounding["eval_seconds"] if grounding else 0.0),
        "samples_per_second": (b.align_steps + b.finetune_steps) * b.batch_size / max(train_time, 1e-9),
    }  # fmt: skip
    atomic_write_json(run_dir / RESULT, result)
    return result


def _last_loss(metrics: list[dict]) -> float | None:
    losses = [m["loss"] for m in metrics if "loss" in m]
    return losses[-1] if losses else None
