"""`Explanation`: the three relevance maps of one answer, per token and per word, and their export.

Shapes (T answer tokens, W words, M visual tokens the LLM sees, N = h * w ViT patches):
- `text_to_query` (T, M): the LLM's relevance of each answer token over its M visual tokens;
- `query_to_patch` (M, N) when it is one matrix for the answer (linear/MLP: I; pooling: the
  window matrix; the gradient x input fallback of other learned projectors), or (T, M, N) when it
  depends on the explained token (Q-Former / resampler GAE); rows sum to 1 (or 0 for a query that
  nothing flows through);
- `text_to_patch` (T, h, w) = text_to_query @ query_to_patch on the patch grid;
- `word_*`: the same per word, the mean over the word's sub-tokens (see `decovlm.interpret.words`);
- `query_to_patch_mass` (M,) or (T, M): each Query-to-Patch row's sum *before* it was normalised,
  and `word_q2p_mass` (W,): its mean over the visual tokens, weighted by the word's Text-to-Query.
  A word whose mass is below `vanish_tol` (default `VANISHED_MASS`) has a map whose relevance
  vanished in the projector: `vanished[w]` is True and its normalised map is not evidence of
  where the model looked (GAE on a saturated Q-Former cross-attention does this);
- `alternatives`: other Query-to-Patch methods composed with the same Text-to-Query
  ("attention" rollout, "grad-x-input"), each a `MethodMaps`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from decovlm.interpret.words import Word, merge_words

# Query-to-Patch mass below which a word's map counts as vanished. The mass is in the units of
# the explained logit's gradient x attention. On the single-patch sanity task (`sanity`, the tiny
# Q-Former after 300 steps) GAE's 20 maps split cleanly: the 6 that missed the patch had masses of
# 3e-11, the 14 that hit it 1.4e-3 to 3.6e-3; 1e-6 sits between with room on both sides. Fixed
# mappings (linear, pooling) have mass 1 by construction; raw attention rollout >= 1.
VANISHED_MASS = 1e-6


def token_mass(text_to_query: torch.Tensor, mass: torch.Tensor) -> torch.Tensor:
    """(T,) Query-to-Patch mass per answer token: the row masses weighted by its Text-to-Query.

    `mass` is (M,) (one matrix for the answer) or (T, M). A token with no Text-to-Query gets 0.
    """
    weights = text_to_query.float().clamp(min=0)
    total = weights.sum(-1)
    weighted = (weights * mass.float().expand_as(weights)).sum(-1)
    return torch.where(total > 0, weighted / torch.where(total > 0, total, 1.0), 0.0)


@dataclass
class MethodMaps:
    """One Query-to-Patch method's maps for an answer (normalised Q2P, its mass, Text-to-Patch)."""

    name: str
    query_to_patch: torch.Tensor  # (M, N) or (T, M, N), rows sum to 1 (or 0)
    mass: torch.Tensor  # (M,) or (T, M): row sums before normalising
    text_to_patch: torch.Tensor  # (T, h, w)
    word_text_to_patch: torch.Tensor  # (W, h, w)
    word_mass: torch.Tensor  # (W,)

    @classmethod
    def build(cls, name, query_to_patch, mass, text_to_patch, *, text_to_query, words):
        return cls(
            name=name,
            query_to_patch=query_to_patch,
            mass=mass,
            text_to_patch=text_to_patch,
            word_text_to_patch=merge_words(text_to_patch, words),
            word_mass=merge_words(token_mass(text_to_query, mass), words),
        )


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
    query_to_patch_mass: torch.Tensor | None = field(repr=False, default=None)
    word_q2p_mass: torch.Tensor | None = field(repr=False, default=None)
    vanish_tol: float = VANISHED_MASS
    alternatives: dict[str, MethodMaps] = field(repr=False, default_factory=dict)

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

    @property
    def methods(self) -> list[str]:
        """The Query-to-Patch methods of this explanation, its own first."""
        return [self.method, *self.alternatives]

    @property
    def vanished(self) -> list[bool]:
        """Per word: True when its Query-to-Patch mass is below `vanish_tol`."""
        return self.method_vanished(self.method)

    def method_vanished(self, method: str) -> list[bool]:
        mass = self.method_word_mass(method)
        return [bool(m < self.vanish_tol) for m in mass.tolist()]

    def method_word_mass(self, method: str) -> torch.Tensor:
        if method == self.method:
            if self.word_q2p_mass is None:  # built without masses: fixed mappings have mass 1
                return torch.ones(len(self.words))
            return self.word_q2p_mass
        return self._alternative(method).word_mass

    def _alternative(self, method: str) -> MethodMaps:
        if method not in self.alternatives:
            raise ValueError(
                f"no Query-to-Patch method {method!r} in this explanation; it has {self.methods}"
            )
        return self.alternatives[method]

    def word_map(self, word: str | int, method: str | None = None) -> torch.Tensor:
        """The Text-to-Patch map (h, w) of one word (with the projector's own method by default)."""
        index = self.word_index(word)
        if method is None or method == self.method:
            return self.word_text_to_patch[index]
        return self._alternative(method).word_text_to_patch[index]

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
        if self.query_to_patch_mass is not None:
            out["query_to_patch_mass"] = self.query_to_patch_mass
            out["word_q2p_mass"] = self.word_q2p_mass
        for name, alt in self.alternatives.items():
            key = name.replace("-", "_")
            out[f"{key}__query_to_patch"] = alt.query_to_patch
            out[f"{key}__query_to_patch_mass"] = alt.mass
            out[f"{key}__word_text_to_patch"] = alt.word_text_to_patch
            out[f"{key}__word_q2p_mass"] = alt.word_mass
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
            "words": [
                {
                    "text": w.text,
                    "tokens": [w.start, w.end],
                    "q2p_mass": {m: float(self.method_word_mass(m)[i]) for m in self.methods},
                    "vanished": {m: self.method_vanished(m)[i] for m in self.methods},
                }
                for i, w in enumerate(self.words)
            ],
            "query_to_patch_methods": self.methods,
            "vanish_tol": self.vanish_tol,
            "vanished_words": [w.text for w, v in zip(self.words, self.vanished) if v],
            "projector": self.projector,
            "query_to_patch_method": self.method,
            "patch_grid": list(self.patch_grid),
            "query_grid": list(self.query_grid) if self.query_grid else None,
            "llm_layers": list(self.layers),
            "word_merge": "mean over sub-tokens",
            "shapes": {k: list(v.shape) for k, v in self.arrays().items()},
        }
