"""The DeCo MLLM as a Hugging Face model (config, model, processor), registered with the Auto classes."""

from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

from decovlm.modeling.configuration import DecoVLMConfig
from decovlm.modeling.modeling import DecoVLMForConditionalGeneration
from decovlm.modeling.processing import DecoVLMProcessor

# After `import decovlm`, `AutoModelForImageTextToText.from_pretrained(path)` loads a decovlm model.
AutoConfig.register("decovlm", DecoVLMConfig, exist_ok=True)
AutoModelForImageTextToText.register(DecoVLMConfig, DecoVLMForConditionalGeneration, exist_ok=True)
AutoProcessor.register(DecoVLMConfig, DecoVLMProcessor, exist_ok=True)

__all__ = ["DecoVLMConfig", "DecoVLMForConditionalGeneration", "DecoVLMProcessor"]
