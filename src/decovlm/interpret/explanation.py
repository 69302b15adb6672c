"""`Explanation`: the three relevance maps of one answer, per token and per word, and their export.

Shapes (T answer tokens, W words, M visual tokens the LLM sees, N = h * w ViT patches):
- `text_to_query` (T, M): the LLM's relevance of each answer token over its M visual tokens;
- `query_to_patch` (M, N) when it is one matrix for the answer (linear/MLP: I; pooling: the
  window matrix; the gradient x input fallback of other learned projectors), or (T, M, N) when it
  depends on the explained token (Q-Former / resampler GAE); rows sum to 1 (or 0 for a query that
  nothing flows through);
- `text_to_patch` (T, h, w) = text_to_query @ query_to_patch on the patch grid;
- `word_*`: the same per word, the mean over the word's sub-tokens (see `decovlm.interpret.words`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from decovlm.interpret.words import Word


@dataclass
class Explanation:
    prompt: str
    answer: str
    tokens: list[str]
    token_ids: list[int]
    words: list[Word]
    projector: str
    method: str  # how Query-to-Patch was obtained: "fixed", "gae" or "grad-x-input"
    patch_grid: tuple[int, int]
    query_grid: tuple[int, int] | None  # (h', w') when the visual tokens have a 2D layout
    layers: tuple[int, int]  # LLM layers [start, end) the relevance was propagated through
    text_to_query: torch.Tensor
    query_to_patch: torch.Tensor
    text_to_patch: torch.Tensor
    word_text_to_query: torch.Tensor = field(repr=False, default=None)
    word_query_to_patch: torch.Tensor = field(repr=False, default=None)
    word_text_to_patch: torch.Tensor = field(repr=False, default=None)

    @property
    def word_texts(self) -> list[str]:
        return [w.text for w in self.words]

    @property
    def per_token_mapping(self) -> bool:
        """True when Query-to-Patch depends on the explained token (T, M, N)."""
        return self.query_to_patch.dim() == 3

    def word_index(self, word: str | int) -> int:
        """Index of a word (first case-insensitive match, or an int index) in the answer's words."""
        if isinstance(word, int):
            if not -len(self.words) <= word < len(self.words):
                raise ValueError(
                    f"word index {word} out of range; the answer has {len(self.words)} words"
                )
            return word % len(self.words)
        wanted = word.strip().lower()
        for i, w in enumerate(self.words):
            if w.text.lower() == wanted:
                return i
        raise ValueError(
            f"word {word!r} is not in the answer {self.answer!r}; its words are {self.word_texts}"
        )

    def word_map(self, word: str | int) -> torch.Tensor:
        """The Text-to-Patch map (h, w) of one word."""
        return self.word_text_to_patch[self.word_index(word)]

    def word_query_map(self, word: str | int) -> torch.Tensor:
        """The Query-to-Patch matrix (M, N) used for one word."""
        if not self.per_token_mapping:
            return self.query_to_patch
        return self.word_query_to_patch[self.word_index(word)]

    def mean_query_to_patch(self) -> torch.Tensor:
        """(M, N) Query-to-Patch, averaged over the answer tokens when it is per token."""
        return self.query_to_patch.mean(dim=0) if self.per_token_mapping else self.query_to_patch

    def arrays(self) -> dict[str, np.ndarray]:
        """Every map as a numpy array (what `decovlm explain` saves as .npz)."""
        out = {
            "text_to_query": self.text_to_query,
            "query_to_patch": self.query_to_patch,
            "text_to_patch": self.text_to_patch,
            "word_text_to_query": self.word_text_to_query,
            "word_text_to_patch": self.word_text_to_patch,
        }
        if self.per_token_mapping:
            out["word_query_to_patch"] = self.word_query_to_patch
        arrays = {k: v.detach().float().cpu().numpy() for k, v in out.items()}
        arrays["token_ids"] = np.asarray(self.token_ids, dtype=np.int64)
        return arrays

    def summary(self) -> dict:
        """JSON-ready description: text, tokens, words (with their token ranges) and map shapes."""
        return {
            "prompt": self.prompt,
            "answer": self.answer,
            "tokens": self.tokens,
            "token_ids": self.token_ids,
            "words": [{"text": w.text, "tokens": [w.start, w.end]} for w in self.words],
            "projector": self.projector,
            "query_to_patch_method": self.method,
            "patch_grid": list(self.patch_grid),
            "query_grid": list(self.query_grid) if self.query_grid else None,
            "llm_layers": list(self.layers),
            "word_merge": "mean over sub-tokens",
            "shapes": {k: list(v.shape) for k, v in self.arrays().items()},
        }
