"""decovlm: DeCo, an MLLM whose projector only compresses tokens and leaves abstraction to the LLM.

Importing `decovlm` registers the model with the transformers Auto classes, so
`AutoModelForImageTextToText.from_pretrained(path)` loads a saved decovlm model. The import itself
is cheap (no torch, no transformers): the names below load on first use, and registration follows
transformers' Auto modules whenever they are imported, before or after decovlm
(`decovlm.modeling.auto`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from decovlm.modeling import auto as _auto
from decovlm.utils.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(
    globals(),
    {
        "DecoVLMConfig": "decovlm.modeling",
        "DecoVLMForConditionalGeneration": "decovlm.modeling",
        "DecoVLMProcessor": "decovlm.modeling",
        "build_projector": "decovlm.projectors",
    },
)
if TYPE_CHECKING:
    from decovlm.modeling import DecoVLMConfig, DecoVLMForConditionalGeneration, DecoVLMProcessor
    from decovlm.projectors import build_projector

_auto.install()

__all__ = [
    "DecoVLMConfig",
    "DecoVLMForConditionalGeneration",
    "DecoVLMProcessor",
    "__version__",
    "build_projector",
]
