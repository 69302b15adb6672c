"""One served model: load it, format the question, stream a greedy answer and explain it.

`Explorer` wraps a (model, processor) pair with a lock (generation and R-GAE switch the model's
attention implementation, so two requests must not use one model at the same time). The answer
is streamed with transformers' `TextIteratorStreamer` while `generate` runs in a thread; the
exact generated ids are then teacher-forced through `decovlm.interpret.explain`, so the maps
belong to the answer that was shown, token for token.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from decovlm.chat_template import TEMPLATE_CHOICES  # auto: the template saved with the model

MAX_QUESTION_CHARS = 2000


@dataclass
class Explorer:
    """A model being served, with how to prompt it and how much to generate."""

    name: str
    model: object
    processor: object
    template: str = "auto"
    max_new_tokens: int = 32
    start_layer: int = 0
    end_layer: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.template not in TEMPLATE_CHOICES:
            raise ValueError(f"template must be one of {TEMPLATE_CHOICES}, got {self.template!r}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")

    @property
    def projector(self) -> str:
        return str(self.model.config.projector)

    @property
    def title(self) -> str:
        return f"{self.name} ({self.projector})"

    def format_prompt(self, question: str) -> str:
        """The chat prompt for one question about one image, formatted by the processor.

        The same prompt training, eval and explain use (the template saved with the model unless
        `template` names another), so served answers match scored answers.
        """
        if not isinstance(question, str) or not question.strip():
            raise ValueError("type a question first")
        if len(question) > MAX_QUESTION_CHARS:
            raise ValueError(
                f"the question is too long ({len(question)} characters, at most {MAX_QUESTION_CHARS})"
            )
        return self.processor.format_question(question, chat_template=self.template)

    def stream_answer(self, image: Image.Image, prompt: str) -> Iterator[str | list[int]]:
        """Yield the growing answer text; the last item is the list of generated token ids.

        Must be called with `self.lock` held (as `decovlm.serve.handlers.ask` does).
        """
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        from decovlm.eval.generate import greedy_ids

        processor = self.processor
        batch = processor(text=[prompt], images=[image], return_tensors="pt")
        streamer = TextIteratorStreamer(
            processor.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600
        )
        stop = threading.Event()
        result: dict = {}

        def work() -> None:
            try:
                (result["ids"],) = greedy_ids(
                    self.model, processor.tokenizer, batch, self.max_new_tokens,
                    streamer=streamer, stopping_criteria=StoppingCriteriaList([_StopWhenSet(stop)]),
                )  # fmt: skip
            except BaseException as err:  # re-raised in the caller's thread below
                result["error"] = err
                streamer.end()

        thread = threading.Thread(target=work, name=f"generate-{self.name}", daemon=True)
        thread.start()
        text = ""
        try:
            for piece in streamer:
                text += piece
                if piece:
                    yield text
        finally:
            # Also when the page goes away mid-answer (the generator is closed): stop generating
            # and wait, so the model is free before the caller releases its lock.
            stop.set()
            thread.join()
        if "error" in result:
            raise result["error"]
        yield result["ids"]

    def explain(self, image: Image.Image, prompt: str, answer_ids: list[int]):
        """The one place that calls the relevance code (decovlm.interpret.explain)."""
        from decovlm.interpret.explain import explain

        return explain(
            self.model,
            self.processor,
            image,
            prompt,
            answer=list(answer_ids),
            start_layer=self.start_layer,
            end_layer=self.end_layer,
        )

    def model_view(self, image: Image.Image) -> Image.Image:
        """The image as the model saw it (resize mode and resolution), for overlays."""
        from decovlm.interpret.draw import model_view

        return model_view(self.processor, image)


class _StopWhenSet:
    """A generate() stopping criterion that ends every sequence once `event` is set."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        return torch.full(
            (input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device
        )


def load_explorer(
    path: str | os.PathLike,
    device: str | None = None,
    dtype: str | None = None,
    name: str | None = None,
    allow_missing_weights: bool | None = None,
    **kwargs,
) -> Explorer:
    """An `Explorer` for a saved model folder (model + processor, as `save_pretrained` writes them)."""
    from decovlm.modeling.loading import load_model

    path = Path(path)
    model, processor = load_model(path, device, dtype, allow_missing_weights=allow_missing_weights)
    return Explorer(name=name or path.resolve().name, model=model, processor=processor, **kwargs)
