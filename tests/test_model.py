"""DecoVLMForConditionalGeneration: placeholder merge, projectors/towers/LLMs, generation, save/load."""

import warnings

import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

import decovlm
from decovlm import DecoVLMForConditionalGeneration, DecoVLMProcessor
from decovlm.testing import tiny_model

PROMPT = "USER: <image> what colour is the circle ? ASSISTANT:"


def _images(n):
    colours = [(220, 20, 20), (20, 200, 20), (20, 20, 220), (200, 200, 20), (120, 20, 160)]
    return [Image.new("RGB", (36 + 3 * i, 30), colours[i % len(colours)]) for i in range(n)]


@pytest.mark.parametrize(
    "projector,vision,llm,expected_m",
    [
        ("linear", "clip", "llama", 16),
        ("avgpool2_4", "clip", "llama", 4),
        ("avgpool2_4", "siglip", "qwen2", 4),
        ("mlp2x_gelu", "siglip", "llama", 16),
        ("qformer2_3", "clip", "qwen2", 3),
    ],
)
def test_forward_shapes_and_placeholders(projector, vision, llm, expected_m):
    model, processor = tiny_model(projector, vision=vision, llm=llm)
    assert model.num_image_tokens == expected_m == processor.num_image_tokens
    batch = processor(text=[PROMPT], images=_images(1))
    n_placeholders = int((batch["input_ids"] == model.config.image_token_id).sum())
    assert n_placeholders == expected_m
    feats, grid = model.encode_patches(batch["pixel_values"])
    # CLIP has a CLS token that must be dropped; SigLIP has none and keeps all 16 patches.
    assert grid == (4, 4) and feats.shape[1] == 16
    out = model(**batch)
    assert out.logits.shape == (1, batch["input_ids"].shape[1], model.config.text_config.vocab_size)
    assert torch.isfinite(out.logits).all()


def test_image_tokens_land_at_placeholders():
    model, processor = tiny_model("avgpool2_4")
    batch = processor(text=[PROMPT], images=_images(1))
    image_tokens = model.get_image_features(batch["pixel_values"])
    embeds = model.merge_image_tokens(
        batch["input_ids"], model.get_input_embeddings()(batch["input_ids"]), image_tokens
    )
    mask = batch["input_ids"][0] == model.config.image_token_id
    torch.testing.assert_close(embeds[0, mask], image_tokens[0])
    text_embeds = model.get_input_embeddings()(batch["input_ids"])[0, ~mask]
    torch.testing.assert_close(embeds[0, ~mask], text_embeds)


def test_placeholder_count_mismatch_names_both_numbers():
    model, processor = tiny_model("avgpool2_4")
    batch = processor(text=[PROMPT], images=_images(1))
    ids = batch["input_ids"].clone()
    ids[0, ids[0] == model.config.image_token_id] = processor.tokenizer.unk_token_id
    ids[0, :3] = model.config.image_token_id  # 3 placeholders for 1 image of 4 tokens
    with pytest.raises(
        ValueError, match=r"3 image placeholder tokens .* 1 image\(s\) x 4 tokens = 4"
    ):
        model(input_ids=ids, pixel_values=batch["pixel_values"])
    with pytest.raises(ValueError, match="no pixel_values"):
        model(input_ids=batch["input_ids"])


def test_processor_rejects_tag_image_mismatch():
    _, processor = tiny_model("avgpool2_4")
    with pytest.raises(ValueError, match="1 '<image>' tag.* 2 image"):
        processor(text=[PROMPT], images=_images(2))


def test_text_only_rows_in_an_image_batch():
    model, processor = tiny_model("avgpool2_4")
    texts = [PROMPT, "USER: how many objects ? ASSISTANT:"]
    batch = processor(text=texts, images=_images(1), padding_side="right")
    out = model(**batch)
    alone = model(**processor(text=[texts[1]]))
    n = int(batch["attention_mask"][1].sum())
    torch.testing.assert_close(out.logits[1, :n], alone.logits[0, :n], atol=1e-5, rtol=1e-5)


def test_batched_greedy_generation_equals_one_by_one():
    model, processor = tiny_model("avgpool2_4", seed=3)
    prompts = [
        "USER: <image> what colour is the circle ? ASSISTANT:",
        "USER: <image> how many ? ASSISTANT:",
        "USER: <image> what is left of the red star ? please answer ASSISTANT:",
        "USER: <image> describe ASSISTANT:",
        "USER: <image> is there a blue square in the image ? ASSISTANT:",
        "USER: <image> what colour ? ASSISTANT:",
        "USER: how many objects are there ? ASSISTANT:",  # text-only row in the batch
        "USER: <image> describe the picture please ASSISTANT:",
    ]
    images = _images(7)
    batch = processor(text=prompts, images=images, padding_side="left")
    out = model.generate(**batch, max_new_tokens=6, do_sample=False)
    batched = out[:, batch["input_ids"].shape[1] :].tolist()
    img_iter = iter(images)
    for i, prompt in enumerate(prompts):
        single = processor(text=[prompt], images=[next(img_iter)] if "<image>" in prompt else None)
        ref = model.generate(**single, max_new_tokens=6, do_sample=False)
        assert ref[0, single["input_ids"].shape[1] :].tolist() == batched[i], f"row {i} differs"


def test_sampling_generation_runs_with_cache():
    model, processor = tiny_model("avgpool2_4")
    batch = processor(text=[PROMPT, PROMPT], images=_images(2), padding_side="left")
    torch.manual_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = model.generate(**batch, max_new_tokens=5, do_sample=True, top_k=5, use_cache=True)
    assert out.shape == (2, batch["input_ids"].shape[1] + 5)
    # The cache reaches the LLM under the one name this transformers uses (no rename warning).
    assert not [w for w in caught if "past_key_values" in str(w.message)]


def test_labels_give_a_loss_and_gradients_reach_the_projector():
    model, processor = tiny_model("avgpool2_4")
    model.train()
    batch = processor(text=[PROMPT + " red"], images=_images(1))
    labels = batch["input_ids"].clone()
    labels[labels == model.config.image_token_id] = -100
    out = model(**batch, labels=labels)
    out.loss.backward()
    assert all(p.grad is not None for p in model.projector.parameters())


def test_save_load_round_trip_and_auto_classes(tmp_path):
    model, processor = tiny_model("avgpool2_4", llm="qwen2")  # qwen2 ties its embeddings
    batch = processor(text=[PROMPT], images=_images(1))
    ref = model(**batch).logits
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = DecoVLMForConditionalGeneration.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(loaded(**batch).logits, ref, atol=0, rtol=0)
    auto = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    assert isinstance(auto, DecoVLMForConditionalGeneration)
    torch.testing.assert_close(auto(**batch).logits, ref, atol=0, rtol=0)
    proc = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(proc, DecoVLMProcessor)
    assert proc.num_image_tokens == 4 and proc.image_token_id == model.config.image_token_id
    assert (
        proc(text=[PROMPT], images=_images(1))["input_ids"].tolist() == batch["input_ids"].tolist()
    )
    assert decovlm.DecoVLMConfig.from_pretrained(tmp_path).projector == "avgpool2_4"


def test_from_components_loads_local_folders(tmp_path):
    from decovlm.testing import tiny_llm, tiny_tokenizer, tiny_vision

    vision, image_processor = tiny_vision("clip")
    tokenizer = tiny_tokenizer()
    llm = tiny_llm(vocab_size=len(tokenizer))
    vision.save_pretrained(tmp_path / "vision")
    llm.save_pretrained(tmp_path / "llm")
    model = DecoVLMForConditionalGeneration.from_components(
        tmp_path / "vision", tmp_path / "llm", projector="avgpool2_4",
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )  # fmt: skip
    for key, value in vision.state_dict().items():
        torch.testing.assert_close(model.vision_tower.state_dict()[key], value, msg=key)
    assert model.config.projector == "avgpool2_4" and model.num_image_tokens == 4
    with pytest.raises(OSError, match="could not load the llm"):
        DecoVLMForConditionalGeneration.from_components(tmp_path / "vision", tmp_path / "missing")


def test_eager_attention_returns_weights():
    model, processor = tiny_model("avgpool2_4", attn_implementation="eager")
    out = model(**processor(text=[PROMPT], images=_images(1)), output_attentions=True)
    assert len(out.attentions) == 2 and out.attentions[0].shape[-1] == out.logits.shape[1]


def test_bad_spec_fails_when_the_config_is_made():
    with pytest.raises(ValueError, match="unknown projector spec 'avgpul2_144'"):
        decovlm.DecoVLMConfig(projector="avgpul2_144")


def test_paper_scale_preset_on_meta_device():
    from decovlm.presets import paper_config

    with torch.device("meta"):
        model = DecoVLMForConditionalGeneration(paper_config("avgpool2_144"))
    assert model.patch_grid == (24, 24)
    assert model.num_image_tokens == 144
    assert model.projector.trainable == 20_979_712
    with torch.device("meta"):
        model = DecoVLMForConditionalGeneration(paper_config("mlp2x_gelu"))
    assert model.num_image_tokens == 576
