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
from typing import Any

from decovlm.demo.config import DemoConfig, settings_hash
from decovlm.demo.convergence import CurveCallback
from decovlm.utils.device import resolve_device
from decovlm.utils.io import atomic_write_json, read_json

RESULT = "result.json"


def _cached(path: Path, stamp: str) -> dict | None:
    """The stored result when it was made with the same settings, else None (and a stale folder goes)."""
    result = _read_stamped(path / RESULT, stamp)
    if result is None and (path / RESULT).exists():
        shutil.rmtree(path)  # made with other settings: redo from scratch
    return result


def _read_stamped(path: Path, stamp: str) -> dict | None:
    """The JSON at `path` when it exists and carries `stamp`, else None."""
    if not path.exists():
        return None
    data = read_json(path)
    return data if data.get("stamp") == stamp else None


def prepare_world(cfg: DemoConfig, out: Path, device: str, log, times: dict) -> tuple[Any, Any]:
    """The world's files (rendered here, or reused) and its backbones (shipped, or trained)."""
    from decovlm.world import generate_world
    from decovlm.world.scene import WORLD_VERSION, WorldConfig
    from decovlm.world.writer import WorldFiles

    b = cfg.budget
    world_dir = out / "world"
    config = WorldConfig(position_grid=b.position_grid)
    stamp = settings_hash(
        {
            "train": b.train_scenes,
            "eval": b.eval_scenes,
            "seed": cfg.world_seed,
            "v": 2,
            "world_version": WORLD_VERSION,
            **({"grid": b.position_grid} if b.position_grid else {}),
        }
    )
    stamp_file = world_dir / "demo_stamp.json"
    start = time.perf_counter()
    if _read_stamped(stamp_file, stamp) is not None:
        log(f"world: reusing {world_dir}")
        files = WorldFiles(
            root=world_dir, align=world_dir / "align.json", finetune=world_dir / "finetune.json",
            questions=world_dir / "eval" / "questions.jsonl",
            relevance_cases=world_dir / "eval" / "relevance_cases.jsonl", world_json=world_dir / "world.json",
            grounding=world_dir / "grounding.json",
        )  # fmt: skip
    else:
        log(f"world: rendering {b.train_scenes} training and {b.eval_scenes} held-out scenes")
        files = generate_world(
            world_dir, train=b.train_scenes, eval=b.eval_scenes, seed=cfg.world_seed, config=config,
        )  # fmt: skip
        atomic_write_json(stamp_file, {"stamp": stamp})
    times["world"] = time.perf_counter() - start
    start = time.perf_counter()
    backbones = resolve_backbones(cfg, out, config, device, log)
    times["backbones"] = time.perf_counter() - start
    return files, backbones


def resolve_backbones(cfg: DemoConfig, out: Path, config, device: str, log):
    """The shipped pretrained backbones when they were made for this world, else trained ones.

    `--retrain-backbones` remakes them here with the shipped recipe (`decovlm world pretrain`);
    a world whose settings differ from the shipped stamp (another lattice, image size or world
    version) trains the `default` backbone budget on the demo's own world instead.
    """
    import torch

    from decovlm.world import prepare_backbones
    from decovlm.world.pretrain import SHIPPED, pretrain, shipped_backbones, world_hash

    # The demo has the machine to itself: the backbones use the same threads as the MLLM stages
    # (at most 4; these models are too small for more to help).
    threads = cfg.threads or min(4, torch.get_num_threads())
    name = cfg.budget.backbones
    if cfg.retrain_backbones:
        folder = out / "backbones"
        if (found := shipped_backbones(config, folder)) is not None:
            log(f"backbones: reusing the ones retrained in {folder}")
            return found
        log(
            f"backbones: retraining them with the shipped recipe into {folder} (about an hour on 2 CPU cores)"
        )
        pretrain(folder, seed=cfg.world_seed, config=config, device=device, threads=threads)
        return shipped_backbones(config, folder)
    if name == "shipped":
        if (found := shipped_backbones(config)) is not None:
            log(f"backbones: the pretrained ones shipped with decovlm ({SHIPPED})")
            return found
        name = "quick" if cfg.quick else "default"
        log(f"backbones: the shipped ones were made for another world (this one hashes to "
            f"{world_hash(config)}); training the '{name}' budget on this world instead")  # fmt: skip
    log(f"backbones: training the tokenizer, vision encoder and LM ({name} budget)")
    return prepare_backbones(out / "world", budget=name, seed=cfg.world_seed, device=device,
                             threads=threads)  # fmt: skip


def vision_features(files, backbones, log, times: dict) -> None:
    """The frozen vision tower's patch features of every training image, computed once for all runs."""
    from decovlm.train.build import build_model, vision_feature_table
    from decovlm.train.config import DataSection, ModelSection

    start = time.perf_counter()
    model, processor = build_model(
        ModelSection(vision=str(backbones.vision), llm=str(backbones.llm), projector="linear")
    )
    from decovlm.data.records import load_records

    records = load_records(files.align)
    log(f"vision features: the frozen encoder's patch features of {len(records)} training images")
    data = DataSection(path=str(files.align), vision_features="auto")
    vision_feature_table(data, model, processor, records, str(files.root))
    times["features"] = time.perf_counter() - start


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
            learning_rate=b.align_lr if align else b.finetune_lr,
            global_batch_size=b.batch_size, per_device_batch_size=b.batch_size, weight_decay=0.0,
            warmup_ratio=0.03, precision="fp32" if device == "cpu" else "bf16", gradient_checkpointing=False,
            logging_steps=5, save_steps=max(50, b.finetune_steps // 4), save_total_limit=1, seed=seed,
            report_to=[], use_cpu=device == "cpu", disable_tqdm=False,
        ),
    )  # fmt: skip


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
) -> dict:
    """Two-stage training of one projector with one seed, then the held-out scores. Cached.

    `swapped_data`: the held-out questions paired with other scenes' images (`demo.swapped`);
    `curve_data`: the questions scored along the finetune stage (`demo.convergence`).
    """
    from decovlm import DecoVLMForConditionalGeneration, DecoVLMProcessor
    from decovlm.demo.stats import question_outcomes
    from decovlm.train import train

    b = cfg.budget
    run_dir = Path(cfg.out_dir) / "runs" / spec / f"seed{seed}"
    stamp = settings_hash({"budget": asdict(b), "spec": spec, "seed": seed, "world": cfg.world_seed,
                           "backbones": str(backbones.llm), "device": device, "v": 4})  # fmt: skip
    cached = _cached(run_dir, stamp)
    if cached is not None:
        log(f"{spec} seed {seed}: reusing {run_dir}")
        return cached
    log(f"{spec} seed {seed}: align stage ({b.align_steps} steps, projector only)")
    start = time.perf_counter()
    aligned = train(_train_config(cfg, spec, seed, "align", files.align, run_dir / "align", device, backbones),
                    resume=True)  # fmt: skip
    align_time = time.perf_counter() - start
    log(f"{spec} seed {seed}: finetune stage ({b.finetune_steps} steps, projector + LLM)")
    curve = CurveCallback(run_dir / "curve", curve_data or files.root, b, device)
    start = time.perf_counter()
    tuned = train(
        _train_config(cfg, spec, seed, "finetune", files.finetune, run_dir / "finetune", device, backbones,
                      projector_path=aligned.projector_path),
        callbacks=[curve], resume=True,
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
                                     run_dir, aligned.projector_path, set(outcomes))  # fmt: skip
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
    eval_time = time.perf_counter() - start
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
                                 limit=b.eval_questions, batch_size=b.eval_batch_size)  # fmt: skip
    return scores, swapped


def _grounding_stage(
    cfg, spec, seed, files, backbones, swapped_data, device, log, run_dir, projector_path, ids
) -> dict:
    """A box-only finetune from the aligned projector; its localization scores (own and swapped image)."""
    from decovlm import DecoVLMForConditionalGeneration, DecoVLMProcessor
    from decovlm.demo.stats import question_outcomes
    from decovlm.demo.swapped import write_category_questions
    from decovlm.eval import decovlm_generate_fn, evaluate_synthetic
    from decovlm.train import train

    b = cfg.budget
    log(f"{spec} seed {seed}: grounding stage ({b.grounding_steps} steps on box questions alone)")
    start = time.perf_counter()
    tuned = train(
        _train_config(cfg, spec, seed, "finetune", files.grounding, run_dir / "grounding", device,
                      backbones, projector_path=projector_path, steps=b.grounding_steps),
        resume=True,
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
            source, run_dir / f"grounding_{key}_data", ["localization"], ids
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
        if (cached := _read_stamped(cache, stamp)) is not None:
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

    return log


def run_demo(cfg: DemoConfig, log=None) -> dict:
    """Run (or resume) the whole comparison and write REPORT.md / report.json; returns the report."""
    from decovlm.demo.figure import draw_paper_figure
    from decovlm.demo.report import build_report, write_report
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
    results = [
        train_and_evaluate(cfg, spec, seed, files, backbones, swapped_data, device, log, curve_data)
        for spec in cfg.projectors
        for seed in range(cfg.n_seeds)
    ]
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
