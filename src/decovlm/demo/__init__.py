"""`decovlm demo`: the paper's projector comparison, end to end, on the built-in synthetic world.

from decovlm.demo import DemoConfig, run_demo
report = run_demo(DemoConfig(out_dir="demo_out", quick=True))
"""

from decovlm.demo.config import DemoConfig
from decovlm.demo.pipeline import run_demo

__all__ = ["DemoConfig", "run_demo"]
