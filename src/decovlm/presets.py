"""Paper-scale model configs (CLIP ViT-L/14-336 + Vicuna-7B), built without weights to check real shapes.

config = paper_config("avgpool2_144")
with torch.device("meta"):
    model = DecoVLMForConditionalGeneration(config)   # no memory, no download
model.num_image_tokens          # 144
"""

from __future__ import annotations

from transformers import CLIPVisionConfig, LlamaConfig

from decovlm.modeling import DecoVLMConfig

# openai/clip-vit-large-patch14-336, vision tower only.
CLIP_VIT_L_14_336 = dict(
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=24,
    num_attention_heads=16,
    image_size=336,
    patch_size=14,
    projection_dim=768,
    hidden_act="quick_gelu",
)
# lmsys/vicuna-7b-v1.5 (a Llama-2-7B).
VICUNA_7B = dict(
    vocab_size=32000,
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=32,
    max_position_embeddings=4096,
    rms_norm_eps=1e-5,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)


def paper_config(
    projector: str = "avgpool2_144",
    vision: dict | None = None,
    text: dict | None = None,
    **kwargs,
) -> DecoVLMConfig:
    """DeCo's main setting: CLIP ViT-L/14-336 (576 patches) + Vicuna-7B-v1.5, penultimate layer.

    `vision` / `text` override entries of the two configs, e.g. a scaled-down model for a test with
    the paper's token layout: `paper_config(text=dict(hidden_size=64, num_hidden_layers=2, ...))`.
    `<image>` is id 32000, just past the vocabulary; a model built from this config grows its
    embedding table to 32,001 rows to hold it (as `from_components` does).
    """
    text_config = {**VICUNA_7B, **(text or {})}
    return DecoVLMConfig(
        vision_config=CLIPVisionConfig(**{**CLIP_VIT_L_14_336, **(vision or {})}),
        text_config=LlamaConfig(**text_config),
        projector=projector,
        # the processor appends <image> after the vocabulary
        image_token_id=kwargs.pop("image_token_id", text_config["vocab_size"]),
        vision_feature_layer=kwargs.pop("vision_feature_layer", -2),
        **kwargs,
    )
