"""Build the model, processor and dataset a TrainConfig describes (nothing trains here)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from decovlm.data.dataset import ConversationDataset
from decovlm.data.records import SkipLog, load_records
from decovlm.train.config import ModelSection, TrainConfig

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


def build_model(section: ModelSection) -> tuple[Any, Any]:
    """(model, processor): a tiny random model, a saved decovlm folder, or vision + LLM components."""
    from decovlm.modeling import DecoVLMForConditionalGeneration, DecoVLMProcessor

    if section.init_from:  # a saved model is a complete spec: it wins over tiny / components
        from decovlm.modeling.loading import check_model_folder

        path = check_model_folder(section.init_from, "model.init_from")
        model = DecoVLMForConditionalGeneration.from_pretrained(path, dtype=_dtype(section.dtype))
        processor = DecoVLMProcessor.from_pretrained(path)
        if model.config.projector != section.projector:
            from decovlm.errors import UserError

            raise UserError(
                f"model.init_from {path} has projector {model.config.projector!r} but model.projector is "
                f"{section.projector!r}; set model.projector={model.config.projector}"
            )
        return model, processor
    if section.tiny is not None:
        return build_tiny(section)
    from transformers import AutoImageProcessor, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(section.llm)
    image_processor = AutoImageProcessor.from_pretrained(section.vision)
    if "<image>" not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    model = DecoVLMForConditionalGeneration.from_components(
        section.vision,
        section.llm,
        projector=section.projector,
        projector_kwargs=section.projector_kwargs or None,
        vision_feature_layer=section.vision_feature_layer,
        image_resize_mode=section.image_resize_mode,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        attn_implementation=section.attn_implementation,
        dtype=_dtype(section.dtype),
    )
    return model, DecoVLMProcessor.from_model(model, image_processor, tokenizer)


def build_tiny(section: ModelSection) -> tuple[Any, Any]:
    """A random tiny model (decovlm.testing pieces) with the configured grid and widths."""
    from decovlm.modeling import DecoVLMForConditionalGeneration, DecoVLMProcessor
    from decovlm.testing import tiny_llm, tiny_tokenizer, tiny_vision

    t = section.tiny
    torch.manual_seed(t.seed)
    tokenizer = tiny_tokenizer()
    vision, image_processor = tiny_vision(t.vision, t.image_size, t.patch_size, t.vision_hidden)
    llm = tiny_llm(
        t.llm,
        vocab_size=len(tokenizer),
        hidden=t.llm_hidden,
        attn_implementation=section.attn_implementation,
    )
    model = DecoVLMForConditionalGeneration.from_components(
        vision,
        llm,
        projector=section.projector,
        projector_kwargs=section.projector_kwargs or None,
        vision_feature_layer=section.vision_feature_layer,
        image_resize_mode=section.image_resize_mode,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    return model, DecoVLMProcessor.from_model(model, image_processor, tokenizer)


def build_dataset(
    config: TrainConfig, processor: Any, skip_path: Path | None, log_validation: bool = True
) -> ConversationDataset:
    """Validate the records up front (structure), then wrap them in the lazy dataset."""
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
    return ConversationDataset(
        records,
        processor,
        template=d.template,
        image_root=image_root,
        max_length=d.max_length,
        strict=d.strict,
        skip_log=SkipLog(path=skip_path),
        max_image_pixels=d.max_image_pixels,
    )
