"""Batch samples for training: right-pad ids and labels, stack the pixel values (or cached vision features) present."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from decovlm.data.templates import IGNORE_INDEX


@dataclass
class DataCollator:
    """`pixel_values` holds only the images present, in batch order (the model's convention);
    the key is left out when no sample in the batch has an image."""

    pad_token_id: int

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not samples:
            raise ValueError("cannot collate an empty batch")
        length = max(len(s["input_ids"]) for s in samples)
        input_ids = torch.full((len(samples), length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(samples), length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(samples), length), dtype=torch.long)
        for row, s in enumerate(samples):
            n = len(s["input_ids"])
            input_ids[row, :n] = s["input_ids"]
            labels[row, :n] = s["labels"]
            attention_mask[row, :n] = 1
        batch = {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}
        for key in ("pixel_values", "vision_features"):
            images = [s[key] for s in samples if s.get(key) is not None]
            if images:
                batch[key] = torch.stack(images)
        return batch


def pad_token_id_of(tokenizer) -> int:
    """The pad id to use (eos when the tokenizer has no pad token, as LLaMA's does not)."""
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    if tokenizer.eos_token_id is not None:
        return int(tokenizer.eos_token_id)
    raise ValueError("the tokenizer has neither a pad nor an eos token")
