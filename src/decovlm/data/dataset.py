"""A lazy supervised dataset over LLaVA records: tokenize, expand `<image>`, load the image.

Images and tokenization are done lazily in `__getitem__` (a 665K-record file would take minutes to
tokenize up front). A record that turns out bad at that point (missing or corrupt image, image
tokens that do not fit in `max_length`, a tokenization mismatch) is skipped and counted, and the
next record in file order is returned in its place, so batch sizes, data-parallel sharding and
resumption stay deterministic. `strict=True` raises at once, naming the record id.

Truncation keeps the image tokens whole: trailing text is dropped; a sample whose image span ends
past `max_length`, or that has no supervised token left, is skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from decovlm.chat_template import CHAT_TEMPLATES
from decovlm.data.records import BadRecord, Record, SkipLog, estimate_length
from decovlm.data.templates import IGNORE_INDEX, SegmentEncoder, encode_conversation
from decovlm.errors import UserError


class ConversationDataset(Dataset):
    """Items are dicts: `input_ids`, `labels` (LongTensor, length <= max_length) and
    `pixel_values` ((3, H, W) or None for a text-only record); with a `features` table
    (`decovlm.data.features`, the frozen tower's features computed once) `vision_features`
    ((N, Dv)) stands in for `pixel_values` and the image file is not read."""

    def __init__(
        self,
        records: list[Record],
        processor: Any,
        template: str,
        image_root: str | Path | None = None,
        max_length: int = 2048,
        image_token_id: int | None = None,
        strict: bool = False,
        skip_log: SkipLog | None = None,
        max_image_pixels: int | None = None,
        features: Any = None,
    ):
        if template not in CHAT_TEMPLATES:
            raise ValueError(
                f"unknown chat template {template!r}; known: {', '.join(CHAT_TEMPLATES)}"
            )
        if not records:
            raise ValueError(
                "the dataset has no valid records (all were skipped or the file is empty)"
            )
        if max_length <= 0:
            raise ValueError(f"max_length must be positive, got {max_length}")
        self.records = records
        self.processor = processor
        self.template = template
        self.image_root = Path(image_root) if image_root is not None else None
        self.max_length = max_length
        self.strict = strict
        self.max_image_pixels = max_image_pixels
        self.features = features
        self.skip_log = skip_log if skip_log is not None else SkipLog()
        tokenizer = processor.tokenizer
        if image_token_id is None:
            image_token_id = tokenizer.convert_tokens_to_ids(processor.image_token)
        self.image_token_id = int(image_token_id)
        self.num_image_tokens = int(processor.num_image_tokens)
        self.encoder = SegmentEncoder(tokenizer, self.image_token_id, self.num_image_tokens)
        if any(r.has_image for r in records) and self.image_root is None:
            raise ValueError("records have images but no image_root was given (data.image_root)")
        # Cheap estimates for length-grouped sampling; the sign marks the modality (LLaVA's
        # convention: negative = text-only) for the modality-aware sampler.
        self.lengths = [estimate_length(r, self.num_image_tokens) for r in records]
        self.has_image = [r.has_image for r in records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self.records)
        for offset in range(n):
            record = self.records[(index + offset) % n]
            try:
                return self.load(record)
            except BadRecord as err:
                if self.strict:
                    raise UserError(
                        f"{err} (data.strict=true stops at the first bad record)"
                    ) from None
                self.skip_log.add(err.record_id, err.reason, stage="load", index=record.index)
        raise ValueError(
            f"every record in the dataset failed to load: {self.skip_log.counts} "
            f"(first ids: {self.skip_log.first_ids[:5]}); check data.image_root and data.max_length"
        )

    def load(self, record: Record) -> dict[str, Any]:
        """Encode one record; raises BadRecord when it cannot be used."""
        encoded = encode_conversation(record.turns, self.template, self.encoder, record.id)
        input_ids, labels = encoded.input_ids, encoded.labels
        if len(input_ids) > self.max_length:
            image_positions = [i for i, t in enumerate(input_ids) if t == self.image_token_id]
            if image_positions and image_positions[-1] >= self.max_length:
                raise BadRecord(
                    record.id,
                    f"too long: image tokens end at {image_positions[-1] + 1} > max_length {self.max_length}",
                )
            input_ids, labels = input_ids[: self.max_length], labels[: self.max_length]
            if all(label == IGNORE_INDEX for label in labels):
                raise BadRecord(
                    record.id, f"too long: no supervised token within max_length {self.max_length}"
                )
        item = {
            "input_ids": torch.tensor(input_ids, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
            "pixel_values": None,
        }
        if record.has_image and self.features is not None:
            if record.image not in self.features:
                raise BadRecord(record.id, f"image {record.image} is not in {self.features.path}")
            item["vision_features"] = self.features[record.image]
        elif record.has_image:
            item["pixel_values"] = self.load_image(record)
        return item

    def load_image(self, record: Record) -> torch.Tensor:
        from decovlm.errors import MissingFileError
        from decovlm.utils.images import ImageError, TooManyPixels, load_image

        path = self.image_root / record.image
        try:
            img = load_image(path, max_pixels=self.max_image_pixels)
        except MissingFileError:
            raise BadRecord(record.id, f"missing image: {path}") from None
        except TooManyPixels as err:
            raise BadRecord(record.id, f"image too large: {err}") from None
        except ImageError as err:
            raise BadRecord(record.id, f"corrupt image: {err}") from None
        pixels = self.processor.preprocess_images([img])
        return pixels[0]
