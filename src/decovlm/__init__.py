"""decovlm: DeCo, an MLLM whose projector only compresses tokens and leaves abstraction to the LLM.

`import decovlm` is cheap (no torch, no transformers): the names below load on first use.
`import decovlm.modeling` (or using any `DecoVLM*` name) registers the model with the transformers
Auto classes, so `AutoModelForImageTextToText.from_pretrained(path)` loads a saved decovlm model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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

__all__ = [
    "DecoVLMConfig",
    "DecoVLMForConditionalGeneration",
    "DecoVLMProcessor",
    "__version__",
    "build_projector",
]
