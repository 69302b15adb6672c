"""decovlm: DeCo, an MLLM whose projector only compresses tokens and leaves abstraction to the LLM.

The model classes are imported lazily so that `import decovlm` stays light for the CLI and the
metric functions; importing `decovlm` still registers the model with the transformers Auto classes
the first time one of them is touched.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "DecoVLMConfig": "decovlm.modeling.configuration",
    "DecoVLMForConditionalGeneration": "decovlm.modeling.modeling",
    "DecoVLMProcessor": "decovlm.modeling.processing",
    "build_projector": "decovlm.projectors",
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'decovlm' has no attribute {name!r}")
