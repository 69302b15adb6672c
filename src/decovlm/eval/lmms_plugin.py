"""lmms-eval plugin registration: the `lmms_eval.models` entry point names `manifest` below.

pyproject.toml:
    [project.entry-points."lmms_eval.models"]
    decovlm = "decovlm.eval.lmms_plugin:manifest"

lmms-eval (>= 0.6) calls `manifest()` while it builds its model registry, after which
`python -m lmms_eval --model decovlm --model_args pretrained=PATH ...` works. This module stays
import-light (no torch, no model code) because every lmms-eval start loads it.
"""

from __future__ import annotations

MODEL_ID = "decovlm"
CLASS_PATH = "decovlm.eval.lmms_adapter.DecoVLMLMM"


def manifest():
    """The `ModelManifest` lmms-eval registers: id `decovlm` (alias `deco`), a simple (non-chat) model."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_ID, simple_class_path=CLASS_PATH, aliases=("deco",))
