"""Build the model, processor and dataset a TrainConfig describes (nothing trains here)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from decovlm.data.dataset import ConversationDataset
from decovlm.data.records import SkipLog, load_records
from decovlm.train.config import MODEL_CONFIG_FIELDS, ModelSection, TrainConfig

logger = logging.getLogger(__name__)


def _dtype(name: str | None) -> torch.dtype | None:
    if name in (None, "", "auto"):
        return None
    table = {
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp16": torch.float16,
        "float16": torch.float16,
        "fp32": torch.float32,
        "float32": torch.float32,
    }
    if name not in table:
        raise ValueError(f"model.dtype must be one of {sorted(table)}, got {name!r}")
    return table[name]


def model_config_fields(section: ModelSection) -> dict[str, Any]:
    """The `DecoVLMConfig` fields a training config sets (`MODEL_CONFIG_FIELDS`), by name."""
    fields = {name: getattr(section, name) for name in MODEL_CONFIG_FIELDS}
    fields["projector_kwargs"] = fields["projector_kwargs"] or None
    return fields


def build_model(section: ModelSection) -> tuple[Any, Any]:
    """(model, processor): a tiny random model, a saved decovlm folder, or vision + LLM components."""
    from decovlm.modeling import DecoVLMForConditionalGeneration, DecoVLMProcessor

    if section.init_from:  # a saved model is a complete spec: it wins over tiny / components
        from decovlm.modeling.loading import check_model_folder

        path = check_model_folder(section.init_from, "model.init_from")
        model = DecoVLMForConditionalGeneration.from_pretrained(
            path, dtype=_dtype(section.dtype), use_kernels=section.use_kernels
        )
        processor = DecoVLMProcessor.from_pretrained(path)
        from decovlm.projectors.registry import ProjectorSpec

        if model.config.projector_spec != ProjectorSpec.parse(section.projector):
            from decovlm.errors import UserError

            raise UserError(
                f"model.init_from {path} has projector {model.config.projector!r} but model.projector is "
                f"{section.projector!r}; set model.projector={model.config.projector}"
            )
        return model, processor
    fields = model_config_fields(section)
    image_token = fields.pop("image_token")
    if section.tiny is not None:
        from decovlm.modeling.tiny import tiny_model

        t = section.tiny
        return tiny_model(
            vision=t.vision,
            llm=t.llm,
            image_size=t.image_size,
            patch_size=t.patch_size,
            vision_hidden=t.vision_hidden,
            llm_hidden=t.llm_hidden,
            seed=t.seed,
            attn_implementation=section.attn_implementation,
            image_token=image_token,
            **fields,
        )
    from transformers import AutoImageProcessor, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(section.llm)
    image_processor = AutoImageProcessor.from_pretrained(section.vision)
    if image_token not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [image_token]})
    model = DecoVLMForConditionalGeneration.from_components(
        section.vision,
        section.llm,
        image_token_id=tokenizer.convert_tokens_to_ids(image_token),
        attn_implementation=section.attn_implementation,
        dtype=_dtype(section.dtype),
        use_kernels=section.use_kernels,
        **fields,
    )
    model.config.image_token = image_token
    return model, DecoVLMProcessor.from_model(model, image_processor, tokenizer)


def build_dataset(
    config: TrainConfig,
    processor: Any,
    skip_path: Path | None,
    log_validation: bool = True,
    model: Any = None,
) -> ConversationDataset:
    """Validate the records up front (structure), then wrap them in the lazy dataset.

    With `data.vision_features` (and the `model` whose frozen tower made them) the dataset hands
    out cached patch features instead of pixels."""
    d = config.data
    validation_log = SkipLog(path=skip_path if log_validation else None)
    records = load_records(d.path, strict=d.strict, skip_log=validation_log, limit=d.limit)
    if validation_log.total:
        logger.warning(
            "%d record(s) of %s skipped at validation: %s (first ids: %s)",
            validation_log.total,
            d.path,
            validation_log.counts,
            validation_log.first_ids[:5],
        )
    image_root = d.image_root
    if image_root is None and any(r.has_image for r in records):
        image_root = str(Path(d.path).parent)
    features = None
    if d.vision_features and model is not None and any(r.has_image for r in records):
        features = vision_feature_table(d, model, processor, records, image_root)
    return ConversationDataset(
        records,
        processor,
        template=d.template,
        image_root=image_root,
        max_length=d.max_length,
        strict=d.strict,
        skip_log=SkipLog(path=skip_path),
        max_image_pixels=d.max_image_pixels,
        features=features,
    )


def vision_feature_table(d, model: Any, processor: Any, records: list, image_root: str) -> Any:
    """The feature file `data.vision_features` names (computed first when it is "auto")."""
    import os

    from decovlm.data.features import FeatureTable, compute_features, tower_fingerprint
    from decovlm.errors import UserError

    fingerprint = tower_fingerprint(model, processor)
    if d.vision_features != "auto":
        return FeatureTable.open(d.vision_features, fingerprint)
    path = Path(d.path).parent / "features" / f"{fingerprint}.safetensors"
    images = [r.image for r in records if r.has_image]
    if path.is_file():
        table = FeatureTable.open(path, fingerprint)
        if all(image in table for image in images):
            return table
        images = table.images + images  # another record file on the same images: keep both
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError(
            "data.vision_features=auto computes the features in one process: run it once without "
            f"torchrun (or pass a feature file); missing: {path}"
        )
    logger.info(
        "computing the frozen vision tower's features for %d images into %s", len(set(images)), path
    )
    compute_features(model, processor, image_root, images, path)
    return FeatureTable.open(path, fingerprint)
