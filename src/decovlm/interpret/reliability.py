"""Is a word's Query-to-Patch map evidence? A structural check per method, on that method's own scale.

A gradient-based Query-to-Patch method (GAE through the Q-Former / resampler, gradient x input)
keeps only the **positive part** of a signed quantity (grad x attention, grad x input) and then
normalises each row. Where the signed relevance of a patch is net negative, the clamp leaves that
patch (almost) nothing, and the normalised map is drawn from whatever survived elsewhere: a
confident picture of leftovers. That is how GAE loses a saturated cross-attention (p ~ 1 on the
patch the answer uses, a negative gradient there: (grad x A)^+ is 0 exactly where the attention is).

The *kept share* of a patch is the word's positive relevance on it over its absolute (signed)
relevance, both composed with the word's Text-to-Query: 1 when nothing was clamped, 0 when
everything was. It has no scale (the mass itself is in units of the explained logit's gradient and
differs by orders of magnitude between models, methods and words), and 1/2 is not a tuned number:
below it the signed relevance is net negative.

The checks, in this order:
- **negative-at-peak** (gae, grad-x-input, when a gradient-free *reference* map of the same word is
  there: the attention rollout for projectors that record attention - `explain` always computes it
  beside GAE - else the projector's exact fixed mapping): the kept share on the patches where the
  reference peaks (ties count: a pooled cell) is below 1/2 **and** the method's map does not peak
  there. The method then points elsewhere because its clamp emptied the patch the word's visual
  tokens are made from. A map that still peaks there is spared, whatever it lost elsewhere.
- **net-negative** (gae, grad-x-input, without a reference: C-/D-Abstractor, LDP): the kept share
  over all patches is below 1/2, i.e. the map shows the minority left after the clamp.
- **below-tol** (optional, any method): the word's Query-to-Patch mass is below a tolerance the
  user set (`vanish_tol`, the issue-26 rule kept as an opt-in extra).

The reference is not trusted blindly: it is only asked *where* to look, and the flag says what the
checked method does there. Fixed mappings and the attention rollout take no positive part and are
never flagged by the first two checks. `Explanation.unreliable` / `unreliable_reason` read these
verdicts; docs/relevance_sanity.md measures them on tasks they were not designed on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Below this kept share the clamp removed more than it kept (see the module docstring).
NET_NEGATIVE = 0.5
GRADIENT_METHODS = ("gae", "grad-x-input")
REFERENCES = ("attention", "fixed")  # gradient-free maps a gradient method is checked against


@dataclass(frozen=True)
class Verdict:
    """One word's verdict for one method: `code` and `reason` are None when it is not flagged."""

    code: str | None = None  # "negative-at-peak", "net-negative", "below-tol"
    reason: str | None = None

    @property
    def unreliable(self) -> bool:
        return self.code is not None


def _signed_name(method: str) -> str:
    return "gradient x attention" if method == "gae" else "gradient x input"


def signed_maps(text_to_query, query_to_patch, mass, absolute, words, grid):
    """((W, h, w) positive, (W, h, w) absolute) relevance per patch of one method, per word.

    `query_to_patch` is the normalised (M, N) or (T, M, N) matrix and `mass` its row sums before
    normalising (so their product is the positive raw relevance), `absolute` the raw relevance
    before the positive part was taken (same shape), `text_to_query` (T, M) the weights (each
    token's normalised to sum 1, so a word's sub-tokens count alike).
    """
    from decovlm.interpret.words import merge_words

    positive = query_to_patch.float() * mass.float().unsqueeze(-1)
    weights = text_to_query.float().clamp(min=0)
    weights = weights / weights.sum(-1, keepdim=True).clamp(min=1e-30)

    def compose(raw):  # (T, N): the tokens' relevance per patch, before any normalising
        if raw.dim() == 3:
            return torch.einsum("tm,tmn->tn", weights, raw.float())
        return weights @ raw.float()

    shape = (len(words), *grid)
    pos = merge_words(compose(positive), words).reshape(shape)
    return pos, merge_words(compose(absolute), words).reshape(shape)


def share_of(positive: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """positive / total in [0, 1]; 1 where there is nothing at all (nothing was clamped)."""
    safe = torch.where(total > 0, total, torch.ones_like(total))
    return torch.where(total > 0, positive / safe, torch.ones_like(total)).clamp(0.0, 1.0)


def peak_patches(reference_map: torch.Tensor) -> torch.Tensor:
    """Boolean (h, w) mask of the patches where a map is maximal (ties count: a pooled cell)."""
    top = float(reference_map.max())
    return reference_map >= top - 1e-6 * abs(top)


def word_verdict(
    method: str,
    positive: torch.Tensor | None,
    absolute: torch.Tensor | None,
    word_map: torch.Tensor | None = None,
    reference_map: torch.Tensor | None = None,
    reference: str | None = None,
    mass: float | None = None,
    vanish_tol: float | None = None,
) -> Verdict:
    """The verdict for one word's map (see the module docstring for the checks).

    `positive` / `absolute` (h, w) are the word's relevance per patch after / before the positive
    part (None: the method takes none), `word_map` the Text-to-Patch map drawn for it (an empty
    map peaks nowhere), `reference_map` the reference method's Text-to-Patch of the same word
    (None: no reference) and `reference` its name, `mass` the Query-to-Patch mass and
    `vanish_tol` the optional extra tolerance on it.
    """
    if method in GRADIENT_METHODS and positive is not None:
        if reference_map is not None and float(reference_map.max()) > 0:
            peak = peak_patches(reference_map)
            share = float(share_of(positive[peak].sum(), absolute[peak].sum()))
            # Flag a map that points elsewhere *because* the clamp emptied the reference's peak;
            # a map that still peaks there shows it, whatever it lost.
            shown = word_map is not None and float(word_map.max()) > 0
            if share < NET_NEGATIVE and not (shown and (peak_patches(word_map) & peak).any()):
                return Verdict(
                    "negative-at-peak",
                    f"{method} points away from {_where(peak)}, where the {reference} map peaks: "
                    f"its positive part keeps {share:.0%} of the signed {_signed_name(method)} there",
                )
        else:
            kept = float(share_of(positive.sum(), absolute.sum()))
            if kept < NET_NEGATIVE:
                return Verdict(
                    "net-negative",
                    f"{method}: the positive part keeps {kept:.0%} of the signed "
                    f"{_signed_name(method)}; the map shows the minority left after the clamp",
                )
    if vanish_tol is not None and mass is not None and mass < vanish_tol:
        return Verdict(
            "below-tol",
            f"{method}: Query-to-Patch mass {mass:.1e} below --vanish-tol {vanish_tol:g}",
        )
    return Verdict()


def _where(peak: torch.Tensor) -> str:
    cells = peak.nonzero().tolist()
    if len(cells) == 1:
        return f"patch (row {cells[0][0]}, col {cells[0][1]})"
    return f"the {len(cells)} patches from (row {cells[0][0]}, col {cells[0][1]})"


def reference_for(explanation, method: str) -> str | None:
    """The gradient-free method `method` is checked against in this explanation, or None."""
    if method not in GRADIENT_METHODS:
        return None
    return next((r for r in REFERENCES if r in explanation.methods), None)


def explanation_verdicts(explanation, method: str) -> list[Verdict]:
    """Per word of `explanation`, the verdict on `method`'s map."""
    signed = explanation.method_signed_maps(method)
    mass = explanation.method_word_mass(method)
    reference = reference_for(explanation, method)
    out = []
    for i in range(len(explanation.words)):
        out.append(
            word_verdict(
                method,
                None if signed is None else signed[0][i],
                None if signed is None else signed[1][i],
                explanation.word_map(i, method),
                explanation.word_map(i, reference) if reference else None,
                reference,
                float(mass[i]),
                explanation.vanish_tol,
            )
        )
    return out
