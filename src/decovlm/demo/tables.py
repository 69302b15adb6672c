"""REPORT.md and the terminal table of the demo (numbers formatted once, for both)."""

from __future__ import annotations

import os
from pathlib import Path

from decovlm.demo.report import CATEGORIES, GROUPS


def _pm(value: tuple[float, float], digits: int = 1) -> str:
    mean, std = value
    if mean != mean:  # NaN: not measured
        return "-"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std else "")


def main_table(report: dict) -> tuple[list[str], list[list[str]]]:
    headers = [
        "projector",
        "visual tokens",
        "projector params",
        *GROUPS,
        "overall",
        "train time (s)",
        "samples/s",
    ]
    rows = []
    for r in report["rows"]:
        rows.append([
            r["spec"], f"{r['visual_tokens']} / {r['patches']}", f"{r['projector_params']:,}",
            *(_pm(r[g]) for g in GROUPS), _pm(r["overall"]), _pm(r["train_seconds"], 0),
            _pm(r["samples_per_second"]),
        ])  # fmt: skip
    return headers, rows


def category_table(report: dict) -> tuple[list[str], list[list[str]]]:
    headers = ["projector", *CATEGORIES, "yes/no F1", "convergence (mean acc. on curve)"]
    rows = [
        [r["spec"], *(_pm(r[c]) for c in CATEGORIES), _pm(r["yesno_f1"]), _pm(r["auc"])]
        for r in report["rows"]
    ]
    rows += [
        [f"{r['spec']}, another scene's image", *(_pm(r[f"swapped_{c}"]) for c in CATEGORIES),
         "-", "-"]
        for r in report["rows"]
    ]  # fmt: skip
    rows.append(
        [
            "chance (majority answer)",
            *(f"{report['chance'].get(c, 0):.1f}" for c in CATEGORIES),
            "-",
            "-",
        ]
    )
    return headers, rows


def relevance_table(report: dict) -> tuple[list[str], list[list[str]]]:
    headers = [
        "projector",
        "Query-to-Patch",
        "cases",
        "pointing game",
        "energy in object",
        "object area (chance energy)",
    ]
    rows = []
    for spec, rel in report["relevance"].items():
        s = rel.get("summary", {})
        rows.append([spec, rel.get("query_to_patch") or "-", str(s.get("cases", len(rel.get("cases", [])))),
                     _fmt(s.get("pointing"), 2), _fmt(s.get("energy"), 3), _fmt(s.get("mask_area"), 3)])  # fmt: skip
    return headers, rows


def _caveat(report: dict) -> list[str]:
    """A warning when a sanity check failed: then (part of) the projector comparison says nothing."""
    failed = [c for c in report["claims"] if c["claim"].startswith("Sanity") and c["held"] is False]
    if not failed:
        return []
    missed = sorted({task for c in failed for task in c.get("not_learned", [])})
    if missed:
        return [
            "> **Caveat:** the non-compressive model did not clearly learn these tasks from the image in this "
            f"run: {', '.join(missed)}. Differences between projectors on them are not evidence for or against "
            "the paper's claims (see the sanity lines below and the swapped-image rows of the category table; "
            "`docs/world_learnability.md` has what was tried).",
            "",
        ]
    return [
        "> **Caveat:** the non-compressive model's answers barely depend on the image in this run (see the "
        "sanity lines below), so the differences between projectors are not evidence for or against the "
        "paper's claims; train longer before reading them (`decovlm demo --budget finetune_steps=3000`, "
        "or a GPU).",
        "",
    ]


def _fmt(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _markdown(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def report_markdown(report: dict, out: Path) -> str:
    s = report["settings"]
    b = s["budget"]
    rel = lambda p: os.path.relpath(p, out)  # noqa: E731
    bb = report.get("backbones") or {}
    lines = [
        "# decovlm demo: DeCo vs compressive and non-compressive projectors on the synthetic world",
        "",
        f"Projectors {', '.join(s['projectors'])}; same frozen vision encoder, same LLM, same data, "
        f"same seed(s) ({s['seeds']}), same budget: align {b['align_steps']} steps (projector only) then "
        f"finetune {b['finetune_steps']} steps (projector + LLM), batch {b['batch_size']}. "
        f"World: {b['train_scenes']} training scenes, {b['eval_scenes']} held-out scenes. "
        f"Total time {report['total_seconds'] / 60:.1f} min on {report['machine']}.",
        "",
        "## Which of the paper's claims held in this run",
        "",
        *_caveat(report),
        *(f"- **{c['verdict']}**: {c['claim']} ({c['evidence']})" for c in report["claims"]),
        "",
        "## Results (accuracy in %, held-out scenes)",
        "",
        _markdown(*main_table(report)),
        "",
        _markdown(*category_table(report)),
        "",
        f"![convergence]({rel(report['figures']['convergence'])})",
        "",
        "## Relevance maps (R-GAE) against the objects' masks",
        "",
        "Pointing game: the Text-to-Patch maximum of the target word lies inside the object's mask. Energy: the "
        "share of the map's mass inside the mask (a uniform map scores the object's area).",
        "",
        _markdown(*relevance_table(report)),
        "",
    ]
    for name, path in report["figures"].items():
        if name != "convergence" and path:
            lines += [f"![{name}]({rel(path)})", ""]
    lines += [
        "## The backbones (trained here, then frozen)",
        "",
        "```",
        *(f"{k}: {v}" for k, v in bb.items()),
        "```",
        "",
        "Numbers are in `report.json`; each run's answers, scores and training metrics are under `runs/`.",
    ]
    return "\n".join(lines) + "\n"


def print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for title, (headers, rows) in (("DeCo on the synthetic world", main_table(report)),
                                   ("Per category", category_table(report)),
                                   ("Relevance maps vs object masks", relevance_table(report))):  # fmt: skip
        table = Table(title=title)
        for h in headers:
            table.add_column(h)
        for row in rows:
            table.add_row(*row)
        console.print(table)
    for line in _caveat(report)[:1]:
        console.print(f"[yellow]{line.lstrip('> ')}[/yellow]")
    for c in report["claims"]:
        console.print(f"[bold]{c['verdict']}[/bold]: {c['claim']} ({c['evidence']})")
