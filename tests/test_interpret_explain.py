"""`explain` on tiny random models: exactness against a brute-force GAE, projector mappings,
a model whose answer can only come from one patch, frozen models, and bad inputs."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import LlamaConfig, LlamaForCausalLM

from decovlm.interpret import explain
from decovlm.interpret.gae import avg_heads
from decovlm.interpret.query_to_patch import fixed_query_to_patch
from decovlm.modeling import DecoVLMForConditionalGeneration, DecoVLMProcessor
from decovlm.projectors.pooling import adaptive_windows
from decovlm.testing import tiny_model, tiny_tokenizer, tiny_vision

PROMPT = "USER: <image>\nwhat colour is the circle ? ASSISTANT:"
ANSWER = "red green blue yellow"


@pytest.fixture(scope="module")
def image():
    return Image.fromarray((np.random.RandomState(0).rand(32, 32, 3) * 255).astype("uint8"))


def freeze(model):
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def reference_text_to_query(model, processor, image, prompt, answer):
    """Straightforward GAE: full L x L matrix, one backward per token, R = I; R += cam @ R."""
    batch = processor(text=[prompt], images=[image], return_tensors="pt")
    ans = processor.tokenizer(answer, add_special_tokens=False)["input_ids"]
    ids = torch.cat([batch["input_ids"][0], torch.tensor(ans)])[None]
    n = batch["input_ids"].shape[1]
    model.language_model.set_attn_implementation("eager")
    with torch.enable_grad():
        feats, grid = model.encode_patches(batch["pixel_values"])
        feats = feats.detach().requires_grad_(True)
        out = model(
            input_ids=ids, image_features=model.projector(feats, grid=grid), output_attentions=True
        )
        rows = []
        for t, tok in enumerate(ans):
            grads = torch.autograd.grad(
                out.logits[0, n - 1 + t, tok], out.attentions, retain_graph=True
            )
            r = torch.eye(ids.shape[1])
            for a, g in zip(out.attentions, grads, strict=True):
                r = r + avg_heads(a[0], g[0]) @ r
            rows.append(r[n - 1 + t, ids[0] == model.config.image_token_id])
    model.language_model.set_attn_implementation("sdpa")
    return torch.stack(rows)


@pytest.mark.parametrize("spec", ["linear", "avgpool2_4", "qformer2_4"])
def test_text_to_query_matches_bruteforce_gae(spec, image):
    model, processor = tiny_model(spec)
    expected = reference_text_to_query(model, processor, image, PROMPT, ANSWER)
    freeze(model)
    expl = explain(model, processor, image, PROMPT, answer=ANSWER)
    assert expl.text_to_query.shape == (4, model.num_image_tokens)
    assert torch.allclose(expl.text_to_query, expected, atol=1e-5)
    assert expl.text_to_query.sum() > 0
    # Query-to-Patch rows sum to 1, so Text-to-Patch keeps the Text-to-Query mass
    assert torch.allclose(expl.text_to_patch.sum((1, 2)), expl.text_to_query.sum(1), atol=1e-5)
    assert [w.text for w in expl.words] == ANSWER.split()
    assert expl.word_map("GREEN").shape == model.patch_grid


def test_batched_and_per_token_gradients_agree(image):
    model, processor = tiny_model("qformer2_4")
    a = explain(model, processor, image, PROMPT, answer=ANSWER, batched=True)
    b = explain(model, processor, image, PROMPT, answer=ANSWER, batched=False)
    c = explain(model, processor, image, PROMPT, answer=ANSWER, chunk=3)
    assert a.method == "gae" and a.query_to_patch.shape == (4, 4, 16)
    for other in (b, c):
        assert torch.allclose(a.text_to_patch, other.text_to_patch, atol=1e-6)
        assert torch.allclose(a.query_to_patch, other.query_to_patch, atol=1e-6)


def test_linear_text_to_patch_is_text_to_query(image):
    model, processor = tiny_model("linear")
    expl = explain(model, processor, image, PROMPT, answer=ANSWER)
    assert expl.method == "fixed" and torch.equal(expl.query_to_patch, torch.eye(16))
    assert torch.allclose(expl.text_to_patch.reshape(4, -1), expl.text_to_query)


@pytest.mark.parametrize("image_size", [32, 40])  # 4x4 and an uneven 5x5 patch grid
def test_avgpool_mapping_blocks(image_size):
    model, processor = tiny_model("avgpool2_4", image_size=image_size)
    h, w = model.patch_grid
    mapping = fixed_query_to_patch(model.projector, (h, w))
    assert mapping.shape == (4, h * w)
    assert torch.allclose(mapping.sum(1), torch.ones(4))
    for i, (r0, r1) in enumerate(adaptive_windows(h, 2)):
        for j, (c0, c1) in enumerate(adaptive_windows(w, 2)):
            block = torch.zeros(h, w)
            block[r0:r1, c0:c1] = 1.0 / ((r1 - r0) * (c1 - c0))
            assert torch.allclose(mapping[i * 2 + j].reshape(h, w), block)
    if image_size == 40:  # windows of a 5x5 grid pooled to 2x2 overlap in the middle row/column
        assert adaptive_windows(5, 2) == [(0, 3), (2, 5)]
        img = Image.new("RGB", (40, 40), (200, 30, 30))
        expl = explain(model, processor, img, PROMPT, answer=ANSWER)
        assert expl.text_to_patch.shape == (4, 5, 5)
        assert torch.allclose(expl.text_to_patch.sum((1, 2)), expl.text_to_query.sum(1), atol=1e-5)


def one_layer_model(spec, seed=0):
    """A tiny model with a 1-layer LLM (so an image token whose embedding is zero has zero value
    vectors and gets exactly zero gradient-weighted attention)."""
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    vision, image_processor = tiny_vision()
    llm = LlamaForCausalLM(
        LlamaConfig(vocab_size=len(tokenizer), hidden_size=48, intermediate_size=96, num_hidden_layers=1,
                    num_attention_heads=4, num_key_value_heads=2, pad_token_id=1, bos_token_id=2, eos_token_id=3)
    )  # fmt: skip
    model = DecoVLMForConditionalGeneration.from_components(
        vision, llm, projector=spec, image_token_id=tokenizer.convert_tokens_to_ids("<image>")
    )
    return model.eval(), DecoVLMProcessor.from_model(model, image_processor, tokenizer)


@pytest.mark.parametrize("spec", ["linear", "avgpool2_4", "qformer2_4"])
def test_answer_from_a_single_patch_peaks_there(spec, image):
    """Only patch 9 (row 2, col 1) reaches the LLM: every other patch feature is zeroed by a hook on
    `encode_patches` and the projector's biases are zero, so those patches map to zero tokens.
    The Text-to-Patch map of the answer must peak on patch 9 (and be zero where nothing flows)."""
    model, processor = one_layer_model(spec)
    active = 9
    for name, p in model.projector.named_parameters():
        if name.endswith("bias"):
            torch.nn.init.zeros_(p)
    original = model.encode_patches

    def only_one_patch(pixel_values):
        feats, grid = original(pixel_values)
        keep = torch.zeros_like(feats)
        keep[:, active] = 1.0
        return feats * keep, grid

    model.encode_patches = only_one_patch
    freeze(model)
    expl = explain(model, processor, image, PROMPT, answer=ANSWER)
    total = expl.text_to_patch.sum(0).reshape(-1)
    assert total[active] > 0
    assert int(total.argmax()) == active or torch.isclose(total.max(), total[active])
    if spec == "linear":  # one token per patch: nothing anywhere else
        assert torch.count_nonzero(total) == 1
    if spec == "avgpool2_4":  # the 2x2 window holding patch 9 (rows 2-3, cols 0-1), uniformly
        window = total.reshape(4, 4)[2:4, 0:2]
        assert torch.allclose(window, window[0, 1].expand(2, 2)) and torch.count_nonzero(total) == 4
    if spec == "qformer2_4":  # every query's Query-to-Patch row points at the one patch
        q2p = expl.query_to_patch
        assert torch.allclose(q2p[..., active][q2p.sum(-1) > 0], torch.tensor(1.0))


def test_frozen_model_state_is_restored(image):
    model, processor = tiny_model("qformer2_4")
    freeze(model)
    model.train()
    impl = model.language_model.config._attn_implementation
    explain(model, processor, image, PROMPT, answer=ANSWER, start_layer=1)
    assert model.training and model.language_model.config._attn_implementation == impl
    assert not any(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())
    assert model.projector.save_attentions is False


def test_layer_range_and_generation(image):
    model, processor = tiny_model("avgpool2_4")
    expl = explain(model, processor, image, "what colour is the circle ?", max_new_tokens=4)
    # the question is prompted with the model's chat template, as in training
    assert expl.prompt == processor.format_question("what colour is the circle ?")
    assert 1 <= len(expl.token_ids) <= 4
    last = explain(model, processor, image, PROMPT, answer=ANSWER, start_layer=-1)
    assert last.layers == (1, 2)
    with pytest.raises(ValueError, match="layer range"):
        explain(model, processor, image, PROMPT, answer=ANSWER, start_layer=2)


def test_bad_inputs(image, tmp_path):
    model, processor = tiny_model("linear")
    expl = explain(model, processor, image, PROMPT, answer=ANSWER)
    with pytest.raises(ValueError, match="'purple' is not in the answer"):
        expl.word_map("purple")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image"):
        explain(model, processor, broken, PROMPT, answer=ANSWER)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        explain(model, processor, tmp_path / "missing.png", PROMPT, answer=ANSWER)
    with pytest.raises(ValueError, match="non-empty"):
        explain(model, processor, image, PROMPT, answer="  ")


def test_learned_projector_without_attention_uses_gradient_fallback(image):
    model, processor = tiny_model("cabstractor_4")
    freeze(model)
    expl = explain(model, processor, image, PROMPT, answer=ANSWER)
    assert expl.method == "grad-x-input" and expl.query_to_patch.shape == (4, 16)
    sums = expl.query_to_patch.sum(-1)
    assert torch.all(((sums - 1).abs() < 1e-5) | (sums == 0)) and sums.sum() > 0
    assert torch.all(expl.query_to_patch >= 0) and expl.text_to_patch.shape == (4, 4, 4)


def test_query_to_patch_mass_and_extra_methods(image):
    model, processor = tiny_model("qformer2_4")
    expl = explain(model, processor, image, PROMPT, answer=ANSWER, extra_methods="all")
    assert expl.methods == ["gae", "attention", "grad-x-input"]
    assert expl.query_to_patch_mass.shape == (4, 4) and expl.word_q2p_mass.shape == (4,)
    att = expl.alternatives["attention"]
    assert att.query_to_patch.shape == (4, 16)
    assert torch.allclose(att.query_to_patch.sum(-1), torch.ones(4), atol=1e-5)
    # raw attention rows sum to 1 per layer: the rollout never vanishes
    assert torch.all(att.mass >= 1)
    t2p = (expl.text_to_query @ att.query_to_patch).reshape(4, 4, 4)
    assert torch.allclose(att.text_to_patch, t2p, atol=1e-6)
    assert expl.word_map("red", "attention").shape == (4, 4)
    summary = expl.summary()
    word = summary["words"][0]
    assert set(word["q2p_mass"]) == {"gae", "attention", "grad-x-input"}
    for key in ("kept_share", "unreliable", "unreliable_reason", "vanished"):
        assert set(word[key]) == set(word["q2p_mass"])
    assert word["vanished"] == word["unreliable"]  # the issue-26 name, same values
    assert word["kept_share"]["attention"] is None and 0 <= word["kept_share"]["gae"] <= 1
    assert (word["unreliable_reason"]["gae"] is None) != word["unreliable"]["gae"]
    arrays = expl.arrays()
    assert arrays["attention__query_to_patch"].shape == (4, 16)
    assert arrays["query_to_patch_mass"].shape == (4, 4)
    assert arrays["word_positive_map"].shape == arrays["word_absolute_map"].shape == (4, 4, 4)
    assert np.all(arrays["word_positive_map"] <= arrays["word_absolute_map"] + 1e-6)
    # the positive relevance is where the (normalised) Text-to-Patch map is
    assert torch.equal(expl.word_positive_map > 0, expl.word_text_to_patch > 0)
    # no tolerance by default; an explicit one is an extra check, and changes no map
    every = explain(model, processor, image, PROMPT, answer=ANSWER, vanish_tol=1e9)
    none = explain(model, processor, image, PROMPT, answer=ANSWER)
    assert expl.vanish_tol is None and all(every.unreliable)
    assert every.verdicts()[0].code in ("below-tol", "negative-at-peak")
    assert torch.equal(every.text_to_patch, none.text_to_patch)
    assert summary["unreliable_words"] == [w.text for w, v in zip(expl.words, expl.unreliable) if v]
    assert summary["vanished_words"] == summary["unreliable_words"]
    # GAE always comes with the attention rollout it is checked against
    own = explain(model, processor, image, PROMPT, answer=ANSWER)
    assert own.methods == ["gae", "attention"]


def test_extra_methods_that_do_not_apply(image):
    model, processor = tiny_model("linear")
    expl = explain(model, processor, image, PROMPT, answer=ANSWER, extra_methods="all")
    assert expl.methods == ["fixed", "grad-x-input"] and not any(expl.unreliable)
    assert torch.allclose(expl.word_q2p_mass, torch.ones(4))
    assert (
        expl.method_word_kept("fixed") is None and expl.method_word_kept("grad-x-input") is not None
    )
    with pytest.raises(ValueError, match="records attention"):
        explain(model, processor, image, PROMPT, answer=ANSWER, extra_methods=["attention"])
    with pytest.raises(ValueError, match="unknown Query-to-Patch method"):
        explain(model, processor, image, PROMPT, answer=ANSWER, extra_methods="lrp")
    with pytest.raises(ValueError, match="no Query-to-Patch method 'attention'"):
        expl.word_map(0, "attention")


def test_explained_logits_follow_the_models_own_steps(image, monkeypatch):
    """explain's pass goes through the model's methods: change one of them and both follow."""
    from decovlm.interpret.explain import explain_mode, teacher_forced_pass

    model, processor = tiny_model("avgpool2_4")
    batch = processor(text=[PROMPT], images=[image], return_tensors="pt")
    ans = processor.tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    ids = torch.cat([batch["input_ids"][0], torch.tensor(ans)])[None]

    def both():
        with explain_mode(model), torch.enable_grad():
            explained = teacher_forced_pass(model, batch["pixel_values"], ids)[-1].logits.detach()
        with torch.no_grad():
            plain = model(input_ids=ids, pixel_values=batch["pixel_values"]).logits
        return explained, plain

    before, plain = both()
    torch.testing.assert_close(before, plain)
    project, merge = model.project_patches, model.merge_image_tokens
    monkeypatch.setattr(model, "project_patches", lambda f, g: 3 * project(f, g))
    after, plain = both()
    torch.testing.assert_close(after, plain)
    assert not torch.allclose(after, before, atol=1e-3)
    monkeypatch.setattr(model, "merge_image_tokens", lambda i, e, t: merge(i, e + 1.0, t))
    merged, plain = both()
    torch.testing.assert_close(merged, plain)
    assert not torch.allclose(merged, after, atol=1e-3)
