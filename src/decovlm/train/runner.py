"""`train(config, callbacks=...) -> TrainResult`: one stage of training on the HF Trainer.

The Trainer supplies the real distributed engines (torchrun DDP, FSDP, DeepSpeed ZeRO-2/3),
mixed precision, gradient checkpointing and accumulation, the cosine schedule with warmup,
tensorboard / wandb logging, the progress bar and exact resumption (optimizer, scheduler, RNG
and data position). This module adds what a two-stage MLLM recipe needs around it: stage
freezing, the projector hand-off, skip-and-count data, JSONL metrics, checkpoint completion
markers and the output folder layout:

    output_dir/config.yaml             resolved config
    output_dir/trainable.json          trainable / total parameters per module
    output_dir/metrics.jsonl           one line per log step
    output_dir/skipped.jsonl           one line per skipped record (+ skipped_summary.json)
    output_dir/checkpoint-N/           Trainer checkpoints, `COMPLETE` when fully written
    output_dir/model/                  final decovlm model (save_pretrained) + processor, with the
                                       chat template used (chat_template.jinja) and README.md
    output_dir/projector.safetensors   align stage only, with projector_config.json
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from decovlm.train.config import TrainConfig, dump_config
from decovlm.utils.io import atomic_write_json, atomic_write_text, read_jsonl

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    output_dir: Path
    model_path: Path | None
    projector_path: Path | None
    global_step: int
    metrics: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, Any] = field(default_factory=dict)
    trainable: list[dict[str, Any]] = field(default_factory=list)


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _report_to(wanted: list[str]) -> list[str]:
    # Integrations that are not installed are dropped (wandb is optional), never an error.
    available = {"tensorboard": "tensorboard", "wandb": "wandb"}
    return [w for w in wanted if importlib.util.find_spec(available.get(w, w)) is not None]


def _checkpointing_arguments(arguments_class, enabled: bool) -> dict[str, Any]:
    """Gradient checkpointing under the name the installed transformers uses.

    transformers 5.23 renamed `gradient_checkpointing` to `activation_checkpointing` (the old name
    stays a deprecated alias until v6); 5.20-5.22 know only the old one. Non-reentrant
    checkpointing works with the frozen vision tower's inputs.
    """
    fields = getattr(arguments_class, "__dataclass_fields__", {})
    name = (
        "activation_checkpointing"
        if "activation_checkpointing" in fields
        else "gradient_checkpointing"
    )
    return {name: enabled, f"{name}_kwargs": {"use_reentrant": False} if enabled else None}


def training_arguments(config: TrainConfig, has_text_only: bool):
    from transformers import TrainingArguments

    from decovlm.train.engines import engine_arguments

    t = config.training
    world = _world_size()
    per_step = t.per_device_batch_size * world
    if t.global_batch_size % per_step:
        raise ValueError(
            f"training.global_batch_size {t.global_batch_size} is not a multiple of "
            f"per_device_batch_size {t.per_device_batch_size} x {world} process(es)"
        )
    find_unused = t.ddp_find_unused_parameters
    if find_unused is None:
        # A text-only batch leaves the projector without gradient on that rank.
        find_unused = has_text_only and world > 1
    return TrainingArguments(
        output_dir=t.output_dir,
        per_device_train_batch_size=t.per_device_batch_size,
        gradient_accumulation_steps=t.global_batch_size // per_step,
        num_train_epochs=t.num_train_epochs,
        max_steps=t.max_steps,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        warmup_steps=t.warmup_ratio,  # a float < 1 is a ratio of the total steps
        lr_scheduler_type=t.lr_scheduler,
        max_grad_norm=t.max_grad_norm,
        bf16=t.precision == "bf16",
        fp16=t.precision == "fp16",
        **_checkpointing_arguments(TrainingArguments, t.gradient_checkpointing),
        logging_steps=t.logging_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=None,  # rotation runs after the completion marker (CheckpointMarker)
        seed=t.seed,
        data_seed=t.seed,
        report_to=_report_to(list(t.report_to)),
        **engine_arguments(t),  # deepspeed json, or fsdp + fsdp_config (decovlm.train.engines)
        ddp_find_unused_parameters=find_unused,
        use_cpu=t.use_cpu,
        disable_tqdm=t.disable_tqdm,
        dataloader_num_workers=config.data.num_workers,
        remove_unused_columns=False,
        label_names=["labels"],
        train_sampling_strategy="random" if config.data.sampler == "random" else "group_by_length",
    )


def skip_summary(path: Path) -> dict[str, Any]:
    """Unique skipped records by reason (several ranks / epochs may log the same record).

    A record is its position in the data file plus its id, so bad records sharing an id count
    once each; lines without a position (older logs) fall back to the id.
    """
    seen: dict[tuple[Any, str], str] = {}
    for r in read_jsonl(path):
        if isinstance(r, dict):
            seen.setdefault((r.get("index"), str(r.get("id"))), str(r.get("reason", "")))
    by_reason: dict[str, int] = {}
    for reason in seen.values():
        key = reason.split(":", 1)[0]
        by_reason[key] = by_reason.get(key, 0) + 1
    return {
        "total": len(seen),
        "by_reason": by_reason,
        "first": [{"id": k[1], "reason": v} for k, v in list(seen.items())[:20]],
    }


def train(
    config: TrainConfig, callbacks: list | None = None, resume: bool = False, quiet: bool = False
) -> TrainResult:
    """Run one training stage; `callbacks` are extra `transformers.TrainerCallback`s.

    `quiet` drops the Trainer's own progress bar and log printing (a caller that runs several
    trainings side by side reports progress through its callbacks instead)."""
    from transformers import set_seed

    from decovlm.train.build import build_dataset, build_model
    from decovlm.train.callbacks import (
        CheckpointMarker,
        JsonlMetrics,
        find_resume_checkpoint,
        list_checkpoints,
    )
    from decovlm.train.engines import check_engine, engine_report, single_process_group
    from decovlm.train.stages import (
        configure_stage,
        format_summary,
        load_projector,
        save_projector,
        trainable_summary,
    )
    from decovlm.train.trainer import DecoTrainer

    config.validate()
    engine = check_engine(config)  # FSDP / DeepSpeed run for real or refuse, before any work
    config.check_batch()  # before the model is built, not in training_arguments after it
    single_process_group(engine)
    t = config.training
    out = Path(t.output_dir)
    is_main = _rank() == 0
    checkpoint = find_resume_checkpoint(out) if resume else None
    if not resume and list_checkpoints(out):
        from decovlm.errors import UserError

        raise UserError(
            f"{out} already holds checkpoints: pass --resume to continue, or another output_dir"
        )
    if resume and checkpoint is None:
        logger.warning("--resume: no complete checkpoint in %s, starting from scratch", out)
    if checkpoint is not None:
        from decovlm.train.callbacks import check_resumable

        missing = check_resumable(checkpoint, t.resume_without_optimizer)
        if missing:
            logger.warning("--resume from %s without %s", checkpoint, ", ".join(missing))
    skip_path = out / "skipped.jsonl"
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        if checkpoint is None:
            for name in ("metrics.jsonl", "skipped.jsonl"):
                (out / name).unlink(missing_ok=True)
        atomic_write_text(out / "config.yaml", dump_config(config))

    set_seed(t.seed)
    model, processor = build_model(config.model)
    # The template the labels are built with is the one saved with the model (chat_template.jinja),
    # so eval / serve / explain / chat prompt the model the way it was trained.
    processor.set_chat_template(config.data.template)
    dataset = build_dataset(config, processor, skip_path, log_validation=is_main, model=model)
    # TrainingArguments before any distributed wrapping; ZeRO-3 reads its config from them.
    args = training_arguments(config, has_text_only=not all(dataset.has_image))
    if t.stage == "finetune" and t.projector_path:
        load_projector(model, t.projector_path)  # on the plain model, before DDP/FSDP/ZeRO
    model = configure_stage(model, t.stage, t.lora)
    model.language_model.config.use_cache = False
    rows = trainable_summary(model)
    if is_main:
        if not quiet:
            print(
                f"[decovlm] stage {t.stage}: trainable parameters\n{format_summary(rows)}",
                flush=True,
            )
        atomic_write_json(out / "trainable.json", {"stage": t.stage, "modules": rows})

    from decovlm.data.collator import DataCollator, pad_token_id_of

    trainer = DecoTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=DataCollator(pad_token_id_of(processor.tokenizer)),
        processing_class=processor,
        callbacks=[
            JsonlMetrics(out / "metrics.jsonl"),
            CheckpointMarker(t.save_total_limit),
            *([engine_report(engine)] if engine != "ddp" else []),
            *(callbacks or []),
        ],
        sampler_kind=config.data.sampler,
    )
    if quiet:
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)

    model_path = out / "model"
    projector_path = None
    final = trainer.model
    if t.lora.enabled and hasattr(final.language_model, "merge_and_unload"):
        final.language_model = final.language_model.merge_and_unload()
    trainer.save_model(str(model_path))
    if is_main:
        processor.save_pretrained(str(model_path))
        if t.stage == "align":
            projector_path = save_projector(final, out, model_dir=model_path)
    summary = skip_summary(skip_path)
    if is_main:
        atomic_write_json(out / "skipped_summary.json", summary)
        if summary["total"]:
            first = ", ".join(f["id"] for f in summary["first"][:10])
            print(
                f"[decovlm] skipped {summary['total']} record(s) {summary['by_reason']}; first: {first}",
                flush=True,
            )
    if is_main:
        write_card(model_path, config, read_jsonl(out / "metrics.jsonl"), summary, len(dataset))
    _clean_incomplete(out, is_main)
    return TrainResult(
        output_dir=out,
        model_path=model_path,
        projector_path=projector_path,
        global_step=trainer.state.global_step,
        metrics=read_jsonl(out / "metrics.jsonl"),
        skipped=summary,
        trainable=rows,
    )


def write_card(
    model_path: Path, config: TrainConfig, metrics: list[dict], skipped: dict, n_records: int
) -> Path:
    """The saved model's README.md: backbones, stage, data, hyper-parameters, recorded metrics."""
    from decovlm.modeling.card import write_model_card

    m, d, t = config.model, config.data, config.training
    stages = [f"`{t.stage}` ({STAGE_TEXT.get(t.stage, t.stage)}), {t.output_dir}"]
    if m.init_from:
        stages.insert(0, f"initialised from `{m.init_from}` (its README.md lists earlier stages)")
    if t.projector_path:
        stages.insert(0, f"projector from the align stage: `{t.projector_path}`")
    final: dict = {}
    for row in metrics:  # the last value of each metric the run logged
        final.update({k: v for k, v in row.items() if isinstance(v, int | float)})
    final["skipped records"] = skipped.get("total", 0)
    tiny = "tiny random (decovlm.testing)" if m.tiny is not None and not m.init_from else None
    return write_model_card(
        model_path,
        vision=tiny or (None if m.init_from else m.vision),
        llm=tiny or (None if m.init_from else m.llm),
        stages=stages,
        data={
            "path": d.path,
            "chat template": d.template,
            "records used": n_records,
            "max length": d.max_length,
            "sampler": d.sampler,
        },
        hyperparameters={
            "learning rate": t.learning_rate,
            "global batch size": t.global_batch_size,
            "per-device batch size": t.per_device_batch_size,
            "epochs": t.num_train_epochs,
            "max steps": t.max_steps,
            "weight decay": t.weight_decay,
            "warmup ratio": t.warmup_ratio,
            "schedule": t.lr_scheduler,
            "precision": t.precision,
            "LoRA": t.lora.enabled,
            "seed": t.seed,
        },
        metrics=final,
    )


STAGE_TEXT = {
    "align": "projector trained, vision tower and LLM frozen",
    "finetune": "projector and LLM trained, vision tower frozen",
    "no-align": "one stage: projector and LLM trained from the start",
}


def _clean_incomplete(out: Path, is_main: bool) -> None:
    """Remove checkpoint folders a crash left half-written (they never had COMPLETE)."""
    from decovlm.train.callbacks import list_checkpoints

    if not is_main:
        return
    for _, path, ok in list_checkpoints(out):
        if not ok:
            shutil.rmtree(path, ignore_errors=True)
