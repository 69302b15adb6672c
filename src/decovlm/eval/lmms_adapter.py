"""A decovlm model as an lmms-eval "simple" model (`--model decovlm --model_args pretrained=PATH`).

Requests come as lmms-eval `Instance`s:
- generate_until: args (context, gen_kwargs, doc_to_visual, doc_id, task, split); answered
  greedily with `decovlm.eval.generate` (batch size from model_args; 1 for reported numbers),
  cut at the first `until` string.
- loglikelihood (also used by multiple_choice tasks): args (context, continuation or
  doc_to_target, doc_to_visual, doc_id, task, split); returns (sum log p(continuation), is_greedy).
The prompt is the task's context with any `<image>` removed; the processor puts `<image>\\n` in
front and wraps it in the chat template saved with the model, as in training. One image per request (the first).

model_args: pretrained (folder of a saved model), device (auto), dtype (auto), batch_size (1),
max_new_tokens (128, when the task gives none), chat_template (auto = as saved with the model | vicuna_v1 | plain | tokenizer).
"""

from __future__ import annotations

from pathlib import Path

import torch
from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from loguru import logger
from PIL import Image
from tqdm.auto import tqdm

from decovlm.eval.generate import generate_answers


def _first_image(visuals) -> Image.Image | None:
    if visuals is None:
        return None
    if isinstance(visuals, Image.Image):
        return visuals.convert("RGB")
    flat = [
        v for v in (visuals if isinstance(visuals, list | tuple) else [visuals]) if v is not None
    ]
    images = [v for v in flat if isinstance(v, Image.Image)]
    if len(images) != len(flat):
        raise ValueError("decovlm handles images only (PIL); this task gives video or audio inputs")
    if len(images) > 1:
        logger.warning(f"decovlm uses one image per question; {len(images) - 1} more ignored")
    return images[0].convert("RGB") if images else None


def _evaluator_safe(pairs: list[tuple[float, bool]]) -> list:
    """Loglikelihood results in a form the installed evaluator passes through unchanged.

    lmms-eval 0.7.3's evaluator runs every response through `unwrap_generation_output`, which
    turns a `(logprob, is_greedy)` tuple into its string, so `multiple_choice` scoring fails with
    "too many values to unpack" for any model. A `GenerationResult` is unwrapped to its `.text`
    as is, so the tuple travels inside one; versions without the problem get plain tuples.
    """
    try:
        from lmms_eval.api.instance import GenerationResult, unwrap_generation_output
    except ImportError:
        return pairs
    if unwrap_generation_output((0.0, True))[0] == (0.0, True):
        return pairs
    return [GenerationResult(text=pair) for pair in pairs]


def _cut(text: str, until: list[str]) -> str:
    for stop in until:
        if stop and stop in text:
            text = text.split(stop)[0]
    return text.strip()


class DecoVLMLMM(lmms):
    """lmms-eval adapter around `DecoVLMForConditionalGeneration` + `DecoVLMProcessor`."""

    is_simple = True

    def __init__(
        self,
        pretrained: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int | str = 1,
        max_new_tokens: int | str = 128,
        chat_template: str = "auto",
        model=None,
        processor=None,
        **kwargs,
    ) -> None:
        super().__init__()
        if kwargs:
            logger.warning(f"decovlm ignores unknown model_args: {sorted(kwargs)}")
        if model is None:
            if not pretrained:
                raise ValueError(
                    "decovlm needs model_args pretrained=<folder of a saved decovlm model>"
                )
            from decovlm.modeling.loading import load_model

            model, processor = load_model(Path(pretrained), device, dtype)
        if processor is None:
            raise ValueError("decovlm: a model was given without its processor")
        self.model, self.processor = model.eval(), processor
        self.batch_size_per_gpu = int(batch_size)
        self.max_new_tokens = int(max_new_tokens)
        self.chat_template = chat_template

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    def _doc(self, task: str, split: str, doc_id: int):
        return self.task_dict[task][split][doc_id]

    @staticmethod
    def _question(context) -> str:
        context = context[0] if isinstance(context, list) else context
        return str(context).replace("<image>", "").strip()

    # -- generation -------------------------------------------------------------------------------
    def generate_until(self, requests: list[Instance]) -> list[str]:
        results: list[str | None] = [None] * len(requests)
        # Consecutive requests with the same generation settings form a batch.
        pending: list[tuple[int, Image.Image | None, str]] = []
        pending_key = None
        bar = tqdm(total=len(requests), disable=self.rank != 0, desc="decovlm generate")

        def flush() -> None:
            if not pending:
                return
            max_new, until = pending_key
            batch = [(img, q) for _, img, q in pending]
            answers = generate_answers(
                self.model, self.processor, batch, max_new, self.chat_template
            )
            for (i, _, _), answer in zip(pending, answers):
                results[i] = _cut(answer, list(until))
            bar.update(len(pending))
            pending.clear()

        for i, req in enumerate(requests):
            context, gen_kwargs, doc_to_visual, doc_id, task, split = req.args
            gen_kwargs = dict(gen_kwargs or {})
            until = gen_kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            if float(gen_kwargs.get("temperature", 0) or 0) > 0 or gen_kwargs.get("do_sample"):
                logger.warning(
                    "decovlm decodes greedily; temperature / do_sample in gen_kwargs are ignored"
                )
            key = (int(gen_kwargs.get("max_new_tokens") or self.max_new_tokens), tuple(until))
            if key != pending_key or len(pending) >= self.batch_size:
                flush()
                pending_key = key
            image = _first_image(doc_to_visual(self._doc(task, split, doc_id)))
            pending.append((i, image, self._question(context)))
        flush()
        bar.close()
        return [r if r is not None else "" for r in results]

    def generate_until_multi_round(self, requests) -> list[str]:
        # Multi-round tasks feed each answer back into the next prompt; none of DeCo's benchmarks
        # needs that, so the adapter refuses them clearly instead of answering them wrongly.
        raise ValueError(
            "the decovlm lmms-eval adapter runs single-round tasks only (generate_until and "
            "loglikelihood); multi-round tasks are not supported"
        )

    # -- likelihood -------------------------------------------------------------------------------
    @torch.inference_mode()
    def _continuation_logprob(
        self, image: Image.Image | None, question: str, continuation: str
    ) -> tuple[float, bool]:
        prompt = self.processor.format_question(question, image is not None, self.chat_template)
        images = [image] if image is not None else None
        ctx = self.processor(text=[prompt], images=images, return_tensors="pt")
        full = self.processor(text=[prompt + continuation], images=images, return_tensors="pt")
        ctx_ids, full_ids = ctx["input_ids"][0], full["input_ids"][0]
        n = len(ctx_ids)
        if len(full_ids) > n and torch.equal(full_ids[:n], ctx_ids):
            cont_ids = full_ids[n:]
        else:  # the join changed the tokenization of the context's end: tokenize the continuation alone
            cont_ids = self.tokenizer(continuation, add_special_tokens=False, return_tensors="pt")[
                "input_ids"
            ][0]
        if len(cont_ids) == 0:
            return 0.0, True
        input_ids = torch.cat([ctx_ids, cont_ids]).unsqueeze(0).to(self.device)
        kwargs = {}
        if "pixel_values" in ctx:
            kwargs["pixel_values"] = ctx["pixel_values"].to(
                self.device, next(self.model.parameters()).dtype
            )
        logits = self.model(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kwargs
        ).logits
        # Position t predicts token t + 1: the continuation's tokens are predicted from n - 1 on.
        cont_logits = logits[0, n - 1 : n - 1 + len(cont_ids)].float().log_softmax(-1)
        targets = cont_ids.to(cont_logits.device)
        logprob = cont_logits.gather(-1, targets[:, None]).sum().item()
        greedy = bool((cont_logits.argmax(-1) == targets).all())
        return logprob, greedy

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        out = []
        for req in tqdm(requests, disable=self.rank != 0, desc="decovlm loglikelihood"):
            context, target, doc_to_visual, doc_id, task, split = req.args
            doc = self._doc(task, split, doc_id)
            continuation = target if isinstance(target, str) else str(target(doc))
            image = _first_image(doc_to_visual(doc))
            out.append(self._continuation_logprob(image, self._question(context), continuation))
        return _evaluator_safe(out)
