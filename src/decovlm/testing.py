"""The test kit: tiny random decovlm models for tests, examples and benchmarks (nothing downloaded).

    model, processor = tiny_model("avgpool2_4")      # CLIP 32 px / patch 8 -> 4x4 grid, Llama 2 layers

The builder itself lives in production code (`decovlm.modeling.tiny`, also behind the trainer's
`model.tiny` presets); this module re-exports it for tests, and no production module imports it.
"""

from decovlm.modeling.tiny import (
    CHAT_TEMPLATE,
    SPECIAL,
    WORDS,
    tiny_llm,
    tiny_model,
    tiny_tokenizer,
    tiny_vision,
)

__all__ = [
    "CHAT_TEMPLATE",
    "SPECIAL",
    "WORDS",
    "tiny_llm",
    "tiny_model",
    "tiny_tokenizer",
    "tiny_vision",
]
