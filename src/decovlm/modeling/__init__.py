"""The DeCo MLLM as a Hugging Face model (config, model, processor), registered with the Auto classes.

The classes load on first use (PEP 562), so importing this package costs neither torch nor
transformers; `decovlm.modeling.auto` says how registration with the Auto classes follows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from decovlm.modeling.auto import register_all
from decovlm.utils.lazy import lazy_exports

# Whoever holds a decovlm class can also load a saved model through the Auto classes.
__getattr__, __dir__ = lazy_exports(
    globals(),
    {
        "DecoVLMConfig": "decovlm.modeling.configuration",
        "DecoVLMForConditionalGeneration": "decovlm.modeling.modeling",
        "DecoVLMProcessor": "decovlm.modeling.processing",
    },
    on_load=register_all,
)
if TYPE_CHECKING:
    from decovlm.modeling.configuration import DecoVLMConfig
    from decovlm.modeling.modeling import DecoVLMForConditionalGeneration
    from decovlm.modeling.processing import DecoVLMProcessor

__all__ = ["DecoVLMConfig", "DecoVLMForConditionalGeneration", "DecoVLMProcessor"]
