"""The demo's report: a paper-like table, convergence plot, relevance scores, and the claims checked.

Every statement in "Which of the paper's claims held" is computed from the numbers of this run
(`demo.claims`): nothing is hard-coded, each carries a bootstrap interval, and a claim is held
only when the run passed its sanity checks and the interval excludes zero difference.
"""

from __future__ import annotations

import platform
import statistics
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from decovlm.demo.claims import CATEGORIES, GROUPS, check_claims
from decovlm.utils.io import atomic_write_json, atomic_write_text, read_jsonl


def _acc(scores: dict, cat: str) -> float | None:
    return scores.get(cat, {}).get("accuracy")


def group_score(scores: dict, cats: list[str]) -> float | None:
    values = [_acc(scores, c) for c in cats if _acc(scores, c) is not None]
    return sum(values) / len(values) if values else None


def _mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None]
    if not values:
        return float("nan"), 0.0
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def chance_levels(questions_path: Path) -> dict[str, float]:
    """Majority-answer accuracy per category: what a model that ignores the image scores."""
    rows = read_jsonl(questions_path)
    out = {}
    for cat in CATEGORIES:
        golds = [str(r["answer"]).strip().lower() for r in rows if r.get("category") == cat]
        if golds:
            out[cat] = 100 * Counter(golds).most_common(1)[0][1] / len(golds)
    return out


def curve_auc(curve: list[dict]) -> float | None:
    """Mean overall accuracy along the finetune curve (trapezoid over steps): higher = faster."""
    pts = sorted((p["step"], p["scores"]["overall"]["accuracy"]) for p in curve)
    if len(pts) < 2:
        return None
    area = sum((s1 - s0) * (a0 + a1) / 2 for (s0, a0), (s1, a1) in zip(pts, pts[1:]))
    return area / (pts[-1][0] - pts[0][0])


def summarise(results: list[dict], relevance: dict[str, dict]) -> list[dict]:
    """One row per projector: means (and spreads) over seeds."""
    rows = []
    for spec in dict.fromkeys(r["spec"] for r in results):
        runs = [r for r in results if r["spec"] == spec]
        row: dict[str, Any] = {
            "spec": spec,
            "seeds": len(runs),
            "visual_tokens": runs[0]["visual_tokens"],
            "patches": runs[0]["patches"],
            "projector_params": runs[0]["projector_params"],
            "train_seconds": _mean_std([r["train_seconds"] for r in runs]),
            "samples_per_second": _mean_std([r["samples_per_second"] for r in runs]),
            "overall": _mean_std([r["scores"]["overall"]["accuracy"] for r in runs]),
            "auc": _mean_std([curve_auc(r["curve"]) for r in runs]),
            "per_seed_overall": [r["scores"]["overall"]["accuracy"] for r in runs],
        }
        for cat in CATEGORIES:
            row[cat] = _mean_std([_acc(r["scores"], cat) for r in runs])
        swapped = [r["swapped_scores"] for r in runs]  # the swapped-image control
        row["swapped_overall"] = _mean_std([_acc(s, "overall") for s in swapped])
        for cat in CATEGORIES:
            row[f"swapped_{cat}"] = _mean_std([_acc(s, cat) for s in swapped])
        row["yesno_f1"] = _mean_std([r["scores"].get("yesno", {}).get("f1") for r in runs])
        for name, cats in GROUPS.items():
            row[name] = _mean_std([group_score(r["scores"], cats) for r in runs])
        rel = relevance.get(spec, {}).get("summary", {})
        row["pointing"] = rel.get("pointing")
        row["energy"] = rel.get("energy")
        row["mask_area"] = rel.get("mask_area")
        rows.append(row)
    return rows


def _score_intervals(rows: list[dict], results: list[dict], categories: dict[str, str]) -> None:
    """Add each projector's 95% interval (questions, and seeds) per group and overall to its row."""
    from decovlm.demo.stats import Bootstrap

    tables: dict[str, list[dict]] = {}
    for r in sorted(results, key=lambda r: r["seed"]):
        if r.get("outcomes"):
            tables.setdefault(r["spec"], []).append(r["outcomes"])
    if not tables:
        return
    boot = Bootstrap(tables, categories)
    for row in rows:
        if row["spec"] not in tables:
            continue
        row["ci"] = {"overall": boot.score(row["spec"]).to_dict(), "n": boot.counts}
        for name, cats in GROUPS.items():
            if boot.has(cats):
                row["ci"][name] = boot.score(row["spec"], cats).to_dict()


def build_report(
    cfg,
    results,
    relevance,
    files,
    backbones,
    figure: dict,
    seconds: float,
    times: dict | None = None,
) -> dict:
    from decovlm.demo.stats import question_categories

    chance = chance_levels(Path(files.questions))
    categories = question_categories(files.questions)
    rows = summarise(results, relevance)
    _score_intervals(rows, results, categories)
    checked, conv = check_claims(results, relevance, categories, chance, cfg.tokens, cfg.quick)
    return {
        "settings": {
            **asdict(cfg),
            "seeds": cfg.n_seeds,
            "preset": cfg.preset_name,
            "budget": asdict(cfg.budget),
            "projectors": cfg.projectors,
        },  # fmt: skip
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}, Python {platform.python_version()}",
        "total_seconds": seconds,
        "stage_seconds": stage_seconds(results, times or {}, seconds),
        "backbones": backbones.metrics,
        "chance": chance,
        "rows": rows,
        "runs": results,
        "relevance": relevance,
        "claims": checked,
        "convergence": _convergence_json(conv),
        "figures": figure,
    }


def stage_seconds(results: list[dict], times: dict, total: float) -> dict[str, float]:
    """Wall seconds per stage of the run (world, backbones, features, each run's stages, relevance,
    figures), so a slow run says where its time went; a reused stage counts what it took when made."""
    out = {k: round(times[k], 1) for k in ("world", "backbones", "features") if k in times}
    if "runs" in times:  # wall time of all runs; the per-run lines below ran side by side
        out[f"training and scoring ({times.get('workers', 1)} worker(s), wall)"] = round(
            times["runs"], 1
        )
    for r in results:
        name = f"{r['spec']} seed {r['seed']}"
        for stage in ("align", "finetune", "curve", "eval"):
            if f"{stage}_seconds" in r:
                out[f"{name}: {stage}"] = round(r[f"{stage}_seconds"], 1)
        if r.get("grounding"):
            out[f"{name}: grounding"] = round(r["grounding"].get("seconds", 0.0), 1)
    out.update({k: round(times[k], 1) for k in ("relevance", "figures") if k in times})
    out["total"] = round(total, 1)
    return out


def _convergence_json(conv: dict | None) -> dict | None:
    if conv is None:
        return None
    return {
        "fraction": conv["fraction"],
        "reference": conv.get("reference"),
        "curve_steps": conv["curve_steps"],
        "questions": conv["n"],
        "target": conv["target"].to_dict(),
        "steps_to_target": {spec: iv.to_dict() for spec, iv in conv["steps"].items()},
    }


def write_report(report: dict, out: Path) -> None:
    from decovlm.demo.plots import plot_convergence
    from decovlm.demo.tables import report_markdown

    plots = {"convergence": plot_convergence(report["runs"], out / "figures" / "convergence.png")}
    report["figures"] = {**report["figures"], **plots}
    atomic_write_json(out / "report.json", report)
    from decovlm.demo.relevance_section import relevance_section

    text = report_markdown(report, out) + "\n" + relevance_section(report["relevance"])
    atomic_write_text(out / "REPORT.md", text)
