"""Which of the paper's claims a demo run supports: sanity checks first, then each claim with its interval.

A claim is **held** only when (1) the run passed the sanity checks it rests on (the non-compressive
model reads the image: its answers get worse with another scene's image, and each task the claim
is about is learned clearly above chance and above that control) and (2) the 95% bootstrap
interval of the difference (over held-out questions, paired; over seeds when there are several)
lies wholly on the claimed side. **Not held** when the interval lies wholly on the other side;
**inconclusive**, with the reason, otherwise. A `--quick` run concludes nothing: it is there to
check the plumbing, and its claims say so.

The thresholds: a task counts as learned when the non-compressive model beats chance and the
swapped-image control by more than TASK_GAP points *and* both intervals exclude zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from decovlm.demo.stats import Bootstrap, Interval, paired_mean_diff, steps_to_reach

# The paper's three task groups, and the synthetic categories that stand for them.
GROUPS = {
    "MLLM benchmarks (yes/no acc, multiple choice)": ["yesno", "multiple_choice"],
    "Visual localization (Acc@0.5)": ["localization"],
    "Open-ended VQA (attributes, counting)": ["vqa", "count"],
}
CATEGORIES = ["vqa", "count", "localization", "yesno", "multiple_choice"]
# Overall points the image must add over the swapped-image control to count as used.
IMAGE_GAP = 2.0
# Points a task's accuracy must exceed both chance and its swapped-image score by to count as learned.
TASK_GAP = 5.0
# "Keeps the non-compressive accuracy": the compressed model may be at most this many points worse.
KEEP_MARGIN = 5.0
# Convergence: steps of the finetune stage to reach this fraction of the non-compressive model's
# final accuracy on the curve questions.
CONVERGENCE_FRACTION = 0.9

QUICK = "not concluded"
QUICK_REASON = "a --quick run checks the plumbing only; run the default budget to test the paper"


def decide(
    interval: Interval | None, *, sane: str | None, quick: bool, margin: float = 0.0
) -> tuple[str, str]:
    """(verdict, reason) for a claim "difference > margin".

    `sane`: None when the sanity checks the claim rests on passed, else why not.
    """
    if quick:
        return QUICK, QUICK_REASON
    if interval is None:
        return "inconclusive", "not measured in this run"
    if sane is not None:
        return "inconclusive", f"sanity check failed: {sane}"
    side = interval.excludes(margin)
    if side > 0:
        return "held", "the interval lies above " + ("zero" if not margin else f"{margin:+g}")
    if side < 0:
        return "not held", "the interval lies below " + ("zero" if not margin else f"{margin:+g}")
    return "inconclusive", "the interval includes " + (
        "zero difference" if not margin else f"{margin:+g}"
    )


def _tables(results: list[dict], key: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in sorted(results, key=lambda r: r["seed"]):
        if r.get(key) is not None:
            out.setdefault(r["spec"], []).append(r[key])
    return out


def sanity_checks(boot: Bootstrap, full: str, chance: dict[str, float]) -> tuple[list[dict], dict]:
    """The two sanity lines and {category: None if learned else the reason}."""
    learned: dict[str, str | None] = {}
    parts = []
    for cat in CATEGORIES:
        if cat not in boot.counts:
            continue
        own = boot.score(full, [cat])
        gap = boot.diff(full, f"{full}|swapped", [cat])
        base = chance.get(cat, 0.0)
        ok = own.estimate - base > TASK_GAP and own.low > base
        ok = ok and gap.estimate > TASK_GAP and gap.low > 0
        learned[cat] = None if ok else f"{cat} not learned from the image"
        parts.append(
            f"{cat} {own.estimate:.1f} [{own.low:.1f}, {own.high:.1f}] (chance {base:.1f}, "
            f"own minus another scene's image {gap.text()}, n={boot.counts[cat]})"
        )
    missed = [c for c, why in learned.items() if why]
    every = {
        "claim": "Sanity: the non-compressive model learns every task clearly above chance (more than "
                 f"{TASK_GAP:g} points over the majority answer and over another scene's image, both "
                 "intervals clear of zero)",
        "held": not missed,
        "evidence": "; ".join(parts) + (f"; not learned: {', '.join(missed)}" if missed else ""),
        "not_learned": missed,
    }  # fmt: skip
    overall = boot.diff(full, f"{full}|swapped")
    depends = overall.estimate > IMAGE_GAP and overall.low > 0
    image = {
        "claim": "Sanity: the non-compressive model's answers depend on the image (overall accuracy drops by "
                 f"more than {IMAGE_GAP:g} points, interval clear of zero, with another scene's image)",
        "held": depends,
        "evidence": f"overall own minus another scene's image {overall.text()}, n={boot.n_questions}",
        "interval": overall.to_dict(),
    }  # fmt: skip
    for check in (every, image):
        check["verdict"] = "passed" if check["held"] else "failed"
        check["reason"] = ""
    learned["_image"] = None if depends else "the answers do not depend on the image"
    return [every, image], learned


def _needs(learned: dict, cats: Sequence[str] | None) -> str | None:
    """Why a claim on `cats` (None: overall) cannot be read, or None when its checks passed."""
    if learned.get("_image"):
        return learned["_image"]
    if cats is None:
        return None
    missed = [c for c in cats if learned.get(c)]
    return (
        f"the non-compressive model did not learn {', '.join(missed)} from the image"
        if missed
        else None
    )


def _claim(text, interval, evidence, *, sane, quick, margin=0.0) -> dict:
    verdict, reason = decide(interval, sane=sane, quick=quick, margin=margin)
    return {
        "claim": text,
        "verdict": verdict,
        "held": {"held": True, "not held": False}.get(verdict),
        "reason": reason,
        "evidence": evidence,
        "interval": interval.to_dict() if interval else None,
    }


def convergence(
    results: list[dict],
    categories: dict[str, str],
    reference: Sequence[str],
    fraction: float = CONVERGENCE_FRACTION,
) -> dict | None:
    """Steps to reach `fraction` of the lowest final curve accuracy among `reference`, per projector.

    With the two projectors compared as `reference`, the target is a level both reach (90% of
    the weaker one's final accuracy), so "faster" means sooner to the same accuracy; a target
    taken from the non-compressive model is never reached by a compressive one that ends lower.

    Returns {"target": Interval, "steps": {spec: Interval}, "boot": (Bootstrap, names, steps)} or
    None when the curves lack per-question outcomes. Every curve point of every projector is scored
    on the same questions, so one bootstrap resamples them all together (paired).
    """
    tables: dict[str, list[dict]] = {}
    curve_steps: list[int] | None = None
    for r in sorted(results, key=lambda r: r["seed"]):
        points = sorted(r.get("curve") or [], key=lambda p: p["step"])
        if not points or any("outcomes" not in p for p in points):
            return None
        steps = [p["step"] for p in points]
        curve_steps = curve_steps or steps
        if steps != curve_steps:
            return None
        for p in points:
            tables.setdefault(f"{r['spec']}@{p['step']}", []).append(p["outcomes"])
    specs = list(dict.fromkeys(r["spec"] for r in results))
    if not set(reference) <= set(specs) or not curve_steps or len(curve_steps) < 2:
        return None
    boot = Bootstrap(tables, categories)
    if not boot.counts:
        return None
    x = np.array(curve_steps, float)

    def curve(source, spec):
        return np.stack([boot._stat(source, f"{spec}@{s}", None) for s in curve_steps], axis=-1)

    target_point = fraction * min(curve(boot.point, spec)[-1] for spec in reference)
    target_draws = fraction * np.min([curve(boot.draws, spec)[:, -1] for spec in reference], axis=0)
    out = {"fraction": fraction, "curve_steps": curve_steps, "n": boot.n_questions, "steps": {},
           "target": _from_draws(float(target_point), target_draws), "draws": {},
           "reference": list(reference)}  # fmt: skip
    for spec in specs:
        point = float(steps_to_reach(x, curve(boot.point, spec)[None], np.array([target_point]))[0])
        draws = steps_to_reach(x, curve(boot.draws, spec), target_draws)
        out["steps"][spec] = _from_draws(point, draws)
        out["draws"][spec] = (point, draws)
    return out


def _from_draws(point: float, draws: np.ndarray) -> Interval:
    low, high = np.quantile(draws, [0.025, 0.975], method="nearest")
    return Interval(point, float(low), float(high))


def _step_diff(conv: dict, slow: str, fast: str) -> Interval:
    """Steps `slow` needs minus steps `fast` needs (positive: `fast` converges sooner)."""
    (ps, ds), (pf, df) = conv["draws"][slow], conv["draws"][fast]

    def sub(a, b):
        both = np.isinf(a) & np.isinf(b)
        return np.where(both, 0.0, np.nan_to_num(a - b, nan=0.0, posinf=np.inf, neginf=-np.inf))

    return _from_draws(float(sub(np.array([ps]), np.array([pf]))[0]), sub(ds, df))


def _steps_text(iv: Interval, last: int) -> str:
    def one(v):
        return f"> {last}" if np.isinf(v) else f"{v:.0f}"

    return f"{one(iv.estimate)} [{one(iv.low)}, {one(iv.high)}]"


def check_claims(
    results: list[dict],
    relevance: dict[str, dict],
    categories: dict[str, str],
    chance: dict[str, float],
    tokens: int,
    quick: bool,
) -> tuple[list[dict], dict | None]:
    """The sanity lines and the paper's claims, each with verdict, reason, evidence and interval.

    `results`: the runs (spec, seed, outcomes, swapped_outcomes, curve points with outcomes,
    projector_params, visual_tokens). Returns (claims, convergence summary or None).
    """
    from decovlm.demo.config import SHORT_NAMES
    from decovlm.projectors import ProjectorSpec

    full, deco, qformer = (
        str(ProjectorSpec.parse(SHORT_NAMES[name]).with_tokens(tokens)) if name != "mlp"
        else SHORT_NAMES[name] for name in ("mlp", "deco", "qformer")
    )  # fmt: skip
    own, swapped = _tables(results, "outcomes"), _tables(results, "swapped_outcomes")
    tables = {**own, **{f"{k}|swapped": v for k, v in swapped.items()}}
    specs = set(own)
    out: list[dict] = []
    learned: dict[str, str | None] = {"_image": "the non-compressive model was not run"}
    # The sanity checks pair each question with its swapped-image twin (a subset may be asked
    # both ways); the projector comparisons pair the projectors on every held-out question.
    sanity = Bootstrap(tables, categories) if tables else None
    if sanity is not None and full in specs and f"{full}|swapped" in tables and sanity.counts:
        checks, learned = sanity_checks(sanity, full, chance)
        out += checks
    boot = Bootstrap(own, categories) if own else None
    pair = [deco, qformer] if {deco, qformer} <= specs else [full]
    conv = convergence(results, categories, pair)
    first = {r["spec"]: r for r in sorted(results, key=lambda r: r["seed"])}
    if deco in specs and qformer in specs and boot is not None:
        for name, cats in GROUPS.items():
            if not boot.has(cats):
                continue
            iv = boot.diff(deco, qformer, cats)
            a, b = boot.score(deco, cats), boot.score(qformer, cats)
            out.append(_claim(
                f"DeCo beats the Q-Former at the same {tokens} tokens on {name}", iv,
                f"{a.estimate:.1f} vs {b.estimate:.1f}; difference {iv.text()}",
                sane=_needs(learned, cats), quick=quick))  # fmt: skip
    if deco in first and qformer in first:
        pd, pq = first[deco]["projector_params"], first[qformer]["projector_params"]
        exact = Interval(float(pq - pd), float(pq - pd), float(pq - pd))
        out.append(_claim("DeCo has fewer trainable projector parameters than the Q-Former", exact,
                          f"{pd:,} vs {pq:,} (a count: its interval is the number itself)",
                          sane=_needs(learned, None), quick=quick))  # fmt: skip
    if conv is not None and deco in conv["steps"] and qformer in conv["steps"]:
        last = conv["curve_steps"][-1]
        iv = _step_diff(conv, qformer, deco)
        t = conv["target"]
        out.append(_claim(
            f"DeCo converges faster than the Q-Former (finetune steps to reach {conv['fraction']:.0%} of the "
            f"weaker one's final accuracy, a level both reach, on {conv['n']} curve questions)", iv,
            f"target {t.estimate:.1f} [{t.low:.1f}, {t.high:.1f}]; DeCo {_steps_text(conv['steps'][deco], last)}"
            f" vs Q-Former {_steps_text(conv['steps'][qformer], last)} steps; Q-Former minus DeCo "
            f"{_steps_text(iv, last)} (curve points at {', '.join(map(str, conv['curve_steps']))})",
            sane=_needs(learned, None), quick=quick))  # fmt: skip
    rel_d, rel_q = relevance.get(deco), relevance.get(qformer)
    if rel_d and rel_q:
        energy = paired_mean_diff(*({c["case_id"]: c["energy"] for c in rel.get("cases", [])}
                                    for rel in (rel_d, rel_q)))  # fmt: skip
        sd, sq = rel_d.get("summary", {}), rel_q.get("summary", {})
        out.append(_claim(
            "DeCo's Text-to-Patch relevance lies on the named object more than the Q-Former's "
            "(energy inside the object's mask, paired over relevance cases; no double abstraction)", energy,
            f"energy {sd.get('energy', float('nan')):.3f} vs {sq.get('energy', float('nan')):.3f}, difference "
            + (energy.text(3) if energy else "-") + f"; pointing {sd.get('pointing', float('nan')):.2f} vs "
            f"{sq.get('pointing', float('nan')):.2f}",
            sane=_needs(learned, None), quick=quick))  # fmt: skip
    if deco in specs and full in specs and boot is not None:
        iv = boot.diff(deco, full)
        a, b = boot.score(deco), boot.score(full)
        out.append(_claim(
            f"DeCo keeps the non-compressive model's accuracy with {first[deco]['visual_tokens']} instead of "
            f"{first[full]['visual_tokens']} visual tokens (not worse by more than {KEEP_MARGIN:g} points)", iv,
            f"overall {a.estimate:.1f} vs {b.estimate:.1f}; difference {iv.text()}",
            sane=_needs(learned, None), quick=quick, margin=-KEEP_MARGIN))  # fmt: skip
    if boot is not None and deco in specs:
        out += _extra_comparisons(boot, [s for s in own if s not in (full, deco, qformer)], deco, tokens,
                                  learned, quick)  # fmt: skip
    return out, conv


def _extra_comparisons(boot, others, deco, tokens, learned, quick) -> list[dict]:
    """DeCo against every other compressive projector at the same M, and DeCo at other token counts."""
    from decovlm.projectors import ProjectorSpec

    out = []
    for spec in others:
        iv, a, b = boot.diff(deco, spec), boot.score(deco), boot.score(spec)
        parsed = ProjectorSpec.parse(spec)
        if parsed.tokens == tokens:
            out.append(_claim(f"DeCo beats {spec} at the same {tokens} tokens (overall accuracy)", iv,
                              f"overall {a.estimate:.1f} vs {b.estimate:.1f}; difference {iv.text()}",
                              sane=_needs(learned, None), quick=quick))  # fmt: skip
        elif parsed.with_tokens(tokens) == ProjectorSpec.parse(deco):  # DeCo at another M
            iv = boot.diff(spec, deco)
            out.append(_claim(
                f"DeCo keeps its accuracy with {parsed.tokens} instead of {tokens} tokens (not worse by "
                f"more than {KEEP_MARGIN:g} points)", iv,
                f"overall {b.estimate:.1f} vs {a.estimate:.1f}; difference {iv.text()}",
                sane=_needs(learned, None), quick=quick, margin=-KEEP_MARGIN))  # fmt: skip
    return out
