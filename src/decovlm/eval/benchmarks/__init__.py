"""Benchmark registry: name -> `Benchmark` (loader + scorer) for every benchmark DeCo reports, plus `synthetic`."""

from __future__ import annotations

from decovlm.eval.benchmarks import choice, refcoco, synthetic, vqa, yesno
from decovlm.eval.benchmarks.base import Benchmark, EvalItem

BENCHMARKS: dict[str, Benchmark] = {
    b.name: b for module in (yesno, choice, refcoco, vqa, synthetic) for b in module.BENCHMARKS
}


def get_benchmark(name: str) -> Benchmark:
    """The benchmark called `name`, or a ValueError listing the known ones."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ValueError(
            f"unknown benchmark {name!r}; known: {', '.join(sorted(BENCHMARKS))}"
        ) from None


__all__ = ["BENCHMARKS", "Benchmark", "EvalItem", "get_benchmark"]
