"""The demo report's relevance section: per projector, each Query-to-Patch method's localization
score and the share of its maps flagged unreliable, and whose a miss is (the model's or GAE's).

`relevance_section(report["relevance"])` returns Markdown; `report["relevance"]` maps a projector
spec to what `decovlm.interpret.score_cases` returns (its "methods" hold one summary per method:
the projector's own - "fixed" or "gae" - and "attention" rollout / "grad-x-input" where they
apply). Results written before the methods existed (only "summary") still give a row.
"""

from __future__ import annotations

import math

# Pointing-game gap (share of cases) between two methods that counts as a difference: one case of
# the default 24 is 0.04, so a smaller gap is noise.
METHOD_GAP = 0.15


def _fmt(value, digits: int = 3, percent: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.0%}" if percent else f"{value:.{digits}f}"


def _methods(rel: dict) -> dict[str, dict]:
    own = rel.get("query_to_patch") or "-"
    return rel.get("methods") or {own: rel.get("summary", {})}


def _unreliable(summary: dict):
    # "vanished_share" is the issue-26 name, in results written before the flag was renamed
    return summary.get("unreliable_share", summary.get("vanished_share"))


def verdict(spec: str, rel: dict) -> str | None:
    """One sentence when the projector's own method and a model-agnostic one disagree, or all miss."""
    methods = _methods(rel)
    own = rel.get("query_to_patch")
    if own not in methods or len(methods) < 2:
        return None
    mine = methods[own].get("pointing")
    others = {k: v.get("pointing") for k, v in methods.items() if k != own}
    others = {k: v for k, v in others.items() if v is not None and not math.isnan(v)}
    if mine is None or math.isnan(mine) or not others:
        return None
    best, score = max(others.items(), key=lambda kv: kv[1])
    flagged = _unreliable(methods[own])
    share = f"; {_fmt(flagged, percent=True)} of its maps are flagged unreliable" if flagged else ""
    if score - mine > METHOD_GAP:
        return (
            f"{spec}: {best} points at the object in {score:.0%} of cases but {own} in only "
            f"{mine:.0%}{share} - the miss is the explanation method's, not the model's."
        )
    if max(score, mine) < METHOD_GAP:
        return (
            f"{spec}: every method misses the object ({own} {mine:.0%}, {best} {score:.0%}) - "
            "the model does not look at it."
        )
    return None


def relevance_section(relevance: dict[str, dict]) -> str:
    """Markdown: a table of (projector, method) scores and the verdicts; '' without results."""
    if not relevance:
        return ""
    lines = [
        "## Relevance maps per Query-to-Patch method",
        "",
        "Each projector's own Query-to-Patch (`fixed` mapping or `gae`) beside the model-agnostic "
        "ones (`attention`: raw attention rolled through the projector's layers; `grad-x-input`), "
        "all composed with the same Text-to-Query. Pointing game and energy as above; *unreliable*: "
        "share of maps flagged as not evidence of where the model looked (a gradient method whose "
        "positive part keeps under half of the signed relevance on the patch its gradient-free "
        "reference peaks on; `decovlm.interpret.reliability`); such maps are drawn grey and "
        "hatched in the figures.",
        "",
        "| projector | method | cases | pointing game | energy in object | object area | unreliable |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for spec, rel in relevance.items():
        own = rel.get("query_to_patch")
        for name, s in _methods(rel).items():
            label = f"{name} (own)" if name == own and len(_methods(rel)) > 1 else name
            lines.append(
                f"| {spec} | {label} | {s.get('cases', '-')} | {_fmt(s.get('pointing'), 2)} | "
                f"{_fmt(s.get('energy'))} | {_fmt(s.get('mask_area'))} | "
                f"{_fmt(_unreliable(s), percent=True)} |"
            )
        note = verdict(spec, rel)
        if note:
            notes.append(f"- {note}")
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"
