"""Per-question outcomes and bootstrap intervals: how sure a demo run can be of each difference.

A score difference of a few points on sixty questions is noise: one question is 1.7 points, and a
different machine or library version draws different training noise. So every number a claim
rests on comes with a 95% percentile-bootstrap interval:

- over the held-out questions, resampled within each task category (so every draw keeps the
  category sizes that the group and overall scores weight by), and *paired*: two projectors (or
  one projector with its own and with another scene's image) are scored on the same resampled
  questions in every draw, so the question-difficulty noise they share cancels;
- over seeds when there are several (seed k of every projector sees the same data order, so the
  resampled seeds are shared too).

Per-question outcomes come from the evaluation runner's own scorer (`score_synthetic`, one
question at a time), so the bootstrap and the reported accuracies can never disagree about what
counts as right.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from decovlm.utils.io import read_jsonl

DRAWS = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate and its 95% bootstrap interval (points of accuracy, steps, ...)."""

    estimate: float
    low: float
    high: float

    def excludes(self, value: float = 0.0) -> int:
        """+1 when the whole interval lies above `value`, -1 below, 0 when it contains it."""
        if self.low > value:
            return 1
        if self.high < value:
            return -1
        return 0

    def text(self, digits: int = 1, unit: str = "") -> str:
        return (
            f"{self.estimate:+.{digits}f}{unit} [95% CI {self.low:+.{digits}f}, "
            f"{self.high:+.{digits}f}]"
        )

    def to_dict(self) -> dict:
        """Plain JSON: an infinite bound (a curve that never reached its target) becomes None."""
        return {k: (v if np.isfinite(v) else None) for k, v in
                (("estimate", self.estimate), ("low", self.low), ("high", self.high))}  # fmt: skip


def question_outcomes(data_dir: str | Path, answers_dir: str | Path) -> dict[str, float]:
    """{question_id: 1.0 right / 0.0 wrong} for the answers in `answers_dir`/answers.jsonl.

    Each answer is scored alone by the runner's synthetic scorer (exact match, Acc@0.5, the POPE
    parser, option extraction), so a question's outcome is exactly what the category accuracy
    counted. Questions without an answer are left out.
    """
    from decovlm.eval.benchmarks.synthetic import load_synthetic, score_synthetic

    items = {it.question_id: it for it in load_synthetic(Path(data_dir), None, {})}
    out: dict[str, float] = {}
    for row in read_jsonl(Path(answers_dir) / "answers.jsonl"):
        item = items.get(str(row.get("question_id")))
        if item is None or item.error:
            continue
        answer = None if row.get("error") else row.get("answer")
        scores = score_synthetic([item], {item.question_id: answer}, {})
        out[item.question_id] = scores["overall"]["accuracy"] / 100.0
    return out


def question_categories(questions_path: str | Path) -> dict[str, str]:
    """{question_id: category} from a world's eval/questions.jsonl."""
    return {
        str(r["question_id"]): str(r["category"])
        for r in read_jsonl(Path(questions_path))
        if "question_id" in r and "category" in r
    }


class Bootstrap:
    """Resampled category accuracies for several outcome tables on the same questions.

    `tables`: {name: [ {question_id: outcome} per seed ]}. Only questions every table (and every
    seed) answered are used, so all comparisons are paired. `draws[name][cat]` is an array
    (DRAWS,) of that category's accuracy in % (mean over the resampled seeds); `point[name][cat]`
    the same on the data as measured.
    """

    def __init__(
        self,
        tables: dict[str, Sequence[dict[str, float]]],
        categories: dict[str, str],
        draws: int = DRAWS,
        seed: int = 0,
    ) -> None:
        rng = np.random.default_rng(seed)
        names = list(tables)
        shared = set(categories)
        for runs in tables.values():
            for outcomes in runs:
                shared &= set(outcomes)
        qids = sorted(shared)
        self.counts: dict[str, int] = {}
        self.point: dict[str, dict[str, float]] = {n: {} for n in names}
        self.draws: dict[str, dict[str, np.ndarray]] = {n: {} for n in names}
        n_seeds = {n: len(tables[n]) for n in names}
        seeds = max(n_seeds.values(), default=1)
        # Seeds are resampled once per draw and shared by every table (seed k pairs with seed k).
        seed_idx = rng.integers(0, seeds, size=(draws, seeds)) if seeds > 1 else None
        for cat in sorted({categories[q] for q in qids}):
            cat_q = [q for q in qids if categories[q] == cat]
            self.counts[cat] = len(cat_q)
            idx = rng.integers(0, len(cat_q), size=(draws, len(cat_q)))
            for name in names:
                table = np.array([[runs[q] for q in cat_q] for runs in tables[name]], np.float32)
                self.point[name][cat] = 100 * float(table.mean(dtype=np.float64))
                per_seed = table[:, idx].mean(axis=2, dtype=np.float64)  # (seeds, draws)
                if seed_idx is not None and len(table) == seeds:
                    chosen = np.take_along_axis(per_seed.T, seed_idx, axis=1)  # (draws, seeds)
                    self.draws[name][cat] = 100 * chosen.mean(axis=1)
                else:
                    self.draws[name][cat] = 100 * per_seed.mean(axis=0)

    @property
    def n_questions(self) -> int:
        return sum(self.counts.values())

    def _stat(self, source: dict, name: str, cats: Sequence[str] | None):
        """Mean of the category accuracies (`cats`), or the overall share right (cats None)."""
        if cats is None:
            total = sum(self.counts.values())
            return sum(source[name][c] * n for c, n in self.counts.items()) / total
        present = [c for c in cats if c in self.counts]
        return sum(source[name][c] for c in present) / len(present)

    def has(self, cats: Sequence[str] | None) -> bool:
        return bool(self.counts) if cats is None else any(c in self.counts for c in cats)

    def score(self, name: str, cats: Sequence[str] | None = None) -> Interval:
        """Accuracy of one table on `cats` (mean over categories; None: overall), with its interval."""
        return _interval(self._stat(self.point, name, cats), self._stat(self.draws, name, cats))

    def diff(self, a: str, b: str, cats: Sequence[str] | None = None) -> Interval:
        """a minus b on the same resampled questions and seeds (paired)."""
        point = self._stat(self.point, a, cats) - self._stat(self.point, b, cats)
        return _interval(point, self._stat(self.draws, a, cats) - self._stat(self.draws, b, cats))


def _interval(point: float, draws: np.ndarray) -> Interval:
    tail = (1 - LEVEL) / 2
    low, high = np.quantile(np.asarray(draws, float), [tail, 1 - tail], method="nearest")
    return Interval(float(point), float(low), float(high))


def paired_mean_diff(
    a: dict[str, float], b: dict[str, float], draws: int = DRAWS, seed: int = 0
) -> Interval | None:
    """Mean of a[k] - b[k] over the keys both have (e.g. relevance cases), with its interval."""
    keys = sorted(set(a) & set(b))
    if not keys:
        return None
    d = np.array([a[k] - b[k] for k in keys], float)
    idx = np.random.default_rng(seed).integers(0, len(d), size=(draws, len(d)))
    return _interval(float(d.mean()), d[idx].mean(axis=1))


def steps_to_reach(steps: np.ndarray, acc: np.ndarray, target: np.ndarray) -> np.ndarray:
    """First step at which each accuracy curve reaches its target (linear between points; inf: never).

    `steps` (P,), `acc` (D, P), `target` (D,) -> (D,).
    """
    steps, acc, target = np.asarray(steps, float), np.asarray(acc, float), np.asarray(target, float)
    reached = acc >= target[:, None]
    first = np.where(reached.any(axis=1), reached.argmax(axis=1), -1)
    out = np.full(len(acc), np.inf)
    for d, i in enumerate(first):
        if i == 0:
            out[d] = steps[0]
        elif i > 0:
            a0, a1 = acc[d, i - 1], acc[d, i]
            frac = (target[d] - a0) / (a1 - a0) if a1 > a0 else 1.0
            out[d] = steps[i - 1] + frac * (steps[i] - steps[i - 1])
    return out
