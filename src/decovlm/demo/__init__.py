"""`decovlm demo`: the paper's projector comparison, end to end, on the built-in synthetic world.

from decovlm.demo import DemoConfig, run_demo
report = run_demo(DemoConfig(out_dir="demo_out", quick=True))

The names load on first use, so `decovlm demo --help` does not import the training stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from decovlm.utils.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    globals(), {"DemoConfig": "decovlm.demo.config", "run_demo": "decovlm.demo.pipeline"}
)
if TYPE_CHECKING:
    from decovlm.demo.config import DemoConfig
    from decovlm.demo.pipeline import run_demo

__all__ = ["DemoConfig", "run_demo"]
