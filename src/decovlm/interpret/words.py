"""Group answer sub-tokens into words, tokenizer-agnostically, and merge their maps.

Each token's character span in the decoded answer is found by decoding growing prefixes of the
answer's ids (works for SentencePiece "▁", byte-level BPE "Ġ" and word-level tokenizers alike).
Words are runs of letters/digits (with inner ' or -) or single punctuation marks; a word owns
every token whose span overlaps it. Sub-token maps are merged by their **mean** (as LVLM-Interpret
does), so a word split into many pieces is not louder than a one-token word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

WORD_RE = re.compile(r"\w+(?:['\-]\w+)*|[^\w\s]")


@dataclass(frozen=True)
class Word:
    text: str
    start: int  # first token index (inclusive)
    end: int  # last token index (exclusive)


def token_spans(tokenizer, ids: list[int]) -> tuple[str, list[tuple[int, int]]]:
    """The decoded answer text and each token's (start, end) character span in it."""
    spans = []
    prev = ""
    for k in range(1, len(ids) + 1):
        text = tokenizer.decode(ids[:k], skip_special_tokens=True)
        # Decoding a longer prefix can rewrite the tail (byte-level pieces of one character); the
        # token's span is what the text gained past the longest common prefix.
        common = 0
        while common < min(len(prev), len(text)) and prev[common] == text[common]:
            common += 1
        spans.append((common, len(text)))
        prev = text
    return prev, spans


def group_words(text: str, spans: list[tuple[int, int]]) -> list[Word]:
    """Words of `text` with the token range that covers each (tokens of only spaces belong to none)."""
    words = []
    for match in WORD_RE.finditer(text):
        a, b = match.span()
        owners = [i for i, (s, e) in enumerate(spans) if s < b and e > a]
        if owners:
            words.append(Word(match.group(0), owners[0], owners[-1] + 1))
    return words


def merge_words(maps: torch.Tensor, words: list[Word]) -> torch.Tensor:
    """(T, ...) per-token maps -> (W, ...) per-word maps, the mean of each word's sub-tokens."""
    if not words:
        return maps.new_zeros((0, *maps.shape[1:]))
    return torch.stack([maps[w.start : w.end].mean(dim=0) for w in words])
