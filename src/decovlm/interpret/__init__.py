"""Relevance maps (R-GAE): how each generated word relates back to the projector's tokens and the ViT patches.

    from decovlm.interpret import explain
    expl = explain(model, processor, image, "What colour is the circle?")
    expl.word_map("red")          # (h, w) Text-to-Patch of a word
    expl.text_to_query            # (T, M)  answer tokens -> visual tokens the LLM sees
    expl.query_to_patch           # (M, N) or (T, M, N)  visual tokens -> ViT patches
    expl.unreliable, expl.unreliable_reason   # per word: is its map evidence, and if not why
    expl.word_map("red", "attention")   # raw attention rollout (always beside a Q-Former's GAE)

Modules: `gae` (the update rules), `query_to_patch` (per projector), `explain` (the teacher-forced
pass), `explanation` (the result), `reliability` (whether a word's map is evidence), `words`
(sub-token -> word), `scores` and `cases` (numbers against object masks), `sanity` and
`sanity_report` (the single-patch sanity benchmark), `draw` (pictures), `cli` / `cli_eval` (the
`explain` / `explain-eval` commands).
"""

from decovlm.interpret.cases import load_cases, score_cases
from decovlm.interpret.explain import explain
from decovlm.interpret.explanation import Explanation

__all__ = ["Explanation", "explain", "load_cases", "score_cases"]
