"""The world's small backbones: loadable HF checkpoints, tokenizer round trip and chat template,
a colour probe above chance, and the settings-hash cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from decovlm.world import generate_world, prepare_backbones


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("world_bb")
    generate_world(root, train=40, eval=8, seed=1, progress=False)
    paths = prepare_backbones(root, budget="tiny", seed=0, progress=False)
    return root, paths


def test_checkpoints_load_with_auto_classes(built):
    from transformers import (
        AutoImageProcessor,
        AutoModelForCausalLM,
        AutoTokenizer,
        CLIPVisionModel,
    )

    _, paths = built
    tok = AutoTokenizer.from_pretrained(paths.tokenizer)
    vision = CLIPVisionModel.from_pretrained(paths.vision)
    llm = AutoModelForCausalLM.from_pretrained(paths.llm)
    processor = AutoImageProcessor.from_pretrained(paths.vision)
    assert llm.config.vocab_size == len(tok)
    assert (llm.config.bos_token_id, llm.config.eos_token_id, llm.config.pad_token_id) == (
        tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)  # fmt: skip
    from PIL import Image

    image = Image.open(paths.root.parent / "images" / "eval_000000.png")
    pixels = processor(images=[image], return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, 64, 64)
    out = vision(pixel_values=pixels, output_hidden_states=True)
    assert out.hidden_states[-2].shape == (1, 1 + 8 * 8, vision.config.hidden_size)
    logits = llm(input_ids=tok("a small red star.", return_tensors="pt").input_ids).logits
    assert logits.shape[-1] == len(tok)


def test_an_object_name_is_one_token_and_starts_from_its_words():
    """`small red star` is one token (a visual token carries every attribute of its patch too), and
    its embedding starts as the scaled sum of its words' (`compose_phrase_embeddings`)."""
    import torch
    from transformers import LlamaForCausalLM

    from decovlm.world.lm import LMSpec, compose_phrase_embeddings, llama_config
    from decovlm.world.tokenizer import train_tokenizer

    texts = ["a small red star, a large blue circle and a small red square.",
             "Is there a red star in the image? What colour is the star?"] * 50  # fmt: skip
    tok = train_tokenizer(texts, vocab_size=600)
    ids = tok(" a small red star and a red star.", add_special_tokens=False).input_ids
    pieces = tok.convert_ids_to_tokens(ids)
    assert "ĠsmallĠredĠstar" in pieces and "ĠredĠstar" in pieces
    assert tok.decode(ids) == " a small red star and a red star."
    model = LlamaForCausalLM(llama_config(LMSpec(hidden_size=16, num_layers=1, num_heads=2,
                                                 intermediate_size=32), tok))  # fmt: skip
    assert compose_phrase_embeddings(model, tok) >= 2
    emb, vocab = model.get_input_embeddings().weight, tok.get_vocab()
    want = (emb[vocab["Ġsmall"]] + emb[vocab["Ġred"]] + emb[vocab["Ġstar"]]) / 3**0.5
    torch.testing.assert_close(emb[vocab["ĠsmallĠredĠstar"]], want)


def test_tokenizer_round_trip_and_chat_template(built):
    from transformers import AutoTokenizer

    root, paths = built
    tok = AutoTokenizer.from_pretrained(paths.tokenizer)
    image_id = tok.convert_tokens_to_ids("<image>")
    assert image_id not in (tok.unk_token_id, None) and "<image>" in tok.all_special_tokens
    for rec in json.loads((root / "finetune.json").read_text())[:10]:
        for turn in rec["conversations"]:
            ids = tok(turn["value"], add_special_tokens=False).input_ids
            assert tok.decode(ids) == turn["value"]
            assert tok.unk_token_id not in ids
    ids = tok("<image>\nWhat colour is the star?").input_ids
    assert ids[0] == tok.bos_token_id and ids[1] == image_id and ids.count(image_id) == 1
    # Every colour and shape word is one token (with its leading space).
    for word in ("purple", "violet", "star", "triangle"):
        assert len(tok(" " + word, add_special_tokens=False).input_ids) == 1
    messages = [
        {"role": "user", "content": "<image>\nWhat colour is the star?"},
        {"role": "assistant", "content": "purple"},
        {"role": "user", "content": [{"type": "text", "text": "And the circle?"}]},
    ]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<s>USER: <image>\nWhat colour is the star? ASSISTANT: purple</s>"
        "USER: And the circle? ASSISTANT:"
    )
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)[
        "input_ids"
    ]
    assert ids.count(tok.bos_token_id) == 1 and ids.count(image_id) == 1


def test_probe_above_chance_and_metrics(built):
    _, paths = built
    metrics = json.loads(paths.metrics_path.read_text())
    assert metrics == paths.metrics
    probe = metrics["vision"]["probe"]
    assert probe["colour_accuracy"] > 2 * probe["colour_chance"]
    assert probe["colour_accuracy"] > probe["colour_majority"]
    assert metrics["llm"]["heldout_loss"] > 0 and metrics["llm"]["train_loss"] > 0
    assert 0.0 <= metrics["llm"]["heldout_answer_accuracy"] <= 1.0


def test_lm_corpus_puts_the_caption_where_the_image_goes(built):
    from decovlm.world import WorldConfig, load_world_meta, sample_scene
    from decovlm.world.tasks import caption
    from decovlm.world.tokenizer import world_corpus

    root, _ = built
    meta = load_world_meta(root)
    config = WorldConfig(**meta["config"])
    plain, plain_held = world_corpus(root)
    train, held = world_corpus(root, context="caption")
    captions = len(json.loads((root / "align.json").read_text()))
    assert len(train) == len(plain) - captions and len(held) == len(plain_held)  # no caption docs
    assert not any("<image>" in doc for doc in train + held + plain + plain_held)
    first = json.loads((root / "finetune.json").read_text())[0]
    question = first["conversations"][0]["value"].replace("<image>\n", "")
    scene = sample_scene(meta["seed"], "train", 0, config)
    assert train[0].startswith(f"USER: {caption(scene)}\n{question} ASSISTANT:")
    assert any(doc.startswith(f"USER: {question}") for doc in plain)  # no context: dropped
    eval_scene = sample_scene(meta["seed"], "eval", 0, config)
    assert held[0].startswith(f"USER: {caption(eval_scene)}\n")
    assert not plain_held[0].startswith(f"USER: {caption(eval_scene)}")
    with pytest.raises(ValueError, match="context must be one of"):
        world_corpus(root, context="pixels")


def test_heldout_scores_count_a_document_right_only_when_every_answer_token_is():
    import torch

    from decovlm.world.lm import heldout_scores

    class NextToken(torch.nn.Module):  # predicts the true next token everywhere
        def forward(self, input_ids, attention_mask):
            nxt = torch.roll(input_ids, -1, dims=1)
            return type("Out", (), {"logits": 20.0 * torch.nn.functional.one_hot(nxt, 16).float()})

    ids = torch.tensor([1, 5, 6, 7, 2])
    right = (ids, torch.tensor([-100, -100, 6, 7, 2]))
    wrong = (ids, torch.tensor([-100, -100, 6, 9, 2]))  # one answer token the model does not say
    loss, accuracy = heldout_scores(NextToken(), [right, right], pad_id=0, device="cpu")
    assert accuracy == 1.0 and loss < 1e-3
    _, accuracy = heldout_scores(NextToken(), [right, wrong], pad_id=0, device="cpu")
    assert accuracy == 0.5


def test_length_grouped_batches_cut_padding_and_still_cover_every_document():
    import torch

    from decovlm.world.lm import length_grouped_batches

    lengths = [
        int(n) for n in torch.randint(80, 240, (500,), generator=torch.Generator().manual_seed(1))
    ]
    batches = length_grouped_batches(lengths, 32, torch.Generator().manual_seed(0))
    drawn = [next(batches) for _ in range(200)]
    assert all(len(b) == 32 for b in drawn)
    seen = {i for b in drawn for i in b}
    assert len(seen) > 0.95 * len(lengths)  # still a random draw over the whole corpus
    epoch = [i for b in drawn[: len(lengths) // 32] for i in b]
    assert len(set(epoch)) == len(epoch)  # within an epoch no document comes twice

    def padded(batch):  # tokens computed when every row is padded to the batch's longest
        return 32 * max(lengths[i] for i in batch)

    real = sum(lengths[i] for b in drawn for i in b)
    random_draw = torch.Generator().manual_seed(0)
    plain = [torch.randint(0, 500, (32,), generator=random_draw).tolist() for _ in range(200)]
    assert (
        real / sum(map(padded, drawn))
        > 0.9
        > sum(lengths[i] for b in plain for i in b) / sum(map(padded, plain))
    )
    # Same seed, same batches: a rerun of the LM's pretraining sees the same data.
    again = length_grouped_batches(lengths, 32, torch.Generator().manual_seed(0))
    assert [next(again) for _ in range(5)] == drawn[:5]
    with pytest.raises(ValueError, match="at least one document"):
        next(length_grouped_batches([], 4, torch.Generator()))


def test_rerun_reuses_and_changed_settings_retrain(built):
    root, paths = built
    stamp = (paths.vision / "decovlm_stamp.json").read_text()
    again = prepare_backbones(root, budget="tiny", seed=0, progress=False)
    assert again.reused == {"tokenizer": True, "vision": True, "llm": True}
    assert (paths.vision / "decovlm_stamp.json").read_text() == stamp
    other = prepare_backbones(root, budget="tiny", seed=5, progress=False)
    assert other.reused == {"tokenizer": True, "vision": False, "llm": False}
    assert not list(Path(paths.root).glob(".*"))  # no temporary folders left behind
    prepare_backbones(root, budget="tiny", seed=0, progress=False)  # restore for other tests


def test_bad_arguments(tmp_path, built):
    root, _ = built
    with pytest.raises(FileNotFoundError, match="decovlm world"):
        prepare_backbones(tmp_path, budget="tiny")
    with pytest.raises(ValueError, match="budget"):
        prepare_backbones(root, budget="huge")


def test_backbones_enter_the_mllm_through_from_components(built):
    try:
        from decovlm import DecoVLMForConditionalGeneration, DecoVLMProcessor
    except ImportError:
        pytest.skip("decovlm.modeling is not available yet")
    from PIL import Image
    from transformers import AutoImageProcessor, AutoTokenizer

    root, paths = built
    tok = AutoTokenizer.from_pretrained(paths.tokenizer)
    model = DecoVLMForConditionalGeneration.from_components(
        vision=str(paths.vision),
        llm=str(paths.llm),
        projector="avgpool2_16",
        image_token_id=tok.convert_tokens_to_ids("<image>"),  # already in the world's vocabulary
    )
    assert tuple(model.patch_grid) == (8, 8) and model.num_image_tokens == 16
    processor = DecoVLMProcessor.from_model(
        model, AutoImageProcessor.from_pretrained(paths.vision), tok
    )
    messages = [{"role": "user", "content": "<image>\nWhat colour is the star?"}]
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    image = Image.open(root / "images" / "eval_000000.png")
    batch = processor(text=[prompt], images=[image], return_tensors="pt")
    assert int((batch["input_ids"] == processor.image_token_id).sum()) == 16
    out = model(**batch)
    assert out.logits.shape[:2] == batch["input_ids"].shape
