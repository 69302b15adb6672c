"""REPORT.md and the terminal table of the demo (numbers formatted once, for both)."""

from __future__ import annotations

import os
from pathlib import Path

from decovlm.demo.claims import CATEGORIES, GROUPS


def _pm(value: tuple[float, float], digits: int = 1) -> str:
    mean, std = value
    if mean != mean:  # NaN: not measured
        return "-"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std else "")


def _ci(row: dict, key: str) -> str:
    """ " [low, high]" of a row's 95% interval, when the run kept per-question outcomes."""
    iv = (row.get("ci") or {}).get(key)
    return f" [{iv['low']:.1f}, {iv['high']:.1f}]" if iv else ""


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
            *(_pm(r[g]) + _ci(r, g) for g in GROUPS), _pm(r["overall"]) + _ci(r, "overall"),
            _pm(r["train_seconds"], 0),
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


def convergence_table(report: dict) -> tuple[list[str], list[list[str]]] | None:
    """Overall accuracy on the curve questions at each evaluated step, and the steps to the target."""
    conv = report.get("convergence")
    if not conv:
        return None
    steps = conv["curve_steps"]
    last = steps[-1]
    headers = ["projector", *(f"step {s}" for s in steps),
               f"steps to {conv['fraction']:.0%} of {' / '.join(conv.get('reference') or ['mlp2x_gelu'])}'s "
               "lower final [95% CI]"]  # fmt: skip
    rows = []
    for spec, iv in conv["steps_to_target"].items():
        runs = [r for r in report["runs"] if r["spec"] == spec]
        accs = []
        for s in steps:
            vals = [
                p["scores"]["overall"]["accuracy"]
                for r in runs
                for p in r["curve"]
                if p["step"] == s
            ]
            accs.append(f"{sum(vals) / len(vals):.1f}" if vals else "-")
        one = lambda v: f"> {last}" if v is None else f"{v:.0f}"  # noqa: E731 (None: never reached)
        rows.append([spec, *accs, f"{one(iv['estimate'])} [{one(iv['low'])}, {one(iv['high'])}]"])
    return headers, rows


def _caveat(report: dict) -> list[str]:
    """A warning when a sanity check failed: then (part of) the projector comparison says nothing."""
    if report.get("settings", {}).get("quick"):
        return [
            "> **Quick run:** this run checks the plumbing (every stage, file and section), not the paper: "
            "its budget is far too small for the model to learn, so no claim is concluded. Run `decovlm demo` "
            "without `--quick` to test the claims.",
            "",
        ]
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


def _precision(report: dict) -> list[str]:
    """How many held-out questions the intervals rest on, and how wide they came out."""
    counts = next((r["ci"]["n"] for r in report["rows"] if r.get("ci")), None)
    if not counts:
        return []
    widths = sorted(
        (c["interval"]["high"] - c["interval"]["low"]) / 2
        for c in report["claims"]
        if "beats the Q-Former" in c["claim"] and (c.get("interval") or {}).get("low") is not None
    )
    width = (
        f" In this run a group difference is known to ±{widths[len(widths) // 2]:.1f} points."
        if widths
        else ""
    )
    return [
        f"Held-out questions: {', '.join(f'{c} {n}' for c, n in counts.items())} ({sum(counts.values())} in "
        "all). A paired difference on 60 questions of one category is known to roughly ±10 points; four "
        f"times the scenes (`--budget eval_scenes=240`) halve that.{width}",
        "",
    ]


def _convergence_lines(report: dict) -> list[str]:
    table = convergence_table(report)
    if table is None:
        return []
    conv = report["convergence"]
    return [
        f"Convergence: overall accuracy on the same {conv['questions']} curve questions (every category in "
        "turn) along the finetune stage, and the steps each projector needs to reach "
        f"{conv['fraction']:.0%} of the lower final score of {' and '.join(conv.get('reference') or ['mlp2x_gelu'])} "
        "on them, a level both reach (linear between points).",
        "",
        _markdown(*table),
        "",
    ]


def time_table(report: dict) -> tuple[list[str], list[list[str]]] | None:
    """Wall time per stage, in seconds and as a share of the run."""
    stages = report.get("stage_seconds")
    if not stages:
        return None
    total = stages.get("total") or sum(stages.values())
    # A run's own stages (named "spec seed k: stage") ran inside the workers' wall time: they are
    # shown indented and as a share of that wall time, not of the total.
    wall = next((s for name, s in stages.items() if name.startswith("training and scoring")), 0)
    rows = []
    for name, sec in stages.items():
        if name == "total":
            continue
        if ": " in name and wall:
            share = f"({100 * sec / wall:.0f}% of a worker's wall)"
            rows.append([f"&nbsp;&nbsp;{name}", f"{sec:.0f}", share])
        else:
            rows.append([name, f"{sec:.0f}", f"{100 * sec / total:.0f}%" if total else "-"])
    rows.append(["total", f"{total:.0f}", "100%"])
    return ["stage", "seconds", "share"], rows


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
        f"Total time {report['total_seconds'] / 60:.1f} min on {report['machine']}."
        + (
            f" Localization is scored on a second model per projector: the same aligned projector finetuned "
            f"{b['grounding_steps']} steps on box questions alone (a stage per task group; in the mix boxes "
            "are not learned)."
            if b.get("grounding_steps")
            else ""
        ),
        "",
        "## Which of the paper's claims held in this run",
        "",
        *_caveat(report),
        "Each claim is **held** only when the run passed the sanity checks it rests on and the 95% bootstrap "
        "interval of the difference (over the held-out questions, paired; over seeds when there are several) "
        "excludes zero; **not held** when the interval lies on the other side; **inconclusive** otherwise.",
        "",
        *_precision(report),
        *(
            f"- **{c['verdict']}**: {c['claim']} ({c['evidence']})"
            + (f" - {c['reason']}" if c.get("reason") else "")
            for c in report["claims"]
        ),
        "",
        "## Results (accuracy in %, held-out scenes)",
        "",
        _markdown(*main_table(report)),
        "",
        _markdown(*category_table(report)),
        "",
        *_convergence_lines(report),
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
    times = time_table(report)
    if times:
        lines += ["## Where the time went", "", _markdown(*times), ""]
    shipped = "shipped" in bb
    lines += [
        "## The backbones ("
        + ("the pretrained ones shipped with decovlm" if shipped else "trained here")
        + ", frozen in the MLLM)",
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
        reason = f" - {c['reason']}" if c.get("reason") else ""
        console.print(f"[bold]{c['verdict']}[/bold]: {c['claim']} ({c['evidence']}){reason}")
