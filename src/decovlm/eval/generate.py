"""`decovlm_generate_fn`: a decovlm model + processor as the runner's `generate_fn` (greedy, batched, left padding).

Questions are formatted by the processor (`format_question`) with the chat template saved with
the model; `chat_template` overrides it explicitly (`auto`: the saved one).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image


def _device(model) -> torch.device:
    return next(model.parameters()).device


def encode_questions(
    processor, batch: Sequence[tuple[Image.Image | None, str]], chat_template: str = "auto"
):
    """The processor's batch (left-padded) for (image or None, question) pairs."""
    texts = [processor.format_question(q, img is not None, chat_template) for img, q in batch]
    images = [img for img, _ in batch if img is not None]
    return processor(
        text=texts, images=images or None, return_tensors="pt", padding=True, padding_side="left"
    )


@torch.inference_mode()
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
    device = _device(model)
    dtype = next(model.parameters()).dtype
    inputs = {
        k: (v.to(device, dtype) if k == "pixel_values" else v.to(device)) for k, v in inputs.items()
    }
    tok = processor.tokenizer
    out = model.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
    )
    prompt_len = inputs["input_ids"].shape[1]
    # HF generate returns prompt + new tokens when given input_ids; keep only the new ones.
    if out.shape[1] >= prompt_len and torch.equal(
        out[:, :prompt_len].cpu(), inputs["input_ids"].cpu()
    ):
        out = out[:, prompt_len:]
    return [t.strip() for t in tok.batch_decode(out, skip_special_tokens=True)]


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
