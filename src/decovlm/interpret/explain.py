"""R-GAE for a decovlm model: Text-to-Query, Query-to-Patch and Text-to-Patch maps of an answer.

`explain(model, processor, image, prompt)`:
1. generates the answer greedily (unless one is given);
2. runs **one** teacher-forced pass over [prompt + answer] with eager attention in the LLM (no
   KV-cache row stitching: by causality, row p of the teacher-forced relevance is exactly what GAE
   gives at the step that produced token p + 1);
3. for every answer token t, takes the logit of that token at the position that predicts it
   (t - 1: the logit at position p predicts token p + 1) and gets the gradients of it w.r.t. every
   LLM attention map (and the projector's, or its output tokens) with `torch.autograd.grad`,
   one call per token (CPU default) or all tokens in one batched call (`is_grads_batched`, CUDA default);
4. Text-to-Query: GAE rule 6 over the LLM layers [start_layer, end_layer) with R = I, read at the
   predicting row and the image-token columns (`gae.propagate_row` computes only that row);
   Query-to-Patch: see `decovlm.interpret.query_to_patch`; Text-to-Patch = the product.

The ViT is frozen and not explained (the maps stop at its output patches, as in DeCo). The pass
builds its own graph from the patch features (made to require grad), so it works when every
parameter has `requires_grad=False`; nothing accumulates in `.grad`.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from PIL import Image

from decovlm.interpret.explanation import VANISHED_MASS, Explanation, MethodMaps
from decovlm.interpret.gae import avg_heads, propagate_row
from decovlm.interpret.query_to_patch import (
    attention_query_to_patch,
    fixed_query_to_patch,
    gae_absolute_query_to_patch,
    gae_query_to_patch,
    gradient_query_to_patch_raw,
    normalise_with_mass,
    supports_gae,
)
from decovlm.interpret.words import group_words, merge_words, token_spans

# Query-to-Patch methods `explain` can add beside the projector's own (see `query_to_patch`).
EXTRA_METHODS = ("attention", "grad-x-input")


@contextmanager
def explain_mode(model):
    """Eval mode, eager attention in the LLM and attention recording in the projector; all restored."""
    lm = model.language_model
    was_training = model.training
    previous = lm.config._attn_implementation
    projector = model.projector
    had_flag = hasattr(projector, "save_attentions")
    saved = getattr(projector, "save_attentions", None)
    # Attention over the learned queries alone (the Q-Former's first self-attention) depends on no
    # input, so with frozen parameters it would not be in the graph; its GAE gradient is still
    # needed. Projector parameters require grad for the pass (autograd.grad fills no .grad).
    frozen = [p for p in projector.parameters() if not p.requires_grad] if had_flag else []
    for p in frozen:
        p.requires_grad_(True)
    model.eval()
    if previous != "eager":
        lm.set_attn_implementation("eager")
    if had_flag:
        projector.save_attentions = True
    try:
        yield
    finally:
        if previous is None:  # never set (a model built from a bare config): put it back as it was
            lm.config._attn_implementation_internal = None
        elif previous != "eager":
            lm.set_attn_implementation(previous)
        if had_flag:
            projector.save_attentions = saved
            projector.attention_maps = []
        for p in frozen:
            p.requires_grad_(False)
        model.train(was_training)


def read_image(image) -> Image.Image:
    """An RGB image from a PIL image or a path (the shared loader: pixel limit, named errors)."""
    from decovlm.utils.images import load_image

    return load_image(image)


def build_prompt(
    processor, prompt: str, chat_template: str | None = None, raw: bool = False
) -> str:
    """The prompt text explained: the question in the model's chat template (the processor's).

    A prompt that already holds the image tag is used as written (it was formatted by the caller);
    `raw=True` uses the question as written with "<image>\n" in front (no chat template).
    `chat_template` overrides the saved template (a name or Jinja; None: the saved one).
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("prompt must be a non-empty string")
    tag = processor.image_token
    if prompt.count(tag) > 1:
        raise ValueError(f"prompt has {prompt.count(tag)} '{tag}' tags; explain takes one image")
    if tag in prompt:
        return prompt
    if raw:
        return f"{tag}\n{prompt}"
    return processor.format_question(prompt, chat_template=chat_template)


def teacher_forced_pass(model, pixel_values: torch.Tensor, ids: torch.Tensor):
    """(patch features, grid, projector tokens, LLM output with attentions) of [prompt + answer].

    Through the model's own steps (`encode_patches`, `project_patches`, `forward` with the image
    tokens given), so the logits explained are the logits the model computes. The patch features
    are a leaf that requires grad: the graph exists even when every parameter is frozen.
    """
    with torch.no_grad():
        features, grid = model.encode_patches(pixel_values)
    if features.shape[1] != grid[0] * grid[1]:
        raise ValueError(
            f"the vision tower gives {features.shape[1]} tokens for a {grid[0]}x{grid[1]} patch "
            "grid; relevance maps need vision_feature_select='patch' (prefix tokens dropped)"
        )
    features = features.detach().requires_grad_(True)
    tokens = model.project_patches(features, grid)
    out = model(input_ids=ids, image_features=tokens, output_attentions=True, use_cache=False)
    if out.attentions is None or any(a is None for a in out.attentions):
        raise RuntimeError("the LLM returned no attention weights; it must support eager attention")
    return features, grid, tokens, out


def _resolve_layers(n_layers: int, start_layer: int, end_layer: int | None) -> tuple[int, int]:
    end = n_layers if end_layer is None else end_layer
    start = start_layer + n_layers if start_layer < 0 else start_layer
    end = end + n_layers if end < 0 else end
    if not 0 <= start < end <= n_layers:
        raise ValueError(
            f"start_layer={start_layer}, end_layer={end_layer} do not give a layer range within the "
            f"LLM's {n_layers} layers"
        )
    return start, end


def _gradients(targets, index: list[int], inputs, batched: bool) -> list[torch.Tensor]:
    """d targets[t] / d inputs[i] for t in `index`, as (len(index), *input.shape) per input."""
    if batched:
        select = torch.eye(targets.shape[0], device=targets.device, dtype=targets.dtype)[index]
        grads = torch.autograd.grad(
            targets,
            inputs,
            grad_outputs=select,
            retain_graph=True,
            is_grads_batched=True,
            allow_unused=True,
        )
    else:
        (t,) = index
        grads = torch.autograd.grad(targets[t], inputs, retain_graph=True, allow_unused=True)
        grads = [g if g is None else g[None] for g in grads]
    # An input the logits do not depend on (e.g. a layer after every predicting position) gets 0.
    return [
        x.new_zeros((len(index), *x.shape)) if g is None else g
        for g, x in zip(grads, inputs, strict=True)
    ]


def explain(
    model,
    processor,
    image,
    prompt: str,
    answer: str | list[int] | None = None,
    start_layer: int = 0,
    end_layer: int | None = None,
    max_new_tokens: int = 32,
    batched: bool | None = None,
    chunk: int | None = None,
    chat_template: str | None = None,
    raw_prompt: bool = False,
    extra_methods: tuple[str, ...] | list[str] | str = (),
    vanish_tol: float | None = VANISHED_MASS,
) -> Explanation:
    """Relevance maps of every token and word of the answer to `prompt` about `image`.

    `prompt` is the question: it is formatted with the model's chat template by the processor, as
    in training (see `build_prompt`; a prompt holding the image tag is used as written).
    `answer` (a string, or token ids) is teacher-forced as given; None generates it greedily.
    `start_layer` / `end_layer` select the LLM layers [start, end) that relevance is propagated
    through. `batched=True` computes the tokens' gradients in one vectorised backward
    (`is_grads_batched`, `chunk` tokens at a time if set). None picks by device: batched on CUDA
    (3.3x faster on an H200 at 576 visual tokens), one backward per token elsewhere (as fast or
    faster and 1/3 of the memory on CPU; benchmarks/RESULTS.md).
    `extra_methods` adds other Query-to-Patch methods beside the projector's own, composed with the
    same Text-to-Query: "attention" (rollout of the raw attention, projectors that record it) and
    "grad-x-input" (any learned projector); "all" = every one that applies. A projector whose own
    method is GAE always gets "attention" too: its GAE maps are checked against it
    (`Explanation.unreliable`, `decovlm.interpret.reliability`). `vanish_tol` (optional) also
    flags a word whose Query-to-Patch mass (Text-to-Query-weighted row sums before normalising)
    is below it.
    """
    extras = _check_methods(extra_methods)
    if vanish_tol is not None and not vanish_tol >= 0:
        raise ValueError(f"vanish_tol must be a non-negative number, got {vanish_tol!r}")
    pil = read_image(image)
    text = build_prompt(processor, prompt, chat_template, raw_prompt)
    device = next(model.parameters()).device
    if batched is None:
        batched = device.type == "cuda"
    batch = processor(text=[text], images=[pil], return_tensors="pt")
    batch = {k: v.to(device) for k, v in batch.items()}
    tok = processor.tokenizer
    if answer is None:
        from decovlm.eval.generate import greedy_ids

        (answer_ids,) = greedy_ids(model, tok, batch, max_new_tokens)
        if not answer_ids:
            raise ValueError(
                "the model generated an empty answer; pass answer=... to explain a given one"
            )
    elif isinstance(answer, list | tuple):
        answer_ids = [int(i) for i in answer]
        if not answer_ids:
            raise ValueError("answer token ids are empty")
    else:
        if not isinstance(answer, str) or not answer.strip():
            raise ValueError("answer must be a non-empty string (or None to generate it)")
        answer_ids = tok(answer, add_special_tokens=False)["input_ids"]
        if not answer_ids:
            raise ValueError(f"answer {answer!r} tokenizes to no tokens")
    prompt_ids = batch["input_ids"][0]
    n_prompt = prompt_ids.shape[0]
    ids = torch.cat([prompt_ids, torch.tensor(answer_ids, device=device)])[None]
    image_pos = (ids[0] == model.config.image_token_id).nonzero()[:, 0]
    t_count = len(answer_ids)
    n_layers = model.language_model.config.num_hidden_layers
    start, end = _resolve_layers(n_layers, start_layer, end_layer)

    with explain_mode(model), torch.enable_grad():
        features, grid, tokens, out = teacher_forced_pass(model, batch["pixel_values"], ids)
        n_patches = grid[0] * grid[1]
        attentions = list(out.attentions[start:end])
        positions = torch.arange(n_prompt - 1, n_prompt - 1 + t_count, device=device)
        targets = out.logits[0, positions, torch.tensor(answer_ids, device=device)].float()

        raw_mapping = fixed_query_to_patch(model.projector, grid, normalise=False)
        method = "fixed"
        extra: list[torch.Tensor] = []
        maps = []
        has_attention = supports_gae(model.projector, n_patches)
        if raw_mapping is None and has_attention:
            method, maps = "gae", list(model.projector.attention_maps)
            extra = [m["probs"] for m in maps]
        elif raw_mapping is None:
            method = "grad-x-input"
        # "all" asks for every extra method that applies; a named one that cannot apply is an error.
        extras = _applicable(extras, method, has_attention, explicit=extra_methods != "all")
        if method == "gae" and "attention" not in extras:  # GAE is shown and checked beside it
            extras = ("attention", *extras)
        want_tokens = method == "grad-x-input" or "grad-x-input" in extras
        if want_tokens:
            extra = [*extra, tokens]
        rows = torch.nn.functional.one_hot(positions, ids.shape[1]).float()
        # Tokens are explained `step` at a time, and each chunk's gradients are reduced to maps at
        # once, so memory holds one chunk's attention gradients, not the whole answer's.
        step = (chunk or t_count) if batched else 1
        t2q_parts, q2p_parts, abs_parts, token_grad = [], [], [], 0
        for s in range(0, t_count, step):
            index = list(range(s, min(s + step, t_count)))
            grads = _gradients(targets, index, attentions + extra, batched)
            # The maps are made from the attention tensors, which are in the graph: without
            # no_grad each token's products would be recorded (and kept) for a backward never run.
            with torch.no_grad():
                # Text-to-Query: row (position predicting t) of R = prod_l (I + A_l), image columns.
                cams = []
                for i, a in enumerate(attentions):
                    cams.append(avg_heads(a[0].expand_as(grads[i][:, 0]), grads[i][:, 0]))
                    grads[i] = None  # free each layer's gradient once reduced
                t2q_parts.append(propagate_row(cams, rows[index])[:, image_pos])
                del cams
                if method == "gae":
                    q2p_parts.append(
                        gae_query_to_patch(
                            maps, grads[len(attentions) : len(attentions) + len(maps)], n_patches,
                            normalise=False,
                        )
                    )  # fmt: skip
                    abs_parts.append(
                        gae_absolute_query_to_patch(
                            maps, grads[len(attentions) : len(attentions) + len(maps)], n_patches
                        )
                    )
                if want_tokens:
                    token_grad = token_grad + grads[-1].sum(0, keepdim=True)
            del grads
        text_to_query = torch.cat(t2q_parts)  # (T, M)
        raws: dict[str, torch.Tensor] = {}
        absolute: dict[str, torch.Tensor] = {}  # |signed| raw Query-to-Patch (reliability)
        if want_tokens:
            # One (M, N) matrix for the whole answer (weighted by the summed answer-logit gradient):
            # it costs M backward passes through the projector, T times that per token would
            # dominate the run (135 s instead of ~14 s for a 10-word answer at 576 patches).
            signed = gradient_query_to_patch_raw(features, tokens, token_grad, signed=True)[0]
            raws["grad-x-input"] = signed.clamp(min=0)
            absolute["grad-x-input"] = signed.abs().detach().cpu()
        if "attention" in extras:
            raws["attention"] = attention_query_to_patch(model.projector.attention_maps, n_patches)
        if method == "fixed":
            raws["fixed"] = raw_mapping.to(device)
        elif method == "gae":
            raws["gae"] = torch.cat(q2p_parts)  # (T, M, N)
            absolute["gae"] = torch.cat(abs_parts).detach().cpu()
        composed = {
            name: _compose(text_to_query, raws[name].to(device), grid) for name in [method, *extras]
        }
        del out, attentions, extra, maps, raws

    answer_text, spans = token_spans(tok, answer_ids)
    words = group_words(answer_text, spans)
    text_to_query = text_to_query.detach().cpu()
    maps_by_method = {
        name: MethodMaps.build(
            name, *parts, text_to_query=text_to_query, words=words, absolute=absolute.get(name)
        )
        for name, parts in composed.items()
    }
    primary = maps_by_method.pop(method)
    query_to_patch, text_to_patch = primary.query_to_patch, primary.text_to_patch
    out_grid = model.projector.output_grid(*grid)
    return Explanation(
        prompt=text,
        answer=answer_text,
        tokens=tok.convert_ids_to_tokens(answer_ids),
        token_ids=list(answer_ids),
        words=words,
        projector=model.config.projector,
        method=method,
        patch_grid=tuple(grid),
        query_grid=tuple(out_grid) if out_grid is not None else None,
        layers=(start, end),
        text_to_query=text_to_query,
        query_to_patch=query_to_patch,
        text_to_patch=text_to_patch,
        word_text_to_query=merge_words(text_to_query, words),
        word_query_to_patch=merge_words(query_to_patch, words)
        if query_to_patch.dim() == 3
        else None,
        word_text_to_patch=merge_words(text_to_patch, words),
        query_to_patch_mass=primary.mass,
        word_q2p_mass=primary.word_mass,
        word_positive_map=primary.word_positive,
        word_absolute_map=primary.word_absolute,
        query_to_patch_absolute_mass=primary.absolute_mass,
        vanish_tol=None if vanish_tol is None else float(vanish_tol),
        alternatives=maps_by_method,
    )


def _check_methods(methods) -> tuple[str, ...]:
    if methods == "all":
        return EXTRA_METHODS
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in EXTRA_METHODS]
    if unknown:
        raise ValueError(
            f"unknown Query-to-Patch method(s) {unknown}; expected 'all' or some of {list(EXTRA_METHODS)}"
        )
    return tuple(dict.fromkeys(methods))


def _applicable(extras, method: str, has_attention: bool, explicit: bool) -> tuple[str, ...]:
    """The extra methods that apply to this projector (not its own method again)."""
    keep = []
    for name in extras:
        if name == method:
            continue
        if name == "attention" and not has_attention:
            if explicit:
                raise ValueError(
                    "Query-to-Patch method 'attention' needs a projector that records attention "
                    "(Q-Former, resampler)"
                )
            continue
        keep.append(name)
    return tuple(keep)


def _compose(text_to_query: torch.Tensor, raw: torch.Tensor, grid) -> tuple[torch.Tensor, ...]:
    """(normalised Query-to-Patch, its row mass, Text-to-Patch (T, h, w)) from a raw matrix."""
    q2p, mass = normalise_with_mass(raw.float())
    if q2p.dim() == 3:
        t2p = torch.einsum("tm,tmn->tn", text_to_query, q2p)
    else:
        t2p = text_to_query @ q2p
    t_count = text_to_query.shape[0]
    return (
        q2p.detach().cpu(),
        mass.detach().cpu(),
        t2p.reshape(t_count, *grid).detach().cpu(),
    )
