"""The built-in synthetic world: seeded scenes of coloured shapes, the paper's task groups
(captions, VQA, counting, localization, POPE-style yes/no, multiple choice) written in LLaVA's
formats, and three small backbones (tokenizer, CLIP vision encoder, Llama LM) trained on it.

    from decovlm.world import generate_world, prepare_backbones
    files = generate_world("world", train=2000, eval=200, seed=0)
    paths = prepare_backbones("world", budget="quick")   # world/backbones/{tokenizer,vision,llm}
"""

from typing import TYPE_CHECKING

from decovlm.utils.lazy import lazy_exports

# Loaded on first use, so `decovlm world --help` imports none of the rendering code.
_EXPORTS = {
    **dict.fromkeys(["RenderedScene", "mask_box", "patch_labels", "render_scene"], "render"),
    **dict.fromkeys(
        ["COLOURS", "SHAPES", "SIZES", "Scene", "WorldConfig", "WorldObject", "sample_scene"],
        "scene",
    ),
    **dict.fromkeys(["QA", "all_questions", "caption"], "tasks"),
    **dict.fromkeys(["WorldFiles", "generate_world", "load_world_meta"], "writer"),
}
__getattr__, __dir__ = lazy_exports(
    globals(), {name: f"decovlm.world.{module}" for name, module in _EXPORTS.items()}
)
if TYPE_CHECKING:
    from decovlm.world.render import RenderedScene, mask_box, patch_labels, render_scene
    from decovlm.world.scene import (
        COLOURS,
        SHAPES,
        SIZES,
        Scene,
        WorldConfig,
        WorldObject,
        sample_scene,
    )
    from decovlm.world.tasks import QA, all_questions, caption
    from decovlm.world.writer import WorldFiles, generate_world, load_world_meta


def prepare_backbones(*args, **kwargs):
    """Train (or reuse) the world's tokenizer, vision encoder and LM; see world.backbones."""
    from decovlm.world.backbones import prepare_backbones as _prepare  # imports torch lazily

    return _prepare(*args, **kwargs)


__all__ = [
    "COLOURS",
    "QA",
    "SHAPES",
    "SIZES",
    "RenderedScene",
    "Scene",
    "WorldConfig",
    "WorldFiles",
    "WorldObject",
    "all_questions",
    "caption",
    "generate_world",
    "load_world_meta",
    "mask_box",
    "patch_labels",
    "prepare_backbones",
    "render_scene",
    "sample_scene",
]
