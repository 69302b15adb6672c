"""Labels per chat template: exactly the assistant tokens are supervised, and drift is caught."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from decovlm.data.records import BadRecord, parse_record
from decovlm.data.templates import (
    IGNORE_INDEX,
    SegmentEncoder,
    encode_conversation,
    verify_labels,
)
from decovlm.testing import tiny_tokenizer

M = 4  # image tokens per image
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CHAT = {
    "id": "r1",
    "image": "x.png",
    "conversations": [
        {"from": "human", "value": "what colour is the image ? <image>"},
        {"from": "gpt", "value": "red circle"},
        {"from": "human", "value": "how many objects ?"},
        {"from": "gpt", "value": "two"},
    ],
}


def bpe_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE (GPT-2 / Qwen style) with a ChatML template, trained on a few words."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"]
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(
        ["what colour is the image red circle how many objects two user assistant"] * 5, trainer
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>", "<image>"],
        chat_template=CHATML,
    )


def sp_tokenizer() -> PreTrainedTokenizerFast:
    """A SentencePiece-style BPE (Llama / Vicuna style: a word-start marker prepended to each encode)."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    trainer = trainers.BpeTrainer(
        vocab_size=200, special_tokens=["<unk>", "<s>", "</s>", "<image>"]
    )
    tok.train_from_iterator(
        ["what colour is the image ? red circle how many objects two USER: ASSISTANT:"] * 5, trainer
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        additional_special_tokens=["<image>"],
    )


def supervised_spans(ids: list[int], labels: list[int]) -> list[list[int]]:
    spans, current = [], []
    for i, label in zip(ids, labels):
        if label == IGNORE_INDEX:
            if current:
                spans.append(current)
            current = []
        else:
            assert label == i
            current.append(i)
    return spans + ([current] if current else [])


@pytest.mark.parametrize(
    "tokenizer_fn,template,expected",
    [
        (tiny_tokenizer, "vicuna_v1", ["red circle </s>", "two </s>"]),
        (tiny_tokenizer, "tokenizer", ["red circle </s>", "two </s>"]),
        (bpe_tokenizer, "vicuna_v1", [" red circle<|im_end|>", " two<|im_end|>"]),
        (bpe_tokenizer, "tokenizer", ["red circle<|im_end|>\n", "two<|im_end|>\n"]),
        # no doubled word-start marker: " red" is one piece, as in the whole-string tokenization
        (sp_tokenizer, "vicuna_v1", ["red circle</s>", "two</s>"]),
    ],
)
def test_exactly_the_assistant_tokens_are_supervised(tokenizer_fn, template, expected):
    tok = tokenizer_fn()
    image_id = tok.convert_tokens_to_ids("<image>")
    enc = SegmentEncoder(tok, image_id, M)
    record = parse_record(CHAT, 0)
    out = encode_conversation(record.turns, template, enc, record.id)
    spans = supervised_spans(out.input_ids, out.labels)
    assert [tok.decode(s) for s in spans] == expected
    # <image> became exactly M image tokens, none supervised
    assert out.input_ids.count(image_id) == M
    assert all(
        label == IGNORE_INDEX for i, label in zip(out.input_ids, out.labels) if i == image_id
    )
    # labels and ids line up one to one
    assert len(out.input_ids) == len(out.labels)


def test_plain_template_supervises_caption_and_eos_only():
    tok = tiny_tokenizer()
    image_id = tok.convert_tokens_to_ids("<image>")
    enc = SegmentEncoder(tok, image_id, M)
    record = parse_record(
        {
            "id": "c",
            "image": "x.png",
            "conversations": [
                {"from": "human", "value": "describe the image <image>"},
                {"from": "gpt", "value": "a red circle"},
            ],
        },
        0,
    )
    out = encode_conversation(record.turns, "plain", enc, "c")
    assert out.input_ids[:M] == [image_id] * M  # the instruction is dropped, image first
    assert tok.convert_ids_to_tokens(out.input_ids[M:]) == ["a", "red", "circle", "</s>"]
    assert out.labels[:M] == [IGNORE_INDEX] * M and out.labels[M:] == out.input_ids[M:]


def test_vicuna_prompt_text_matches_llava():
    tok = bpe_tokenizer()
    enc = SegmentEncoder(tok, tok.convert_tokens_to_ids("<image>"), 1)
    record = parse_record(CHAT, 0)
    out = encode_conversation(record.turns, "vicuna_v1", enc, "r1")
    text = tok.decode(out.input_ids)
    assert text.startswith(
        "A chat between a curious user and an artificial intelligence assistant."
    )
    assert (
        " USER: <image>\nwhat colour is the image ? ASSISTANT: red circle<|im_end|>USER: how many"
        in text
    )


def test_label_drift_raises_naming_the_record():
    tok = tiny_tokenizer()
    enc = SegmentEncoder(tok, tok.convert_tokens_to_ids("<image>"), M)
    record = parse_record(CHAT, 0)
    out = encode_conversation(record.turns, "vicuna_v1", enc, "r1")
    # shift the first supervised span one token to the left (LLaVA's classic off-by-n)
    start, end = out.spans[0]
    out.spans[0] = (start - 1, end - 1)
    out.labels = [IGNORE_INDEX] * len(out.labels)
    for s, e in out.spans:
        out.labels[s:e] = out.input_ids[s:e]
    with pytest.raises(BadRecord, match="r1.*tokenization mismatch"):
        verify_labels(out, enc, "r1", exact=True)


def test_chat_template_that_rewrites_history_is_rejected():
    tok = tiny_tokenizer()
    # renders only the last message: prefixes are not prefixes of the full text
    tok.chat_template = (
        "{{ messages[-1]['content'] }}{% if add_generation_prompt %} ASSISTANT:{% endif %}"
    )
    enc = SegmentEncoder(tok, tok.convert_tokens_to_ids("<image>"), M)
    record = parse_record(CHAT, 0)
    with pytest.raises(ValueError, match="prefix-consistent"):
        encode_conversation(record.turns, "tokenizer", enc, "r1")
