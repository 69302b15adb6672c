"""Greedy answering: the one implementation behind eval, predict, chat, explain and serve.

- `greedy_ids(model, tokenizer, inputs, max_new_tokens)`: an encoded batch -> the answer token ids
  of each row (prompt removed, cut before the first end-of-sequence token);
- `generate_answers(model, processor, batch)`: (image or None, question) pairs -> answer strings,
  each question formatted by the processor (`format_question`) with the chat template saved with
  the model (`chat_template` names another; `auto`: the saved one);
- `decovlm_generate_fn`: the evaluation runner's `generate_fn` (greedy, batched, left padding).

A batch of several rows is decoded in rounds of growing length (8, 16, 32, ... new tokens); after
a round the rows that have finished leave the batch, their KV cache rows with them. One `generate`
call over the whole batch would decode every row until the longest answer of the batch ends (or
`max_new_tokens`): a model that rambles on one question made batch 16 do ~9x the work of batch 1,
and batching did not pay (benchmarks/predict_batching.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

FIRST_ROUND = 8  # new tokens in the first round of a batch; each later round doubles it


def model_inputs(model, inputs) -> dict[str, Any]:
    """The processor's batch on the model's device (pixel values in the model's dtype)."""
    param = next(model.parameters())
    return {
        k: v.to(param.device, param.dtype) if k == "pixel_values" else v.to(param.device)
        for k, v in inputs.items()
    }


def eos_token_ids(model) -> set[int]:
    """The ids that end an answer: the model's generation config's `eos_token_id` (one or a list)."""
    eos = model.generation_config.eos_token_id
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, list | tuple) else [eos])}


def pad_token_id(tokenizer) -> int | None:
    """The id that pads finished rows: the tokenizer's pad token, else its eos token."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def cut_at_eos(ids: list[int], eos: set[int]) -> list[int]:
    for i, tok in enumerate(ids):
        if tok in eos:
            return ids[:i]
    return ids


@torch.inference_mode()
def greedy_ids(
    model, tokenizer, inputs, max_new_tokens: int, **generate_kwargs: Any
) -> list[list[int]]:
    """Greedy answer ids of every row of an encoded batch (the processor's output, left-padded):
    new tokens only, cut before the first end-of-sequence token.

    `generate_kwargs` go to `model.generate` (a `streamer`, `stopping_criteria`); with a streamer
    the batch is decoded in one call, so the stream is the whole answer.
    """
    inputs = model_inputs(model, inputs)
    kwargs = dict(do_sample=False, num_beams=1, pad_token_id=pad_token_id(tokenizer))
    kwargs.update(generate_kwargs)
    eos = eos_token_ids(model)
    prompt = inputs["input_ids"]
    rounds = (
        prompt.shape[0] > 1
        and "streamer" not in kwargs
        and model.generation_config.cache_implementation in (None, "dynamic")
    )
    if not rounds:
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, **kwargs)
        return [cut_at_eos(row, eos) for row in _new_tokens(out, prompt).tolist()]
    return _greedy_in_rounds(model, inputs, max_new_tokens, eos, kwargs)


def _new_tokens(out: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
    # HF generate returns prompt + new tokens when given input_ids; keep only the new ones.
    n = prompt.shape[1]
    if out.shape[1] >= n and torch.equal(out[:, :n].cpu(), prompt.cpu()):
        return out[:, n:]
    return out


# transformers 5.25 names the cache of `generate` (argument and output) `cache`, 5.20 `past_key_values`.
def _cache_name() -> str:
    from transformers.generation.utils import GenerateDecoderOnlyOutput

    return (
        "cache" if "cache" in GenerateDecoderOnlyOutput.__dataclass_fields__ else "past_key_values"
    )


def _greedy_in_rounds(model, inputs, max_new_tokens: int, eos: set[int], kwargs) -> list[list[int]]:
    """Rounds of `generate` over the unfinished rows, continuing from their KV cache."""
    n_prompt = inputs["input_ids"].shape[1]
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    cache_name = _cache_name()
    rows = list(range(ids.shape[0]))  # the batch rows still being decoded
    answers: list[list[int]] = [[] for _ in rows]
    cache, made, size = None, 0, FIRST_ROUND
    while rows and made < max_new_tokens:
        step = min(size, max_new_tokens - made)
        out = model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=step,
            return_dict_in_generate=True, **({cache_name: cache} if cache is not None else {}),
            **extra, **kwargs,
        )  # fmt: skip
        extra = {}  # the images are in the cache after the first round
        seq = out.sequences
        made = seq.shape[1] - n_prompt
        keep = []
        for j, row in enumerate(rows):
            new = seq[j, n_prompt:].tolist()
            answers[row] = cut_at_eos(new, eos)
            if len(answers[row]) == len(new) and made < max_new_tokens:
                keep.append(j)  # no end token yet
        if not keep:
            break
        index = torch.tensor(keep, device=seq.device)
        cache = getattr(out, cache_name)
        cache.batch_select_indices(index)
        ids = seq[index]
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], seq.shape[1] - mask.shape[1])], 1)
        mask = mask[index]
        rows = [rows[j] for j in keep]
        size *= 2
    return answers


def decode_answers(tokenizer, ids: list[list[int]]) -> list[str]:
    return [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]


def encode_questions(
    processor, batch: Sequence[tuple[Image.Image | None, str]], chat_template: str = "auto"
):
    """The processor's batch (left-padded) for (image or None, question) pairs."""
    texts = [processor.format_question(q, img is not None, chat_template) for img, q in batch]
    images = [img for img, _ in batch if img is not None]
    return processor(
        text=texts, images=images or None, return_tensors="pt", padding=True, padding_side="left"
    )


def generate_answers(
    model,
    processor,
    batch: Sequence[tuple[Image.Image | None, str]],
    max_new_tokens: int = 128,
    chat_template: str = "auto",
) -> list[str]:
    """Greedy answers for one batch of (image or None, question)."""
    if not batch:
        return []
    inputs = encode_questions(processor, batch, chat_template)
    ids = greedy_ids(model, processor.tokenizer, inputs, max_new_tokens)
    return decode_answers(processor.tokenizer, ids)


def decovlm_generate_fn(
    model, processor, batch_size: int = 1, max_new_tokens: int = 128, chat_template: str = "auto"
):
    """A `generate_fn` for the runner: splits its input into chunks of `batch_size` and answers greedily.

    Batch size 1 is what reported numbers should use: left padding changes a few greedy answers
    (LLaVA #1928, lmms-eval #236).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model.eval()

    def generate_fn(batch: Sequence[tuple[Image.Image | None, str]]) -> list[str]:
        answers: list[str] = []
        for i in range(0, len(batch), batch_size):
            answers.extend(
                generate_answers(
                    model, processor, batch[i : i + batch_size], max_new_tokens, chat_template
                )
            )
        return answers

    return generate_fn
