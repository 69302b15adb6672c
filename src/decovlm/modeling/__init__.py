"""The DeCo MLLM as a Hugging Face model (config, model, processor), registered with the Auto classes.

Importing this package registers "decovlm" with `AutoConfig`, `AutoModelForImageTextToText` and
`AutoProcessor`, as a model package registers itself with transformers: here, once, and nowhere
else. So it imports torch and transformers; `import decovlm` stays cheap because it does not
import this package (its `DecoVLM*` names load it on first use).
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

from decovlm.modeling.configuration import DecoVLMConfig
from decovlm.modeling.modeling import DecoVLMForConditionalGeneration
from decovlm.modeling.processing import DecoVLMProcessor

AutoConfig.register(DecoVLMConfig.model_type, DecoVLMConfig, exist_ok=True)
AutoModelForImageTextToText.register(DecoVLMConfig, DecoVLMForConditionalGeneration, exist_ok=True)
AutoProcessor.register(DecoVLMConfig, DecoVLMProcessor, exist_ok=True)

__all__ = ["DecoVLMConfig", "DecoVLMForConditionalGeneration", "DecoVLMProcessor"]
