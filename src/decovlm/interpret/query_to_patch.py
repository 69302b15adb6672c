"""Query-to-Patch: how each of the M visual tokens the LLM sees relates to the N ViT patches.

Three cases, chosen in this order by `explain`:
1. **fixed** - the projector has a data-independent `patch_mapping(h, w)` (linear/MLP: I; average
   pooling: each token averages its window; bilinear: the interpolation weights). Relevance goes
   through it as through an attention layer with fixed weights.
2. **gae** - the projector records attention (`save_attentions`, Q-Former and resampler): GAE over
   its layers with the gradient of the *same* answer logit. Queries start at R^{qq} = I,
   R^{qp} = 0; a self-attention layer applies rules 6/7, a cross-attention layer rule 10 with the
   NaN-safe normalised residual and R^{pp} = I (the ViT is not explained). A resampler layer attends
   to [patches; latents] at once: its patch columns go through rule 10 and its latent columns
   through rules 6/7, both from the state before the layer.
3. **grad-x-input** - any other learned projector (C-/D-Abstractor, LDP, max pooling): with
   g_m = sum_t d y_t / d token_m (the gradient of the answer's logits w.r.t. visual token m), the
   contribution of patch n to token m is
   Q2P[m, n] = ( sum_d x[n, d] * d(g_m . token_m) / d x[n, d] )^+, gradient x input of the
   token's first-order share of the answer's logits. One (M, N) matrix per answer (M batched
   backward passes through the projector; per answer token it would cost T times more). This is
   a documented fallback, not GAE.
Every Query-to-Patch matrix is row-normalised (rows sum to 1; a row with no relevance stays 0), so
the Text-to-Patch map keeps the Text-to-Query mass.
"""

from __future__ import annotations

import torch

from decovlm.interpret.gae import (
    avg_heads,
    cross_attention_rule,
    row_normalise,
    self_attention_rule,
)


def supports_gae(projector, n_patches: int) -> bool:
    """True when the projector records attention maps that reach the patches."""
    maps = getattr(projector, "attention_maps", None) or []
    if not getattr(projector, "save_attentions", False) or not maps:
        return False
    return any(m["kind"] == "cross" and m["probs"].shape[-1] >= n_patches for m in maps)


def gae_query_to_patch(maps: list[dict], grads: list[torch.Tensor], n_patches: int) -> torch.Tensor:
    """(T, Q, N) GAE Query-to-Patch from recorded projector attention and per-token gradients.

    `maps` are the projector's `attention_maps` (probs (1, heads, Q, K)) in forward order and
    `grads[i]` the gradients of the T explained logits w.r.t. `maps[i]["probs"]`, (T, 1, heads, Q, K).
    """
    if len(maps) != len(grads):
        raise ValueError(f"{len(maps)} attention maps but {len(grads)} gradients")
    t_count = grads[0].shape[0]
    q = maps[0]["probs"].shape[-2]
    dev = maps[0]["probs"].device
    r_qq = torch.eye(q, device=dev).expand(t_count, q, q).clone()
    r_qp = torch.zeros(t_count, q, n_patches, device=dev)
    for m, g in zip(maps, grads, strict=True):
        cam = avg_heads(m["probs"][0].expand_as(g[:, 0]), g[:, 0])  # (T, Q, K)
        k = cam.shape[-1]
        if m["kind"] == "self" and k == q:
            r_qp = self_attention_rule(r_qp, cam)
            r_qq = self_attention_rule(r_qq, cam)
        elif m["kind"] == "cross" and k == n_patches:
            r_qp = cross_attention_rule(r_qp, r_qq, cam)
        elif m["kind"] == "cross" and k == n_patches + q:
            cam_p, cam_q = cam[..., :n_patches], cam[..., n_patches:]
            new_qp = cross_attention_rule(r_qp, r_qq, cam_p) + cam_q @ r_qp
            r_qq = self_attention_rule(r_qq, cam_q)
            r_qp = new_qp
        else:
            raise ValueError(
                f"projector attention map (layer {m.get('layer')}, kind {m['kind']!r}) has shape "
                f"{tuple(m['probs'].shape)}; expected Q x Q (self), Q x N or Q x (N + Q) (cross) "
                f"with Q={q}, N={n_patches}"
            )
    return row_normalise(r_qp)


def gradient_query_to_patch(
    features: torch.Tensor, tokens: torch.Tensor, token_grads: torch.Tensor, batched: bool = True
) -> torch.Tensor:
    """(T, M, N) gradient x input fallback (see the module docstring), one matrix per gradient.

    `features` (1, N, Dv) is the projector input (a tensor requiring grad), `tokens` (1, M, Dl) its
    output still in the graph, `token_grads` (T, 1, M, Dl) the logit gradients w.r.t. `tokens`
    (`explain` passes one: their sum over the answer).
    """
    t_count, _, m, _ = token_grads.shape
    out = []
    for t in range(t_count):
        share = (tokens[0].float() * token_grads[t, 0].float()).sum(-1)  # (M,) first-order shares
        if batched:
            eye = torch.eye(m, device=share.device, dtype=share.dtype)
            (g,) = torch.autograd.grad(
                share, features, grad_outputs=eye, retain_graph=True, is_grads_batched=True
            )
        else:
            g = torch.stack(
                [torch.autograd.grad(share[i], features, retain_graph=True)[0] for i in range(m)]
            )
        # g: (M, 1, N, Dv) -> contribution of each patch to each token's share.
        out.append((g[:, 0].float() * features[0].detach().float()).sum(-1).clamp(min=0))
    return row_normalise(torch.stack(out))


def fixed_query_to_patch(projector, grid: tuple[int, int]) -> torch.Tensor | None:
    """The projector's data-independent (M, N) mapping, row-normalised, or None."""
    mapping = projector.patch_mapping(*grid)
    return None if mapping is None else row_normalise(mapping.float())
