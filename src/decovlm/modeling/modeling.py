"""`DecoVLMForConditionalGeneration`: vision tower -> projector -> causal LLM, as a Hugging Face model.

The image placeholder tokens in `input_ids` (M per image, inserted by the processor) are replaced
by the projector's M output tokens before the LLM runs; everything else (KV cache, generation,
loss, gradient checkpointing, save/load) is the HF machinery of the wrapped models.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    GenerationMixin,
    PreTrainedModel,
)
from transformers.modeling_outputs import CausalLMOutputWithPast

from decovlm.modeling.configuration import DecoVLMConfig
from decovlm.modeling.kernels import kernel_kwargs
from decovlm.projectors import Projector, build_projector


class DecoVLMPreTrainedModel(PreTrainedModel):
    config_class = DecoVLMConfig
    config: DecoVLMConfig
    base_model_prefix = "model"  # there is no `.model`: the composite itself is the base model
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _skip_keys_device_placement = ["past_key_values"]
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    @classmethod
    def from_pretrained(cls, *args: Any, use_kernels: bool | None = None, **kwargs: Any):
        """HF `from_pretrained` with hub kernels off unless asked (see `decovlm.modeling.kernels`)."""
        return super().from_pretrained(*args, **kernel_kwargs(use_kernels), **kwargs)

    def _init_weights(self, module: nn.Module) -> None:
        # Vision tower and LLM initialise themselves (as sub-models); projectors keep the PyTorch
        # default / family-specific init of their constructors, as LLaVA and DeCo do.
        return


class DecoVLMForConditionalGeneration(DecoVLMPreTrainedModel, GenerationMixin):
    """A LLaVA-style MLLM whose projector is any projector of the zoo (DeCo: `avgpool2_144`)."""

    def __init__(
        self,
        config: DecoVLMConfig,
        vision_tower: PreTrainedModel | None = None,
        language_model: PreTrainedModel | None = None,
    ) -> None:
        super().__init__(config)
        if language_model is None:
            _hold_image_token(config)
        # Pre-built sub-models are passed by `from_components` (pretrained weights, no second copy).
        self.vision_tower = (
            vision_tower
            if vision_tower is not None
            else AutoModel.from_config(config.vision_config)
        )
        self.language_model = (
            language_model
            if language_model is not None
            else AutoModelForCausalLM.from_config(config.text_config)
        )
        self.projector: Projector = build_projector(
            config.projector_spec,
            vision_dim=config.vision_config.hidden_size,
            llm_dim=config.text_config.hidden_size,
            **config.projector_kwargs,
        )
        self.post_init()

    # -- building ----------------------------------------------------------------------------
    @classmethod
    def from_components(
        cls,
        vision: str | os.PathLike | PreTrainedModel,
        llm: str | os.PathLike | PreTrainedModel,
        projector: str = "avgpool2_144",
        projector_kwargs: dict[str, Any] | None = None,
        vision_feature_layer: int = -2,
        vision_feature_select: str = "patch",
        image_resize_mode: str = "naive",
        image_token_id: int | None = None,
        attn_implementation: str | None = None,
        dtype: torch.dtype | str | None = None,
        use_kernels: bool | None = None,
        **from_pretrained_kwargs: Any,
    ) -> DecoVLMForConditionalGeneration:
        """The start of a training run: a pretrained vision encoder and LLM, a fresh projector.

        `vision` and `llm` are hub names, local folders or already-built models, e.g.
        `from_components("openai/clip-vit-large-patch14-336", "lmsys/vicuna-7b-v1.5")`. For a
        CLIP/SigLIP checkpoint with both towers only the vision tower is loaded.
        `image_token_id` defaults to the LLM's vocabulary size (the id the processor gives `<image>`
        when it adds it to the tokenizer); the embedding matrix is resized to hold it.
        `use_kernels` (default: off, see `decovlm.modeling.kernels`) goes to both loads.
        """
        load_kwargs = dict(from_pretrained_kwargs)
        load_kwargs.update(kernel_kwargs(use_kernels))
        if attn_implementation is not None:
            load_kwargs["attn_implementation"] = attn_implementation
        if dtype is not None:
            load_kwargs["dtype"] = dtype
        vision_tower = (
            vision
            if isinstance(vision, PreTrainedModel)
            else load_vision_tower(vision, **load_kwargs)
        )
        language_model = (
            llm
            if isinstance(llm, PreTrainedModel)
            else _load(AutoModelForCausalLM, llm, "llm", **load_kwargs)
        )
        if image_token_id is None:
            image_token_id = language_model.get_input_embeddings().num_embeddings
        if image_token_id >= language_model.get_input_embeddings().num_embeddings:
            # The placeholder embedding is never read (it is overwritten by image tokens), but the
            # id must index the table.
            language_model.resize_token_embeddings(image_token_id + 1, mean_resizing=False)
        config = DecoVLMConfig(
            vision_config=vision_tower.config,
            text_config=language_model.config,
            projector=projector,
            projector_kwargs=dict(projector_kwargs or {}),
            vision_feature_layer=vision_feature_layer,
            vision_feature_select=vision_feature_select,
            image_resize_mode=image_resize_mode,
            image_token_id=image_token_id,
        )
        model = cls(config, vision_tower=vision_tower, language_model=language_model)
        param = next(language_model.parameters())
        return model.to(device=param.device, dtype=param.dtype)

    # -- sub-module access (HF conventions) ------------------------------------------------------
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_output_embeddings(value)

    def get_decoder(self) -> nn.Module:
        return self.language_model.get_decoder()

    @property
    def patch_grid(self) -> tuple[int, int]:
        return self.config.patch_grid

    @property
    def num_image_tokens(self) -> int:
        """M for an image at the configured resolution: what the processor expands `<image>` to."""
        return self.projector.num_output_tokens(*self.patch_grid)

    # -- the vision -> projector path ---------------------------------------------------------
    def encode_patches(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """ViT patch features (n_images, N, Dv) from `vision_feature_layer`, and their (h, w) grid."""
        patch = self.config.vision_config.patch_size
        ph, pw = (patch, patch) if isinstance(patch, int) else tuple(patch)
        grid = (pixel_values.shape[-2] // ph, pixel_values.shape[-1] // pw)
        vision_dtype = next(self.vision_tower.parameters()).dtype
        # A frozen tower (every stage of the recipe) needs no graph: saves the activations' memory.
        needs_grad = torch.is_grad_enabled() and any(
            p.requires_grad for p in self.vision_tower.parameters()
        )
        with torch.set_grad_enabled(needs_grad):
            # An int keeps only that layer's hidden state (transformers >= 5), as LLaVA does: the
            # other layers' activations are not held.
            out = self.vision_tower(
                pixel_values.to(vision_dtype),
                output_hidden_states=self.config.vision_feature_layer,
                return_dict=True,
            )
        features = out.hidden_states[self.config.vision_feature_layer]
        if self.config.vision_feature_select == "patch":
            # Prefix tokens (CLS, distillation) are whatever exceeds the patch grid: SigLIP has none.
            prefix = features.shape[1] - grid[0] * grid[1]
            if prefix < 0:
                raise ValueError(
                    f"vision tower returned {features.shape[1]} tokens for a {grid[0]}x{grid[1]} patch grid"
                )
            features = features[:, prefix:]
        return features, grid

    def project_patches(self, features: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """The projector's M tokens (n_images, M, Dl) for patch features on an (h, w) grid."""
        proj_dtype = next(self.projector.parameters(), features).dtype
        return self.projector(features.to(proj_dtype), grid=grid)

    def get_image_features(
        self, pixel_values: torch.Tensor | None = None, vision_features: torch.Tensor | None = None
    ) -> torch.Tensor:
        """LLM input tokens (n_images, M, Dl) for a batch of images, or for their patch features
        `vision_features` (n_images, N, Dv) as `encode_patches` returns them (a frozen tower's
        features computed once: `decovlm.data.features`)."""
        if vision_features is None:
            return self.project_patches(*self.encode_patches(pixel_values))
        grid = self.patch_grid
        if vision_features.shape[1] != grid[0] * grid[1]:
            raise ValueError(
                f"vision_features hold {vision_features.shape[1]} patches; this model's "
                f"{grid[0]}x{grid[1]} patch grid needs {grid[0] * grid[1]}"
            )
        return self.project_patches(vision_features, grid)

    def merge_image_tokens(
        self, input_ids: torch.Tensor, inputs_embeds: torch.Tensor, image_features: torch.Tensor
    ) -> torch.Tensor:
        """Write the image tokens into the placeholder positions of `inputs_embeds`."""
        mask = input_ids == self.config.image_token_id
        n_placeholders = int(mask.sum())
        n_images, m = image_features.shape[:2]
        if n_placeholders != n_images * m:
            raise ValueError(
                f"input_ids contain {n_placeholders} image placeholder tokens (id {self.config.image_token_id}) "
                f"but {n_images} image(s) x {m} tokens = {n_images * m} image tokens were produced; "
                f"the processor must expand each '{self.config.image_token}' to {m} tokens"
            )
        mask = mask.unsqueeze(-1).expand_as(inputs_embeds)
        return inputs_embeds.masked_scatter(mask, image_features.to(inputs_embeds.dtype))

    # -- generation ---------------------------------------------------------------------------
    def generate(self, *args: Any, **kwargs: Any):
        """HF `generate`, with the image placeholder never generated (it has no text meaning)."""
        suppress = list(kwargs.pop("suppress_tokens", None) or [])
        if self.config.image_token_id is not None and self.config.image_token_id not in suppress:
            suppress.append(self.config.image_token_id)
        return super().generate(*args, suppress_tokens=suppress, **kwargs)

    # -- forward ------------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        image_features: torch.Tensor | None = None,
        vision_features: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Run the LLM on text embeddings whose image placeholders hold the projector's tokens.

        `image_features` (n_images, M, Dl) may be given instead of `pixel_values` (e.g. to reuse
        projector outputs, or to take gradients with respect to them), and so may the frozen
        tower's `vision_features` (n_images, N, Dv), which the projector then turns into tokens.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
            if image_features is None and (pixel_values is not None or vision_features is not None):
                image_features = self.get_image_features(pixel_values, vision_features)
            if image_features is not None:
                inputs_embeds = self.merge_image_tokens(input_ids, inputs_embeds, image_features)
            elif bool((input_ids == self.config.image_token_id).any()):
                raise ValueError(
                    f"input_ids contain {int((input_ids == self.config.image_token_id).sum())} image "
                    "placeholder tokens but no pixel_values were given"
                )
        if past_key_values is not None:
            # Passed on only when given: newer transformers name the cache `cache` and warn when
            # both names arrive (generate() sends `cache` through **kwargs).
            kwargs["past_key_values"] = past_key_values
        return self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            labels=labels,
            **{**kwargs, "return_dict": True},
        )


def _hold_image_token(config: DecoVLMConfig) -> None:
    """Grow the text vocabulary of a config-built model to hold `image_token_id` (as
    `from_components` resizes a loaded LLM): e.g. `paper_config()` puts `<image>` at 32000, just
    past Vicuna's 32,000 rows, where it would index out of the embedding table."""
    image_token_id = config.image_token_id
    text = config.text_config
    if image_token_id is not None and image_token_id >= text.vocab_size:
        text.vocab_size = image_token_id + 1


def _load(
    auto_cls: Any, name_or_path: str | os.PathLike, what: str, **kwargs: Any
) -> PreTrainedModel:
    try:
        return auto_cls.from_pretrained(name_or_path, **kwargs)
    except OSError as err:
        raise OSError(f"could not load the {what} from {str(name_or_path)!r}: {err}") from err


def load_vision_tower(name_or_path: str | os.PathLike, **kwargs: Any) -> PreTrainedModel:
    """Load only the vision tower of a vision checkpoint (a CLIP/SigLIP checkpoint has two towers)."""
    try:
        config = AutoConfig.from_pretrained(name_or_path)
    except OSError as err:
        raise OSError(
            f"could not load the vision encoder config from {str(name_or_path)!r}: {err}"
        ) from err
    vision_config = getattr(config, "vision_config", None) or config
    model_cls = AutoModel._model_mapping[type(vision_config)]
    return _load(model_cls, name_or_path, "vision encoder", **kwargs)
