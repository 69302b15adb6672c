"""Convergence plot: held-out accuracy against finetune step, one line per projector (mean over seeds)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_convergence(runs: list[dict], path: Path) -> str:
    curves: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        for point in run["curve"]:
            curves[run["spec"]][point["step"]].append(point["scores"]["overall"]["accuracy"])
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for spec, points in curves.items():
        steps = sorted(points)
        means = [sum(points[s]) / len(points[s]) for s in steps]
        ax.plot(steps, means, marker="o", label=spec)
    ax.set_xlabel("finetune step")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title("Convergence (accuracy against training step)")
    ax.grid(alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return str(path)
