"""Counts and tables of the single-patch sanity benchmark (`decovlm.interpret.sanity`).

Per projector and Query-to-Patch method, summed over the seeds: cases, hits (the map's maximum on
the painted patch), misses, and how many of each the reliability flag marks
(`decovlm.interpret.reliability`). A flag is useful when it marks the misses and spares the hits.
A miss can be the model's (it never learned to use the patch: every method misses) or the
method's; the *reference* - the attention rollout where the projector records attention, else the
projector's exact fixed mapping - tells them apart: "ref. hit" counts the misses in cases where the
reference found the patch, i.e. the method's own misses.
"""

from __future__ import annotations

import numpy as np

REFERENCES = ("attention", "fixed")


def reference_method(methods) -> str | None:
    """The method a case's other maps are judged against (attention rollout, else fixed)."""
    return next((m for m in REFERENCES if m in methods), None)


def method_counts(records: list[dict], method: str) -> dict:
    """Hits, misses and flag counts of one method over per-case records (`sanity._run` "cases")."""
    rows = [(r["methods"][method], r["methods"]) for r in records if method in r["methods"]]
    hits = [m for m, _ in rows if m["hit"]]
    misses = [m for m, _ in rows if not m["hit"]]
    ref = reference_method(rows[0][1]) if rows else None
    own_misses = (
        [m for m, every in rows if not m["hit"] and every[ref]["hit"]]
        if ref is not None and ref != method
        else []
    )
    codes: dict[str, int] = {}
    for m, _ in rows:
        if m["code"]:
            codes[m["code"]] = codes.get(m["code"], 0) + 1
    n = len(rows)
    return {
        "cases": n,
        "hits": len(hits),
        "misses": len(misses),
        "hit_rate": len(hits) / n if n else float("nan"),
        "flagged_misses": sum(m["unreliable"] for m in misses),
        "flagged_hits": sum(m["unreliable"] for m in hits),
        "reference": ref if ref != method else None,
        "misses_reference_hit": len(own_misses),
        "flagged_misses_reference_hit": sum(m["unreliable"] for m in own_misses),
        "codes": codes,
        # what the overall kept share alone (< 1/2, the first design of the flag) would mark
        "overall_rule_flagged_misses": sum(_net_negative(m) for m in misses),
        "overall_rule_flagged_hits": sum(_net_negative(m) for m in hits),
        "energy": float(np.mean([m["energy"] for m, _ in rows])) if rows else float("nan"),
        "median_q2p_mass": float(np.median([m["mass"] for m, _ in rows])) if rows else 0.0,
        "mass_range_hits": _range([m["mass"] for m in hits]),
        "mass_range_misses": _range([m["mass"] for m in misses]),
        "unreliable_share": float(np.mean([m["unreliable"] for m, _ in rows])) if rows else 0.0,
        # the issue-26 names, same meaning as the two above / flagged_misses over misses
        "vanished_share": float(np.mean([m["unreliable"] for m, _ in rows])) if rows else 0.0,
        "misses_vanished": sum(m["unreliable"] for m in misses) / len(misses) if misses else None,
    }


def _net_negative(m: dict) -> bool:
    return m.get("kept") is not None and m["kept"] < 0.5


def _range(values: list[float]) -> list[float] | None:
    return [float(min(values)), float(max(values))] if values else None


def aggregate(runs: list[dict]) -> dict:
    """{projector: {train accuracies, chance, seconds, methods: {method: counts over seeds}}}."""
    out: dict[str, dict] = {}
    for spec in dict.fromkeys(r["projector"] for r in runs):
        mine = [r for r in runs if r["projector"] == spec]
        records = [case for r in mine for case in r["cases"]]
        methods = list(dict.fromkeys(m for case in records for m in case["methods"]))
        out[spec] = {
            "seeds": [r["seed"] for r in mine],
            "train_accuracy": min(r["train_accuracy"] for r in mine),
            "train_accuracies": [r["train_accuracy"] for r in mine],
            "chance": mine[0]["chance"],
            "seconds": sum(r["seconds"] for r in mine),
            "methods": {m: method_counts(records, m) for m in methods},
        }
    return out


def _flag(count: int, total: int) -> str:
    return f"{count}/{total}" if total else "-"


def _masses(rng) -> str:
    return "-" if not rng else f"{rng[0]:.0e}..{rng[1]:.0e}"


def markdown(result: dict) -> str:
    """One row per (projector, method), counts over every seed of the result."""
    grid = result.get("grid")
    seeds = result.get("seeds", [result.get("seed", 0)])
    title = (
        f"{result.get('image_size', 32)} px, {grid[0]}x{grid[1]} patches, seeds "
        f"{', '.join(map(str, seeds))}, {result.get('steps')} steps"
        if grid
        else f"seed {seeds[0]}, {result.get('steps')} steps"
    )
    lines = [
        f"**{title}** (counts over the seeds; train acc.: the lowest seed's)",
        "",
        "| projector | train acc. | method | cases | hits | misses | flagged misses | "
        "flagged hits | misses where ref. hit: flagged | chance | energy on patch | "
        "Q2P mass of misses | of hits |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for spec, p in result["projectors"].items():
        for method, m in p["methods"].items():
            own = (
                f"{_flag(m['flagged_misses_reference_hit'], m['misses_reference_hit'])} "
                f"({m['reference']})"
                if m["reference"]
                else "-"
            )
            lines.append(
                f"| {spec} | {p['train_accuracy']:.2f} | {method} | {m['cases']} | {m['hits']} | "
                f"{m['misses']} | {_flag(m['flagged_misses'], m['misses'])} | "
                f"{_flag(m['flagged_hits'], m['hits'])} | {own} | {p['chance']:.2f} | "
                f"{m['energy']:.3f} | {_masses(m['mass_range_misses'])} | "
                f"{_masses(m['mass_range_hits'])} |"
            )
    return "\n".join(lines) + "\n"
