"""Tiny random decovlm models built from config objects (nothing downloaded): the one builder behind
the trainer's `model.tiny` presets, the tests, the examples and the benchmarks.

    model, processor = tiny_model("avgpool2_4")   # CLIP 32 px / patch 8 -> 4x4 grid, Llama 2 layers

The vocabulary is a few dozen English words (the toy data set and the tests use only these), with
`<image>` as a special token; every other `DecoVLMConfig` field is an argument.
"""

from __future__ import annotations

from typing import Any

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    CLIPVisionConfig,
    LlamaConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    SiglipVisionConfig,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

from decovlm.modeling.modeling import DecoVLMForConditionalGeneration
from decovlm.modeling.processing import DecoVLMProcessor

WORDS = [
    "a",
    "an",
    "the",
    "is",
    "are",
    "of",
    "and",
    "what",
    "colour",
    "color",
    "how",
    "many",
    "left",
    "right",
    "top",
    "bottom",
    "there",
    "in",
    "image",
    "objects",
    "yes",
    "no",
    "red",
    "purple",
    "green",
    "blue",
    "orange",
    "yellow",
    "pink",
    "white",
    "black",
    "gray",
    "violet",
    "circle",
    "square",
    "triangle",
    "star",
    "small",
    "large",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "describe",
    "picture",
    "please",
    "answer",
]
SPECIAL = ["<unk>", "<pad>", "<s>", "</s>", "<image>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}USER: {{ m['content'] }} "
    "{% else %}ASSISTANT: {{ m['content'] }} </s> {% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over a small English vocabulary, with `<image>` as a special token."""
    vocab = {
        tok: i
        for i, tok in enumerate(SPECIAL + WORDS + ["USER:", "ASSISTANT:", "?", ".", ",", "[", "]"])
    }
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        additional_special_tokens=["<image>"],
        chat_template=CHAT_TEMPLATE,
    )


def tiny_vision(kind: str = "clip", image_size: int = 32, patch_size: int = 8, hidden: int = 32):
    """A random CLIP (with CLS) or SigLIP (no CLS) vision tower and a matching PIL image processor."""
    common = dict(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
    )
    if kind == "clip":
        model = AutoModel.from_config(CLIPVisionConfig(**common))
        proc = CLIPImageProcessorPil(
            size={"shortest_edge": image_size},
            crop_size={"height": image_size, "width": image_size},
        )
    elif kind == "siglip":
        model = AutoModel.from_config(SiglipVisionConfig(**common))
        proc = SiglipImageProcessorPil(size={"height": image_size, "width": image_size})
    else:
        raise ValueError(f"tiny vision kind must be 'clip' or 'siglip', got {kind!r}")
    return model, proc


def tiny_llm(
    kind: str = "llama", vocab_size: int = 128, hidden: int = 48, attn_implementation: str = "sdpa"
):
    """A random 2-layer Llama or Qwen2 causal LM."""
    common = dict(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=3,
    )
    if kind == "llama":
        config = LlamaConfig(**common)
    elif kind == "qwen2":
        config = Qwen2Config(**common, tie_word_embeddings=True)
    else:
        raise ValueError(f"tiny llm kind must be 'llama' or 'qwen2', got {kind!r}")
    config._attn_implementation = attn_implementation
    return AutoModelForCausalLM.from_config(config, attn_implementation=attn_implementation)


def tiny_model(
    projector: str = "avgpool2_4",
    vision: str = "clip",
    llm: str = "llama",
    image_size: int = 32,
    patch_size: int = 8,
    seed: int = 0,
    attn_implementation: str = "sdpa",
    projector_kwargs: dict | None = None,
    image_resize_mode: str = "naive",
    vision_hidden: int = 32,
    llm_hidden: int = 48,
    vision_feature_layer: int = -2,
    vision_feature_select: str = "patch",
    image_token: str = "<image>",
) -> tuple[DecoVLMForConditionalGeneration, DecoVLMProcessor]:
    """A (model in eval mode, processor) pair from random tiny configs, ready for forward/generate/save.

    `vision` is clip | siglip, `llm` llama | qwen2; the rest are `DecoVLMConfig` fields and sizes.
    """
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    if image_token not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [image_token]})
    vision_model, image_processor = tiny_vision(vision, image_size, patch_size, vision_hidden)
    language_model = tiny_llm(
        llm, vocab_size=len(tokenizer), hidden=llm_hidden, attn_implementation=attn_implementation
    )
    config_fields: dict[str, Any] = dict(
        projector=projector,
        projector_kwargs=projector_kwargs,
        vision_feature_layer=vision_feature_layer,
        vision_feature_select=vision_feature_select,
        image_resize_mode=image_resize_mode,
    )
    model = DecoVLMForConditionalGeneration.from_components(
        vision_model,
        language_model,
        image_token_id=tokenizer.convert_tokens_to_ids(image_token),
        **config_fields,
    )
    model.config.image_token = image_token
    processor = DecoVLMProcessor.from_model(model, image_processor, tokenizer)
    return model.eval(), processor
