"""LLaVA-1.5 import: a tiny random LlavaForConditionalGeneration and its decovlm conversion agree."""

import pytest
import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

from decovlm import DecoVLMForConditionalGeneration
from decovlm.cli import main as cli_main
from decovlm.convert import from_llava

IMAGE_TOKEN = 60


def tiny_llava(seed=0):
    torch.manual_seed(seed)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            image_size=32, patch_size=8,
        ),
        text_config=LlamaConfig(
            vocab_size=64, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        ),
        image_token_id=IMAGE_TOKEN,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )  # fmt: skip
    return LlavaForConditionalGeneration(config).eval()


def _inputs(seed=1):
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(3, 50, (1, 10), generator=g)
    ids = torch.cat(
        [text[:, :2], torch.full((1, 16), IMAGE_TOKEN), text[:, 2:]], dim=1
    )  # 4x4 patches
    return ids, torch.randn(1, 3, 32, 32, generator=g)


def test_converted_llava_gives_the_same_logits_and_generation():
    llava = tiny_llava()
    model = from_llava(llava)
    assert model.config.projector == "mlp2x_gelu" and model.num_image_tokens == 16
    ids, pixels = _inputs()
    with torch.no_grad():
        ref = llava(input_ids=ids, pixel_values=pixels).logits
        ours = model(input_ids=ids, pixel_values=pixels).logits
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    gen_ref = llava.generate(input_ids=ids, pixel_values=pixels, max_new_tokens=8, do_sample=False,
                             suppress_tokens=[IMAGE_TOKEN])  # fmt: skip
    gen_ours = model.generate(input_ids=ids, pixel_values=pixels, max_new_tokens=8, do_sample=False)
    assert gen_ours.tolist() == gen_ref.tolist()


def test_convert_from_a_folder_and_the_cli(tmp_path):
    llava = tiny_llava()
    llava.save_pretrained(tmp_path / "llava")
    model = from_llava(tmp_path / "llava")
    ids, pixels = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(
            model(input_ids=ids, pixel_values=pixels).logits,
            llava(input_ids=ids, pixel_values=pixels).logits,
            atol=1e-5, rtol=1e-5,
        )  # fmt: skip
    # The CLI also converts the processor; a LLaVA folder without one fails with a clear error
    # only after the model was written.
    with pytest.raises(OSError):
        cli_main(["convert-llava", str(tmp_path / "llava"), str(tmp_path / "out")])
    reloaded = DecoVLMForConditionalGeneration.from_pretrained(tmp_path / "out")
    assert reloaded.config.projector == "mlp2x_gelu"


def test_multi_layer_llava_is_rejected():
    llava = tiny_llava()
    llava.config.vision_feature_layer = [-2, -1]
    with pytest.raises(ValueError, match="several vision feature layers"):
        from_llava(llava)
