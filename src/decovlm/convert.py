"""Import LLaVA-1.5 checkpoints: a transformers `LlavaForConditionalGeneration` -> a decovlm model.

LLaVA-1.5 is decovlm with the `mlp2x_gelu` projector, so the conversion only renames weights:
`multi_modal_projector.linear_1/2` -> `projector.mlp_projector.0/2`, the language model and
`lm_head` -> one causal LM. The converted model gives the same logits and generations.

    decovlm convert-llava llava-hf/llava-1.5-7b-hf ./llava-1.5-7b-decovlm
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoProcessor, LlavaForConditionalGeneration

from decovlm.modeling import DecoVLMConfig, DecoVLMForConditionalGeneration, DecoVLMProcessor
from decovlm.modeling.card import write_model_card
from decovlm.modeling.kernels import kernel_kwargs


def from_llava(
    model_or_path: LlavaForConditionalGeneration | str | os.PathLike,
    use_kernels: bool | None = None,
    **from_pretrained_kwargs,
) -> DecoVLMForConditionalGeneration:
    """Convert a LLaVA(-1.5) model, or the hub name / folder of one, to a decovlm model."""
    if isinstance(model_or_path, LlavaForConditionalGeneration):
        llava = model_or_path
    else:
        llava = LlavaForConditionalGeneration.from_pretrained(
            model_or_path, **kernel_kwargs(use_kernels), **from_pretrained_kwargs
        )
    cfg = llava.config
    if not isinstance(cfg.vision_feature_layer, int):
        raise ValueError(
            f"LLaVA checkpoints with several vision feature layers ({cfg.vision_feature_layer}) "
            "are not supported: decovlm projectors read one layer"
        )
    if cfg.projector_hidden_act != "gelu":
        raise ValueError(
            f"LLaVA projector activation {cfg.projector_hidden_act!r} is not gelu (mlp2x_gelu)"
        )

    # The LLaVA text stack is a base model plus a separate lm_head: put both into the causal-LM
    # shell of the same architecture (built on meta, so nothing is allocated twice).
    with torch.device("meta"):
        language_model = AutoModelForCausalLM.from_config(cfg.text_config)
    setattr(language_model, language_model.base_model_prefix, llava.model.language_model)
    language_model.set_output_embeddings(llava.lm_head)
    leftover = [
        n
        for n, t in [*language_model.named_parameters(), *language_model.named_buffers()]
        if t.is_meta
    ]
    if leftover:
        raise ValueError(
            f"LLaVA conversion left these language-model tensors unset: {leftover[:5]}"
        )

    config = DecoVLMConfig(
        vision_config=cfg.vision_config,
        text_config=cfg.text_config,
        projector="mlp2x_gelu",
        vision_feature_layer=cfg.vision_feature_layer,
        vision_feature_select="patch"
        if cfg.vision_feature_select_strategy == "default"
        else "full",
        image_token_id=cfg.image_token_id,
        image_resize_mode="pad",  # LLaVA-1.5 pads images to a square
        tie_word_embeddings=bool(getattr(cfg, "tie_word_embeddings", False)),
    )
    model = DecoVLMForConditionalGeneration(
        config, vision_tower=llava.model.vision_tower, language_model=language_model
    )
    proj = llava.model.multi_modal_projector
    mlp = model.projector.mlp_projector
    with torch.no_grad():
        for ours, theirs in ((mlp[0], proj.linear_1), (mlp[2], proj.linear_2)):
            ours.weight.copy_(theirs.weight)
            if theirs.bias is not None:
                ours.bias.copy_(theirs.bias)
            else:  # multimodal_projector_bias=False
                ours.bias.zero_()
    param = next(llava.parameters())
    return model.to(device=param.device, dtype=param.dtype).eval()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "src", help="LLaVA-1.5 checkpoint in transformers format (hub name or folder)"
    )
    parser.add_argument("dst", help="output folder for the decovlm model and processor")
    parser.add_argument(
        "--dtype",
        default="auto",
        help="dtype to load and save in (auto, float16, bfloat16, float32)",
    )


def check_source(src: str) -> None:
    """A UserError when `src` is neither an existing folder nor a hub repo id (`name` or `org/name`)."""
    import re

    from decovlm.errors import MissingFileError

    if Path(src).exists():
        return
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", src) or src.startswith((".", "/", "~")):
        raise MissingFileError(
            f"no LLaVA checkpoint folder {src} (give an existing folder, or a hub repo id such as "
            "llava-hf/llava-1.5-7b-hf)"
        )


def run(args: argparse.Namespace) -> int:
    check_source(args.src)
    dtype = args.dtype if args.dtype == "auto" else getattr(torch, args.dtype)
    model = from_llava(args.src, dtype=dtype)
    model.save_pretrained(args.dst)
    llava_processor = AutoProcessor.from_pretrained(args.src)
    # LLaVA-1.5 was trained with the vicuna_v1 conversation (system prompt included); the hub
    # processor's own template omits the system prompt, so the model gets the one it was trained on.
    processor = DecoVLMProcessor.from_model(
        model,
        llava_processor.image_processor,
        llava_processor.tokenizer,
        chat_template="vicuna_v1",
    )
    processor.save_pretrained(args.dst)
    write_model_card(
        args.dst,
        title=f"{Path(str(args.src)).name} (decovlm)",
        stages=[f"converted from the LLaVA-1.5 checkpoint `{args.src}` (`decovlm convert-llava`)"],
        hyperparameters={"dtype": str(args.dtype)},
        notes="The weights are LLaVA-1.5's: its projector is decovlm's `mlp2x_gelu`.",
    )
    print(f"converted {args.src} -> {args.dst} ({model.num_image_tokens} image tokens, mlp2x_gelu)")
    return 0
