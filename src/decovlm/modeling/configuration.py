"""`DecoVLMConfig`: the vision config, the text config, the projector spec, and how they are wired."""

from __future__ import annotations

from typing import Any, Literal

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from decovlm.errors import UserError
from decovlm.projectors.registry import ProjectorSpec

RESIZE_MODES = ("naive", "pad", "crop")


class DecoVLMConfig(PreTrainedConfig):
    r"""Configuration of a DeCo MLLM: vision encoder -> projector -> causal LLM.

    Args:
        vision_config: config of any HF vision model with a patch grid (CLIP, SigLIP, ViT, ...).
        text_config: config of any causal LM (Llama/Vicuna, Qwen2, Phi, ...).
        projector: spec string from `decovlm.projectors` (`avgpool2_144` is DeCo).
        projector_kwargs: overrides of the projector's typed config (e.g. `{"hidden_size": 768}`).
        vision_feature_layer: which hidden state of the vision encoder feeds the projector
            (-2, the penultimate layer, as LLaVA-1.5 and DeCo).
        vision_feature_select: `"patch"` drops the prefix tokens (CLS) the encoder adds beyond its
            patch grid, counted from the grid so a real patch is never dropped (SigLIP has none);
            `"full"` keeps them (then the projector must accept a non-grid sequence).
        image_token_id / image_token: the placeholder the processor expands to M tokens.
        image_resize_mode: `naive` (stretch; DeCo's default), `pad` (LLaVA-1.5 pad-to-square with
            the mean colour) or `crop` (the image processor's resize + centre crop).

    Example:
        >>> from transformers import CLIPVisionConfig, LlamaConfig
        >>> config = DecoVLMConfig(vision_config=CLIPVisionConfig(), text_config=LlamaConfig())
    """

    model_type = "decovlm"
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(config_class=AutoConfig, model_type="clip_vision_model"),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
    }

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    projector: str = "avgpool2_144"
    projector_kwargs: dict | None = None
    vision_feature_layer: int = -2
    vision_feature_select: Literal["patch", "full"] = "patch"
    image_token_id: int | None = None
    image_token: str = "<image>"
    image_resize_mode: Literal["naive", "pad", "crop"] = "naive"
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs: Any) -> None:
        # The base class sets `_attn_implementation` recursively (None when not given), which would
        # wipe the backend that the pretrained towers were loaded with: keep theirs unless asked.
        kept = {
            key: getattr(sub, "_attn_implementation", None)
            for key in ("vision_config", "text_config")
            if isinstance(sub := getattr(self, key), PreTrainedConfig)
        }
        explicit = kwargs.get("attn_implementation") is not None
        super().__post_init__(**kwargs)
        if not explicit:
            for key, impl in kept.items():
                if impl is not None:
                    getattr(self, key)._attn_implementation_internal = impl
        # Parse the spec now (a typo fails when the config is made, not at the first forward) and
        # keep its canonical spelling, so equal projectors have equal configs.
        self.projector = str(_parse_projector(self.projector))
        if self.projector_kwargs is None:
            self.projector_kwargs = {}
        if self.image_resize_mode not in RESIZE_MODES:
            raise ValueError(
                f"image_resize_mode must be one of {RESIZE_MODES}, got {self.image_resize_mode!r}"
            )
        if self.vision_feature_select not in ("patch", "full"):
            raise ValueError(
                f"vision_feature_select must be 'patch' or 'full', got {self.vision_feature_select!r}"
            )
        if getattr(self.text_config, "tie_word_embeddings", False):
            self.tie_word_embeddings = True

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> DecoVLMConfig:
        """HF `from_dict`, reading configs saved before the stage prefix was refused: those kept
        the DeCo fork's `no-align+SPEC` as their projector (a training choice, dropped here)."""
        spec = config_dict.get("projector")
        if isinstance(spec, str) and "+" in spec:
            config_dict = {**config_dict, "projector": spec.rpartition("+")[2]}
        return super().from_dict(config_dict, **kwargs)

    @property
    def projector_spec(self) -> ProjectorSpec:
        """The projector spec, parsed (`projector` holds its canonical string)."""
        return _parse_projector(self.projector)

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) in pixels the vision encoder is configured for."""
        size = self.vision_config.image_size
        return (size, size) if isinstance(size, int) else tuple(size)

    @property
    def patch_grid(self) -> tuple[int, int]:
        patch = self.vision_config.patch_size
        ph, pw = (patch, patch) if isinstance(patch, int) else tuple(patch)
        h, w = self.image_size
        return h // ph, w // pw


def _parse_projector(spec: str | ProjectorSpec) -> ProjectorSpec:
    if isinstance(spec, str) and "+" in spec:
        # A `STAGE+SPEC` prefix (the DeCo fork's `no-align+`) chooses a training recipe; a model is
        # the same whichever recipe trained it, so its config takes the projector alone.
        stage, _, rest = spec.rpartition("+")
        raise UserError(
            f"projector {spec!r}: {stage + '+'!r} selects a training recipe, not a projector; the "
            f"model config takes the projector alone ({rest!r}), `decovlm train` takes the prefix"
        )
    return ProjectorSpec.parse(spec)
