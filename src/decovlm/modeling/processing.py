"""`DecoVLMProcessor`: image preprocessing (naive / pad / crop), the tokenizer, and the chat template.

Each `<image>` in the text becomes exactly M placeholder tokens, where M comes from the projector's
`num_output_tokens` for the vision tower's patch grid, so the model's merge never sees a count
mismatch for well-formed input.

The processor owns the prompt: it holds the chat template the model was trained with (saved as
`chat_template.jinja` by `save_pretrained`) and every caller (training, eval, serve, explain, chat,
predict) formats questions with `apply_chat_template` / `format_question` and tokenizes them with
`__call__`, which encodes text exactly as training does (`decovlm.chat_template`).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from PIL import Image
from transformers import BatchFeature, ProcessorMixin

from decovlm.chat_template import (
    CHAT_TEMPLATES,
    TextEncoder,
    resolve_chat_template,
    split_turns,
    template_name,
)

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
        chat_template: Jinja text or a built-in name (`vicuna_v1`, `plain`, `tokenizer`); defaults to
            the tokenizer's own template, or `vicuna_v1` for a tokenizer without one.
        chat_template_name: the template's name (saved in processor_config.json: once saved, the
            tokenizer reads the processor's `chat_template.jinja` too, so its own is not told apart).
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        num_image_tokens: int = 576,
        image_token: str = "<image>",
        image_resize_mode: str = "naive",
        chat_template: str | None = None,
        chat_template_name: str | None = None,
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
        if tokenizer is not None:
            given = chat_template
            chat_template = resolve_chat_template(given, tokenizer)
            if chat_template_name is None:
                chat_template_name = _name_of(given, chat_template, tokenizer)
        self.chat_template_name = chat_template_name
        super().__init__(image_processor, tokenizer, chat_template=chat_template)

    @classmethod
    def from_model(cls, model, image_processor, tokenizer, **kwargs: Any) -> DecoVLMProcessor:
        """A processor that matches `model` (its M, placeholder and resize mode).

        When the tokenizer lacks the placeholder it is added, at id len(tokenizer). An LLM whose
        embedding table is padded beyond its tokenizer (Qwen2: 151936 rows for ~151665 tokens)
        already has a row for that id, so the model is pointed at it; the row is never read
        (image features replace it), so which unused row it is does not matter.
        """
        added = model.config.image_token not in tokenizer.get_vocab()
        processor = cls(
            image_processor,
            tokenizer,
            num_image_tokens=model.num_image_tokens,
            image_token=model.config.image_token,
            image_resize_mode=model.config.image_resize_mode,
            **kwargs,
        )
        token_id = processor.image_token_id
        rows = model.get_input_embeddings().num_embeddings
        if token_id != model.config.image_token_id and added and token_id < rows:
            model.config.image_token_id = token_id
        if token_id != model.config.image_token_id:
            raise ValueError(
                f"the tokenizer gives '{processor.image_token}' id {token_id} but the model expects "
                f"image_token_id={model.config.image_token_id}; build the model with image_token_id={token_id}"
            )
        return processor

    @property
    def image_token_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids(self.image_token)

    # -- prompts --------------------------------------------------------------------------------
    def resolve_chat_template(self, chat_template: str | None = None) -> str:
        """Jinja for a name (`vicuna_v1`, `plain`, `tokenizer`) or Jinja; None / `auto`: the saved one."""
        return resolve_chat_template(chat_template, self.tokenizer, self.chat_template)

    def set_chat_template(self, chat_template: str) -> None:
        """Prompt with this template from now on (and save it): a built-in name or Jinja."""
        jinja = self.resolve_chat_template(chat_template)
        self.chat_template_name = _name_of(chat_template, jinja, self.tokenizer)
        self.chat_template = jinja

    def apply_chat_template(
        self,
        conversation: list[dict] | list[list[dict]],
        chat_template: str | None = None,
        add_generation_prompt: bool = False,
        tokenize: bool = False,
        images: Any = None,
        **kwargs: Any,
    ):
        """The conversation rendered with this processor's chat template (HF's convention).

        `chat_template` overrides it with a built-in name or Jinja. Returns the text, or with
        `tokenize=True` the model inputs for one conversation and its `images`, encoded turn by turn
        exactly as training encodes the same conversation (`split_turns`), so a multi-turn history
        gets the ids the model was trained on.
        """
        jinja = self.resolve_chat_template(chat_template)

        def render(messages: list[dict], generation_prompt: bool) -> str:
            return self.tokenizer.apply_chat_template(
                messages,
                chat_template=jinja,
                add_generation_prompt=generation_prompt,
                tokenize=False,
                **kwargs,
            )

        if not tokenize:
            return render(conversation, add_generation_prompt)
        encoder = self.text_encoder()
        ids = encoder.encode_prompt("")
        for text, _ in split_turns(render, conversation, add_generation_prompt):
            ids += encoder.encode_segment(text)
        return self._batch([ids], _as_list(images), "pt", True, None)

    def question_message(self, question: str, with_image: bool = True) -> dict:
        """A user message for a question (`<image>\\n` first when it is about the image, as in LLaVA's data)."""
        if not isinstance(question, str) or not question.strip():
            raise ValueError("the question must be a non-empty string")
        # The image goes where the template puts it (a tag inside the question would be a second
        # image), and the text is otherwise kept as written (benchmark prompts have line breaks);
        # this is the normalisation training records get (`data.records.parse_record`).
        question = question.replace(self.image_token, "").strip()
        content = f"{self.image_token}\n{question}" if with_image else question
        return {"role": "user", "content": content}

    def format_question(
        self, question: str, with_image: bool = True, chat_template: str | None = None
    ) -> str:
        """The prompt for one question (about one image when `with_image`), ready to generate."""
        return self.apply_chat_template(
            [self.question_message(question, with_image)],
            chat_template=chat_template,
            add_generation_prompt=True,
        )

    def text_encoder(self) -> TextEncoder:
        """The tokenization training uses (built per call: it must not be saved with the processor)."""
        return TextEncoder(
            self.tokenizer, self.image_token_id, self.num_image_tokens, self.image_token
        )

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
        if kwargs:
            raise TypeError(f"DecoVLMProcessor got unexpected arguments: {sorted(kwargs)}")
        encoder = self.text_encoder()
        rows = [encoder.encode_prompt(t, add_special_tokens) for t in texts]
        return self._batch(rows, _as_list(images), return_tensors, padding, padding_side)

    def _batch(self, rows, image_list, return_tensors, padding, padding_side) -> BatchFeature:
        """Token-id rows (padded, with attention masks) and the images their tags refer to."""
        n_tags = sum(r.count(self.image_token_id) for r in rows) // self.num_image_tokens
        if n_tags != len(image_list):
            raise ValueError(
                f"the text has {n_tags} '{self.image_token}' tag(s) but {len(image_list)} image(s) were given"
            )
        data = self._pad(rows, padding, padding_side, return_tensors)
        if image_list:
            data["pixel_values"] = self.preprocess_images(image_list)
        return BatchFeature(data=data, tensor_type=return_tensors)

    def _pad(self, rows: list[list[int]], padding, padding_side, return_tensors) -> dict:
        lengths = {len(r) for r in rows}
        if padding is False or padding == "do_not_pad" or len(lengths) == 1:
            masks = [[1] * len(r) for r in rows]
            if len(lengths) > 1 and return_tensors is not None:
                raise ValueError("texts of different lengths need padding=True for tensors")
            return {"input_ids": rows, "attention_mask": masks}
        tok = self.tokenizer
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        side = padding_side or getattr(tok, "padding_side", "right")
        width = max(lengths)
        ids, masks = [], []
        for r in rows:
            fill = width - len(r)
            if side == "left":
                ids.append([pad_id] * fill + r)
                masks.append([0] * fill + [1] * len(r))
            else:
                ids.append(r + [pad_id] * fill)
                masks.append([1] * len(r) + [0] * fill)
        return {"input_ids": ids, "attention_mask": masks}

    def batch_decode(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args: Any, **kwargs: Any) -> str:
        return self.tokenizer.decode(*args, **kwargs)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values"]


def _as_list(images) -> list:
    if images is None:
        return []
    return list(images) if isinstance(images, list | tuple) else [images]


def _name_of(given: str | None, jinja: str, tokenizer) -> str:
    """`vicuna_v1`, `plain`, `tokenizer` (the tokenizer's own) or `custom`."""
    if given in CHAT_TEMPLATES:
        return given
    return template_name(jinja, tokenizer)


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
