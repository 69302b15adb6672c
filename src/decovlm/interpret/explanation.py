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
  and `word_q2p_mass` (W,): its mean over the visual tokens, weighted by the word's Text-to-Query;
  `word_positive_map` / `word_absolute_map` (W, h, w): the word's relevance per patch after /
  before the positive part was taken (gradient methods only; their ratio is the *kept share*);
- `unreliable[w]` / `unreliable_reason[w]`: the word's map is not evidence of where the model
  looked, and why (`decovlm.interpret.reliability`: structural checks, not a tolerance on the
  mass; GAE on a saturated Q-Former cross-attention is the case they catch). `vanished` is the
  old name of `unreliable`, kept for readers of issue-26 outputs;
- `alternatives`: other Query-to-Patch methods composed with the same Text-to-Query
  ("attention" rollout, "grad-x-input"), each a `MethodMaps`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from decovlm.interpret.reliability import share_of, signed_maps
from decovlm.interpret.words import Word, merge_words

RELIABILITY_NOTE = (
    "unreliable: a gradient method's positive part keeps < 1/2 of the signed relevance on the "
    "patch its gradient-free reference (attention rollout, or the fixed mapping) peaks on, or "
    "overall when there is no reference; see decovlm.interpret.reliability"
)


# Issue 26 flagged a map whose Query-to-Patch mass was below 1e-6. The mass is in the units of the
# explained logit's gradient and no absolute tolerance separates misses from hits across tasks
# (issue 31: masses of misses 8e-7..2.3e-4, of hits 1e-5..0.19), so there is no default tolerance
# any more; `vanish_tol` remains an opt-in extra check. The name stays for importers.
VANISHED_MASS: float | None = None


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
    # The word's relevance per patch (W, h, w) after / before the positive part was taken, for
    # methods that take one (gae, grad-x-input; None for fixed mappings and attention rollout),
    # and the row masses before it: see `decovlm.interpret.reliability`.
    word_positive: torch.Tensor | None = None
    word_absolute: torch.Tensor | None = None
    absolute_mass: torch.Tensor | None = None

    @classmethod
    def build(
        cls, name, query_to_patch, mass, text_to_patch, *, text_to_query, words, absolute=None
    ):
        signed = (None, None)
        if absolute is not None:
            signed = signed_maps(
                text_to_query, query_to_patch, mass, absolute, words, text_to_patch.shape[1:]
            )
        return cls(
            name=name,
            query_to_patch=query_to_patch,
            mass=mass,
            text_to_patch=text_to_patch,
            word_text_to_patch=merge_words(text_to_patch, words),
            word_mass=merge_words(token_mass(text_to_query, mass), words),
            word_positive=signed[0],
            word_absolute=signed[1],
            absolute_mass=None if absolute is None else absolute.float().sum(-1),
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
    word_positive_map: torch.Tensor | None = field(repr=False, default=None)
    word_absolute_map: torch.Tensor | None = field(repr=False, default=None)
    query_to_patch_absolute_mass: torch.Tensor | None = field(repr=False, default=None)
    vanish_tol: float | None = None  # optional extra check on the mass (see `reliability`)
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

    def verdicts(self, method: str | None = None) -> list:
        """Per word, `reliability.Verdict` of a method's map (the projector's own by default)."""
        from decovlm.interpret.reliability import explanation_verdicts

        return explanation_verdicts(self, method or self.method)

    @property
    def unreliable(self) -> list[bool]:
        """Per word: True when its map (own method) is not evidence of where the model looked."""
        return self.method_unreliable(self.method)

    @property
    def unreliable_reason(self) -> list[str | None]:
        """Per word: why its map (own method) is flagged, or None."""
        return self.method_unreliable_reason(self.method)

    def method_unreliable(self, method: str) -> list[bool]:
        return [v.unreliable for v in self.verdicts(method)]

    def method_unreliable_reason(self, method: str) -> list[str | None]:
        return [v.reason for v in self.verdicts(method)]

    @property
    def vanished(self) -> list[bool]:
        """The issue-26 name of `unreliable` (same values)."""
        return self.unreliable

    def method_vanished(self, method: str) -> list[bool]:
        return self.method_unreliable(method)

    def method_word_mass(self, method: str) -> torch.Tensor:
        if method == self.method:
            if self.word_q2p_mass is None:  # built without masses: fixed mappings have mass 1
                return torch.ones(len(self.words))
            return self.word_q2p_mass
        return self._alternative(method).word_mass

    def method_signed_maps(self, method: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """((W, h, w) positive, (W, h, w) absolute) relevance per patch of a gradient method's
        words, or None for a method that takes no positive part."""
        if method == self.method:
            pair = (self.word_positive_map, self.word_absolute_map)
        else:
            alt = self._alternative(method)
            pair = (alt.word_positive, alt.word_absolute)
        return None if pair[0] is None else pair

    def method_word_kept(self, method: str) -> torch.Tensor | None:
        """(W,) share of each word's signed relevance that the positive part kept (or None)."""
        signed = self.method_signed_maps(method)
        return None if signed is None else share_of(signed[0].sum((1, 2)), signed[1].sum((1, 2)))

    def method_word_kept_map(self, method: str) -> torch.Tensor | None:
        """(W, h, w) the same per patch (or None)."""
        signed = self.method_signed_maps(method)
        return None if signed is None else share_of(*signed)

    def query_kept(self, word: int | None = None) -> torch.Tensor | None:
        """(M,) kept share of each visual token's Query-to-Patch row (own method), for one word
        (its sub-tokens' rows) or the whole answer; None when the method takes no positive part."""
        absolute = self.query_to_patch_absolute_mass
        if absolute is None or self.query_to_patch_mass is None:
            return None
        mass = self.query_to_patch_mass.float()
        if mass.dim() == 2:  # per token: the word's sub-tokens, or every token
            span = slice(None) if word is None else self._token_span(word)
            mass, absolute = mass[span].sum(0), absolute[span].float().sum(0)
        return share_of(mass, absolute.float())

    def _token_span(self, word: int | str) -> slice:
        w = self.words[self.word_index(word)]
        return slice(w.start, w.end)

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
        if self.word_positive_map is not None:
            out["query_to_patch_absolute_mass"] = self.query_to_patch_absolute_mass
            out["word_positive_map"] = self.word_positive_map
            out["word_absolute_map"] = self.word_absolute_map
        for name, alt in self.alternatives.items():
            key = name.replace("-", "_")
            out[f"{key}__query_to_patch"] = alt.query_to_patch
            out[f"{key}__query_to_patch_mass"] = alt.mass
            out[f"{key}__word_text_to_patch"] = alt.word_text_to_patch
            out[f"{key}__word_q2p_mass"] = alt.word_mass
            if alt.word_positive is not None:
                out[f"{key}__query_to_patch_absolute_mass"] = alt.absolute_mass
                out[f"{key}__word_positive_map"] = alt.word_positive
                out[f"{key}__word_absolute_map"] = alt.word_absolute
        arrays = {k: v.detach().float().cpu().numpy() for k, v in out.items()}
        arrays["token_ids"] = np.asarray(self.token_ids, dtype=np.int64)
        return arrays

    def summary(self) -> dict:
        """JSON-ready description: text, tokens, words (with their token ranges) and map shapes."""
        verdicts = {m: self.verdicts(m) for m in self.methods}
        kept = {}
        for m in self.methods:
            values = self.method_word_kept(m)
            kept[m] = [None] * len(self.words) if values is None else [float(v) for v in values]
        unreliable = [w.text for w, v in zip(self.words, verdicts[self.method]) if v.unreliable]
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
                    "kept_share": {m: kept[m][i] for m in self.methods},
                    "unreliable": {m: verdicts[m][i].unreliable for m in self.methods},
                    "unreliable_reason": {m: verdicts[m][i].reason for m in self.methods},
                    "vanished": {m: verdicts[m][i].unreliable for m in self.methods},  # old name
                }
                for i, w in enumerate(self.words)
            ],
            "query_to_patch_methods": self.methods,
            "reliability": RELIABILITY_NOTE,
            "vanish_tol": self.vanish_tol,
            "unreliable_words": unreliable,
            "vanished_words": unreliable,  # the issue-26 name
            "projector": self.projector,
            "query_to_patch_method": self.method,
            "patch_grid": list(self.patch_grid),
            "query_grid": list(self.query_grid) if self.query_grid else None,
            "llm_layers": list(self.layers),
            "word_merge": "mean over sub-tokens",
            "shapes": {k: list(v.shape) for k, v in self.arrays().items()},
        }
