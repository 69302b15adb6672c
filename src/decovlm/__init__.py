"""decovlm: DeCo, an MLLM whose projector only compresses tokens and leaves abstraction to the LLM.

Importing `decovlm` registers the model with the transformers Auto classes, so
`AutoModelForImageTextToText.from_pretrained(path)` loads a saved decovlm model.
"""

from decovlm.modeling import DecoVLMConfig, DecoVLMForConditionalGeneration, DecoVLMProcessor
from decovlm.projectors import build_projector

__version__ = "0.1.0"

__all__ = [
    "DecoVLMConfig",
    "DecoVLMForConditionalGeneration",
    "DecoVLMProcessor",
    "__version__",
    "build_projector",
]
