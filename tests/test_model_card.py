"""Every saved model folder holds its chat template and a model card (training, convert-llava)."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

from decovlm.chat_template import BUILTIN_TEMPLATES
from decovlm.cli import main
from decovlm.data.toy import write_toy_dataset
from decovlm.modeling.card import model_card
from decovlm.modeling.loading import load_model
from decovlm.testing import tiny_model, tiny_tokenizer, tiny_vision
from decovlm.train import load_config, train


def test_training_saves_its_template_and_a_card(tmp_path):
    torch.set_num_threads(1)
    data = write_toy_dataset(tmp_path / "data", n=8, kind="chat", name="chat.json")
    overrides = [
        f"data.path={data}",
        f"training.output_dir={tmp_path / 'run'}",
        "data.template=vicuna_v1",  # the tiny tokenizer has a template of its own: not this one
        "training.max_steps=1",
        "training.global_batch_size=4",
        "training.per_device_batch_size=4",
        "training.disable_tqdm=true",
    ]
    result = train(load_config("tiny_noalign", overrides))
    folder = result.model_path
    assert (folder / "chat_template.jinja").read_text() == BUILTIN_TEMPLATES["vicuna_v1"]
    _, processor = load_model(folder, "cpu")
    assert processor.chat_template_name == "vicuna_v1"
    assert processor.format_question("what ?").startswith("A chat between")
    card = (folder / "README.md").read_text()
    for part in (
        "avgpool",  # the projector
        "tiny random",  # the backbones
        "no-align",  # the stage
        str(data),  # the data
        "vicuna_v1",  # the template
        "learning rate",
        "train_loss",  # a metric the run recorded
        "load_model(",
        "decovlm chat --model",
    ):
        assert part in card, part


def test_card_reads_what_is_saved(tmp_path):
    model, processor = tiny_model("avgpool2_4")
    processor.set_chat_template("plain")
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    card = model_card(tmp_path, metrics={"accuracy": 0.5}, stages=["align"])
    assert "**plain**" in card and "| visual tokens per image | `4` |" in card
    assert "| accuracy | 0.5 |" in card and "- align" in card


@pytest.fixture
def llava_folder(tmp_path):
    torch.manual_seed(0)
    tok = tiny_tokenizer()
    vision, image_processor = tiny_vision()
    config = LlavaConfig(
        vision_config=vision.config,
        text_config=LlamaConfig(
            vocab_size=len(tok), hidden_size=48, intermediate_size=96, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, pad_token_id=1, bos_token_id=2,
            eos_token_id=3,
        ),
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )  # fmt: skip
    LlavaForConditionalGeneration(config).save_pretrained(tmp_path / "llava")
    LlavaProcessor(
        image_processor, tok, patch_size=8, vision_feature_select_strategy="default"
    ).save_pretrained(tmp_path / "llava")
    return tmp_path / "llava"


def test_convert_llava_saves_vicuna_template_and_card(llava_folder, tmp_path):
    assert main(["convert-llava", str(llava_folder), str(tmp_path / "out")]) == 0
    out = tmp_path / "out"
    assert (out / "chat_template.jinja").read_text() == BUILTIN_TEMPLATES["vicuna_v1"]
    card = (out / "README.md").read_text()
    assert "mlp2x_gelu" in card and "converted from the LLaVA-1.5 checkpoint" in card
    assert "**vicuna_v1**" in card
