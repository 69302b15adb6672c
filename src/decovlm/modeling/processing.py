"""`DecoVLMProcessor`: image preprocessing (naive / pad / crop) plus the tokenizer, with `<image>` expansion.

Each `<image>` in the text becomes exactly M placeholder tokens, where M comes from the projector's
`num_output_tokens` for the vision tower's patch grid, so the model's merge never sees a count
mismatch for well-formed input.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from PIL import Image
from transformers import BatchFeature, ProcessorMixin

RESIZE_MODES = ("naive", "pad", "crop")


class DecoVLMProcessor(ProcessorMixin):
    """The vision model's image processor plus the LLM's tokenizer.

    Args:
        image_processor: e.g. a `CLIPImageProcessor` (supplies the resolution and normalisation).
        tokenizer: the LLM's tokenizer; `image_token` is added to it as a special token if missing.
        num_image_tokens: M, tokens per image (`model.num_image_tokens`).
        image_token: the placeholder string in prompts.
        image_resize_mode: `naive` (stretch to the square input; DeCo), `pad` (pad to square with the
            mean colour, LLaVA-1.5), `crop` (the image processor's own resize + centre crop).
        chat_template: Jinja template; defaults to the tokenizer's.
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        num_image_tokens: int = 576,
        image_token: str = "<image>",
        image_resize_mode: str = "naive",
        chat_template: str | None = None,
        **kwargs: Any,
    ) -> None:
        if image_resize_mode not in RESIZE_MODES:
            raise ValueError(
                f"image_resize_mode must be one of {RESIZE_MODES}, got {image_resize_mode!r}"
            )
        if int(num_image_tokens) <= 0:
            raise ValueError(f"num_image_tokens must be positive, got {num_image_tokens}")
        self.num_image_tokens = int(num_image_tokens)
        self.image_token = image_token
        self.image_resize_mode = image_resize_mode
        if tokenizer is not None and image_token not in tokenizer.get_vocab():
            tokenizer.add_special_tokens({"additional_special_tokens": [image_token]})
        if chat_template is None and tokenizer is not None:
            chat_template = getattr(tokenizer, "chat_template", None)
        super().__init__(image_processor, tokenizer, chat_template=chat_template)

    @classmethod
    def from_model(cls, model, image_processor, tokenizer, **kwargs: Any) -> DecoVLMProcessor:
        """A processor that matches `model` (its M, placeholder and resize mode)."""
        processor = cls(
            image_processor,
            tokenizer,
            num_image_tokens=model.num_image_tokens,
            image_token=model.config.image_token,
            image_resize_mode=model.config.image_resize_mode,
            **kwargs,
        )
        token_id = processor.image_token_id
        if token_id != model.config.image_token_id:
            raise ValueError(
                f"the tokenizer gives '{processor.image_token}' id {token_id} but the model expects "
                f"image_token_id={model.config.image_token_id}; build the model with image_token_id={token_id}"
            )
        return processor

    @property
    def image_token_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids(self.image_token)

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) the images are resized to: the crop size when there is one, else the size."""
        ip = self.image_processor
        for size in (getattr(ip, "crop_size", None), getattr(ip, "size", None)):
            hw = _size_hw(size)
            if hw is not None:
                return hw
        raise ValueError(f"cannot tell the input resolution of {type(ip).__name__}")

    # -- text -----------------------------------------------------------------------------------
    def expand_image_tokens(self, text: str) -> str:
        """Each `<image>` becomes M copies of the placeholder token."""
        return text.replace(self.image_token, self.image_token * self.num_image_tokens)

    # -- images ---------------------------------------------------------------------------------
    def _resize(self, image: Image.Image) -> Image.Image:
        h, w = self.image_size
        if self.image_resize_mode == "pad":
            image = pad_to_square(image, self.image_processor.image_mean)
        return image.resize((w, h), Image.BICUBIC)

    def preprocess_images(self, images: list[Image.Image]) -> torch.Tensor:
        """(n, 3, H, W) float tensor in the vision tower's normalisation."""
        if not images:
            raise ValueError("preprocess_images got no images")
        images = [load_image(img) for img in images]
        if self.image_resize_mode == "crop":
            out = self.image_processor(images, return_tensors="pt")
        else:
            out = self.image_processor(
                [self._resize(img) for img in images],
                do_resize=False,
                do_center_crop=False,
                return_tensors="pt",
            )
        return out["pixel_values"]

    # -- both -----------------------------------------------------------------------------------
    def __call__(
        self,
        text: str | list[str] | None = None,
        images: Image.Image | list[Image.Image] | None = None,
        return_tensors: str | None = "pt",
        padding: bool | str = True,
        padding_side: str | None = None,
        add_special_tokens: bool = True,
        **kwargs: Any,
    ) -> BatchFeature:
        """Tokenize prompts (expanding `<image>`) and preprocess the images they refer to, in order."""
        if text is None:
            raise ValueError("DecoVLMProcessor needs text; put an '<image>' where each image goes")
        texts = [text] if isinstance(text, str) else list(text)
        image_list = (
            []
            if images is None
            else ([images] if not isinstance(images, list | tuple) else list(images))
        )
        n_tags = sum(t.count(self.image_token) for t in texts)
        if n_tags != len(image_list):
            raise ValueError(
                f"the text has {n_tags} '{self.image_token}' tag(s) but {len(image_list)} image(s) were given"
            )
        encoded = self.tokenizer(
            [self.expand_image_tokens(t) for t in texts],
            return_tensors=return_tensors,
            padding=padding,
            padding_side=padding_side,
            add_special_tokens=add_special_tokens,
            **kwargs,
        )
        data = dict(encoded)
        if image_list:
            data["pixel_values"] = self.preprocess_images(image_list)
        return BatchFeature(data=data, tensor_type=return_tensors)

    def batch_decode(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args: Any, **kwargs: Any) -> str:
        return self.tokenizer.decode(*args, **kwargs)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values"]


def _size_hw(size: Any) -> tuple[int, int] | None:
    """(h, w) from an int, a dict or transformers' SizeDict ({height, width} or {shortest_edge})."""
    if size is None:
        return None
    if isinstance(size, int):
        return size, size
    get = size.get if isinstance(size, dict) else (lambda key: getattr(size, key, None))
    if get("height") and get("width"):
        return int(get("height")), int(get("width"))
    if get("shortest_edge"):
        return int(get("shortest_edge")), int(get("shortest_edge"))
    return None


def load_image(image: Image.Image | str | os.PathLike) -> Image.Image:
    """An RGB PIL image from a PIL image or a path, with an error naming the file if it cannot be read."""
    from decovlm.utils.images import load_image as _load  # the shared loader (pixel limit)

    return _load(image)


def pad_to_square(image: Image.Image, mean: list[float] | tuple[float, ...]) -> Image.Image:
    """LLaVA-1.5's `pad` mode: centre the image on a square canvas of the normalisation mean colour."""
    w, h = image.size
    if w == h:
        return image
    side = max(w, h)
    colour = tuple(int(round(c * 255)) for c in mean)
    canvas = Image.new("RGB", (side, side), colour)
    canvas.paste(image, ((side - w) // 2, (side - h) // 2))
    return canvas
