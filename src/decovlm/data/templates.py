"""Conversations -> token ids and labels, built segment by segment and then verified.

A conversation is rendered with a chat template (`decovlm.chat_template`: `plain`,
`vicuna_v1`, the tokenizer's own, or Jinja) and cut into segments, each marked supervised
(assistant) or not. Each segment is tokenized on its own with the processor's `TextEncoder` and the
ids are concatenated, so the labels are the ids of the supervised segments by construction and can
never drift from the text (LLaVA instead tokenizes the whole string and counts lengths per round;
when the counts disagree it masks the whole sample with a warning and the loss silently goes to
0), and the prompt part of a sample has exactly the ids the processor gives that prompt at
inference. `<image>` in a segment becomes exactly M copies of the image token id.

Assistant spans are found by rendering prefixes of the conversation (`split_turns`, shared with
the processor's `apply_chat_template(tokenize=True)`): each assistant turn's content plus the
template's end-of-turn marker (e.g. `</s>`) is supervised, so the model learns to stop. A template
whose renderings are not prefix-consistent (it rewrites history) is rejected with a clear error. `plain` (LLaVA's align stage) keeps `<image>` and the caption + eos only.

After encoding, `verify_labels` decodes each supervised span and compares it with the assistant
text; a mismatch raises `BadRecord` naming the record id.
"""

from __future__ import annotations

from dataclasses import dataclass

from decovlm.chat_template import (
    BUILTIN_TEMPLATES,
    TextEncoder,
    resolve_chat_template,
    split_turns,
)
from decovlm.data.records import BadRecord, Turn

IGNORE_INDEX = -100


@dataclass
class Segment:
    text: str
    supervised: bool


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    # (start, end) of each supervised span in input_ids, and the assistant text it must decode to
    spans: list[tuple[int, int]]
    targets: list[str]


def build_segments(template: str, turns: list[Turn], tokenizer) -> list[Segment]:
    """The segments of one conversation under `template` (a name or Jinja)."""
    jinja = resolve_chat_template(template, tokenizer)
    if jinja == BUILTIN_TEMPLATES["plain"] and len(turns) != 2:
        raise BadRecord("?", f"plain template: needs exactly 2 turns, got {len(turns)}")
    messages = [{"role": t.role, "content": t.text} for t in turns]

    def render(msgs: list[dict], gen: bool) -> str:
        return tokenizer.apply_chat_template(
            msgs, chat_template=jinja, tokenize=False, add_generation_prompt=gen
        )

    return [Segment(text, supervised) for text, supervised in split_turns(render, messages)]


class SegmentEncoder(TextEncoder):
    """The processor's `TextEncoder` plus the concatenation of segments into ids and labels."""

    def __init__(self, tokenizer, image_token_id: int, num_image_tokens: int):
        super().__init__(tokenizer, image_token_id, num_image_tokens)
        if tokenizer.eos_token_id is None:
            raise ValueError(
                "the tokenizer has no eos token; set tokenizer.eos_token before training"
            )
        self.eos_id = tokenizer.eos_token_id

    def encode(self, segments: list[Segment], targets: list[str]) -> Encoded:
        input_ids: list[int] = [self.bos_id] if self.bos_id is not None else []
        labels: list[int] = [IGNORE_INDEX] * len(input_ids)
        spans: list[tuple[int, int]] = []
        for seg in segments:
            ids = self.encode_segment(seg.text)
            start = len(input_ids)
            input_ids.extend(ids)
            labels.extend(ids if seg.supervised else [IGNORE_INDEX] * len(ids))
            if seg.supervised:
                spans.append((start, len(input_ids)))
        return Encoded(input_ids, labels, spans, targets)


def _squash(text: str) -> str:
    return "".join(text.split())


def verify_labels(encoded: Encoded, encoder: SegmentEncoder, record_id: str, exact: bool) -> None:
    """Supervised tokens must decode back to the assistant turns (else BadRecord naming the id).

    Texts are compared after decoding (special tokens skipped, whitespace removed) against the
    round-tripped assistant text, so tokenizers that map rare words to <unk> still compare
    equal. `exact=False` (any template but the built-ins) allows trailing end-of-turn text.
    """
    tok = encoder.tokenizer
    if len(encoded.spans) != len(encoded.targets):
        raise BadRecord(
            record_id,
            f"tokenization mismatch: {len(encoded.spans)} supervised spans for "
            f"{len(encoded.targets)} assistant turns",
        )
    supervised = [i for i, label in enumerate(encoded.labels) if label != IGNORE_INDEX]
    in_spans = [i for start, end in encoded.spans for i in range(start, end)]
    if supervised != in_spans:
        raise BadRecord(record_id, "tokenization mismatch: labels outside the assistant spans")
    for n, ((start, end), target) in enumerate(zip(encoded.spans, encoded.targets)):
        got = _squash(tok.decode(encoded.input_ids[start:end], skip_special_tokens=True))
        want = _squash(tok.decode(encoder.encode_text(target.strip()), skip_special_tokens=True))
        ok = got == want if exact else got.startswith(want)
        if not ok or (want and not got):
            raise BadRecord(
                record_id,
                f"tokenization mismatch: assistant turn {n} decodes to {got[:60]!r}, "
                f"expected {want[:60]!r}",
            )


def encode_conversation(
    turns: list[Turn], template: str, encoder: SegmentEncoder, record_id: str = "?"
) -> Encoded:
    """Token ids and labels for one conversation, verified."""
    try:
        segments = build_segments(template, turns, encoder.tokenizer)
    except BadRecord as err:
        raise BadRecord(record_id, err.reason) from None
    targets = [t.text for t in turns if t.role == "assistant"]
    encoded = encoder.encode(segments, targets)
    exact = resolve_chat_template(template, encoder.tokenizer) in BUILTIN_TEMPLATES.values()
    verify_labels(encoded, encoder, record_id, exact=exact)
    return encoded
