"""Chat templates -> token ids and labels, built segment by segment and then verified.

A conversation becomes a list of text segments, each marked supervised (assistant) or not. Each
segment is tokenized on its own and the ids are concatenated, so the labels are the ids of the
supervised segments by construction and can never drift from the text (LLaVA instead tokenizes
the whole string and counts lengths per round; when the counts disagree it masks the whole sample
with a warning and the loss silently goes to 0). `<image>` in a segment becomes exactly M copies
of the image token id, inserted at the id level.

Templates:
- `plain` (align stage, LLaVA's plain template): `<image>` then the caption + eos; the human
  instruction is dropped and only the caption + eos is supervised.
- `vicuna_v1` (LLaVA-1.5 / Vicuna): `SYSTEM USER: q ASSISTANT: a</s>USER: q2 ASSISTANT: a2</s>`;
  each ` a` + eos is supervised.
- `tokenizer`: the tokenizer's own chat template (Qwen, Llama-3, Phi-3...). Assistant spans are
  found by rendering prefixes of the conversation: the text of the conversation up to turn i with
  the generation prompt and the text up to and including turn i must both be prefixes of the full
  rendering; the characters between them are assistant turn i (its content plus the template's
  end-of-turn marker, which is supervised so the model learns to stop). A template whose
  renderings are not prefix-consistent (it rewrites history) is rejected with a clear error.

After encoding, `verify_labels` decodes each supervised span and compares it with the assistant
text; a mismatch raises `BadRecord` naming the record id.
"""

from __future__ import annotations

from dataclasses import dataclass

from decovlm.data.records import IMAGE_TAG, BadRecord, Turn

IGNORE_INDEX = -100
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
TEMPLATES = ("plain", "vicuna_v1", "tokenizer")


@dataclass
class Segment:
    text: str
    supervised: bool
    add_eos: bool = False  # append the eos id (supervised with the segment)


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    # (start, end) of each supervised span in input_ids, and the assistant text it must decode to
    spans: list[tuple[int, int]]
    targets: list[str]


def build_segments(template: str, turns: list[Turn], tokenizer=None) -> list[Segment]:
    """The segments of one conversation under `template`."""
    if template == "plain":
        if len(turns) != 2:
            raise BadRecord("?", f"plain template: needs exactly 2 turns, got {len(turns)}")
        prefix = IMAGE_TAG if IMAGE_TAG in turns[0].text else ""
        return [Segment(prefix, False), Segment(turns[1].text.strip(), True, add_eos=True)]
    if template == "vicuna_v1":
        segments: list[Segment] = []
        pending = VICUNA_SYSTEM + " "
        for turn in turns:
            if turn.role == "user":
                pending += f"USER: {turn.text} ASSISTANT:"
            else:
                segments.append(Segment(pending, False))
                segments.append(Segment(" " + turn.text.strip(), True, add_eos=True))
                pending = ""
        return segments
    if template == "tokenizer":
        return _segments_from_chat_template(turns, tokenizer)
    raise ValueError(f"unknown chat template {template!r}; known: {', '.join(TEMPLATES)}")


def _segments_from_chat_template(turns: list[Turn], tokenizer) -> list[Segment]:
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "chat template 'tokenizer' needs a tokenizer with a chat_template; "
            "use 'vicuna_v1' or 'plain' for tokenizers without one"
        )
    messages = [{"role": t.role, "content": t.text} for t in turns]

    def render(msgs: list[dict], gen: bool) -> str:
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)

    full = render(messages, False)
    segments: list[Segment] = []
    pos = 0
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        before = render(messages[:i], True)
        upto = render(messages[: i + 1], False)
        if not (full.startswith(before) and full.startswith(upto) and len(before) < len(upto)):
            raise ValueError(
                "the tokenizer's chat template is not prefix-consistent (rendering a conversation "
                "prefix is not a prefix of the full rendering), so assistant spans cannot be found; "
                "use chat_template 'vicuna_v1' or a template without history rewriting"
            )
        if len(before) < pos:
            raise ValueError("the tokenizer's chat template renders overlapping assistant spans")
        segments.append(Segment(full[pos : len(before)], False))
        segments.append(Segment(full[len(before) : len(upto)], True))
        pos = len(upto)
    if pos < len(full):
        segments.append(Segment(full[pos:], False))
    return segments


class SegmentEncoder:
    """Tokenizes segments with the quirks of one tokenizer worked out once."""

    def __init__(self, tokenizer, image_token_id: int, num_image_tokens: int):
        self.tokenizer = tokenizer
        self.image_token_id = image_token_id
        self.num_image_tokens = num_image_tokens
        self.eos_id = tokenizer.eos_token_id
        if self.eos_id is None:
            raise ValueError(
                "the tokenizer has no eos token; set tokenizer.eos_token before training"
            )
        probe = tokenizer("x").input_ids
        # Prepend BOS only where the tokenizer itself would (Llama yes, Qwen no).
        self.bos_id = (
            probe[0]
            if tokenizer.bos_token_id is not None and probe[:1] == [tokenizer.bos_token_id]
            else None
        )
        # SentencePiece tokenizers prepend a word-start marker to every encode call, which
        # already stands for a leading space; encoding " a" would give two of them.
        first = tokenizer.convert_ids_to_tokens(self._raw("a")[:1])
        self.prefix_space = bool(first) and str(first[0]).startswith("\u2581")

    def _raw(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids if text else []

    def encode_text(self, text: str) -> list[int]:
        """Token ids of plain text (no image tags)."""
        if self.prefix_space and text.startswith(" "):
            text = text[1:]
        return self._raw(text)

    def encode_segment(self, text: str) -> list[int]:
        ids: list[int] = []
        for n, part in enumerate(text.split(IMAGE_TAG)):
            if n:
                ids.extend([self.image_token_id] * self.num_image_tokens)
            ids.extend(self.encode_text(part))
        return ids

    def encode(self, segments: list[Segment], targets: list[str]) -> Encoded:
        input_ids: list[int] = [self.bos_id] if self.bos_id is not None else []
        labels: list[int] = [IGNORE_INDEX] * len(input_ids)
        spans: list[tuple[int, int]] = []
        for seg in segments:
            ids = self.encode_segment(seg.text)
            if seg.add_eos:
                ids.append(self.eos_id)
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
    equal. `exact=False` (the tokenizer's own template) allows trailing end-of-turn text.
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
    verify_labels(encoded, encoder, record_id, exact=template != "tokenizer")
    return encoded
