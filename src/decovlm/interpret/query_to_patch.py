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
4. **attention** (a second, model-agnostic view for attention-based projectors): the raw attention
   probabilities, mean over heads, rolled through the layers with the same rules as GAE but no
   gradient (attention rollout). It shows where the queries *look*, whatever the explained word.

Every Query-to-Patch matrix is row-normalised (rows sum to 1; a row with no relevance stays 0), so
the Text-to-Patch map keeps the Text-to-Query mass. The row sums *before* normalising (the
"mass") are returned too: GAE's (grad x attention)^+ can be ~0 on a saturated cross-attention
(p ~ 1 where the gradient is negative), and a normalised row would then draw a confident picture
of relevance that vanished (`decovlm.interpret.explanation` flags such maps).
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


def gae_query_to_patch(
    maps: list[dict], grads: list[torch.Tensor], n_patches: int, normalise: bool = True
) -> torch.Tensor:
    """(T, Q, N) GAE Query-to-Patch from recorded projector attention and per-token gradients.

    `maps` are the projector's `attention_maps` (probs (1, heads, Q, K)) in forward order and
    `grads[i]` the gradients of the T explained logits w.r.t. `maps[i]["probs"]`, (T, 1, heads, Q, K).
    `normalise=False` returns the raw R^{qp} (its row sums are the mass that `explain` reports).
    """
    if len(maps) != len(grads):
        raise ValueError(f"{len(maps)} attention maps but {len(grads)} gradients")
    cams = [avg_heads(m["probs"][0].expand_as(g[:, 0]), g[:, 0]) for m, g in zip(maps, grads)]
    r_qp = roll_query_to_patch(maps, cams, n_patches)
    return row_normalise(r_qp) if normalise else r_qp


def gae_absolute_query_to_patch(
    maps: list[dict], grads: list[torch.Tensor], n_patches: int
) -> torch.Tensor:
    """(T, Q, N) GAE's raw R^{qp} had the cross-attention kept |grad x A| instead of (grad x A)^+.

    R^{qp} is linear in the cross-attention maps (self-attention layers only mix the rows), so this
    is the positive relevance plus the negative relevance GAE clamps away; positive / absolute
    (the *kept share*, `decovlm.interpret.reliability`) says which part of the gradient x attention
    a normalised map is drawn from, on no particular scale.
    """
    cams = []
    for m, g in zip(maps, grads, strict=True):
        attn = m["probs"][0].expand_as(g[:, 0])
        cam = avg_heads(attn, g[:, 0])
        if m["kind"] == "cross":  # only the patch columns (a resampler's latent ones mix rows)
            absolute = (g[:, 0].float() * attn.float()).abs().mean(dim=-3)
            cam = torch.cat([absolute[..., :n_patches], cam[..., n_patches:]], dim=-1)
        cams.append(cam)
    return roll_query_to_patch(maps, cams, n_patches)


def attention_query_to_patch(maps: list[dict], n_patches: int) -> torch.Tensor:
    """(Q, N) raw attention rollout: head-mean probabilities through the GAE rules, no gradient.

    Unnormalised (rows carry their mass); `explain` row-normalises it like every Query-to-Patch.
    """
    cams = [m["probs"][0].detach().float().mean(dim=0)[None] for m in maps]  # (1, Q, K)
    return roll_query_to_patch(maps, cams, n_patches)[0]


def roll_query_to_patch(maps: list[dict], cams: list[torch.Tensor], n_patches: int) -> torch.Tensor:
    """(T, Q, N) raw R^{qp}: per-layer head-reduced maps `cams` (T, Q, K) through rules 6/7 and 10.

    `maps` give each layer's kind ("self" / "cross") in forward order; the queries start at
    R^{qq} = I, R^{qp} = 0.
    """
    t_count = cams[0].shape[0]
    q = maps[0]["probs"].shape[-2]
    dev = cams[0].device
    r_qq = torch.eye(q, device=dev).expand(t_count, q, q).clone()
    r_qp = torch.zeros(t_count, q, n_patches, device=dev)
    for m, cam in zip(maps, cams, strict=True):
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
    return r_qp


def gradient_query_to_patch(
    features: torch.Tensor, tokens: torch.Tensor, token_grads: torch.Tensor, batched: bool = True
) -> torch.Tensor:
    """(T, M, N) gradient x input fallback (see the module docstring), one matrix per gradient.

    `features` (1, N, Dv) is the projector input (a tensor requiring grad), `tokens` (1, M, Dl) its
    output still in the graph, `token_grads` (T, 1, M, Dl) the logit gradients w.r.t. `tokens`
    (`explain` passes one: their sum over the answer).
    """
    return row_normalise(
        gradient_query_to_patch_raw(features, tokens, token_grads, batched=batched)
    )


def gradient_query_to_patch_raw(
    features: torch.Tensor,
    tokens: torch.Tensor,
    token_grads: torch.Tensor,
    batched: bool = True,
    signed: bool = False,
) -> torch.Tensor:
    """`gradient_query_to_patch` before row normalisation (rows carry their mass).

    `signed=True` returns the contributions before their positive part is taken.
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
        contribution = (g[:, 0].float() * features[0].detach().float()).sum(-1)
        out.append(contribution if signed else contribution.clamp(min=0))
    return torch.stack(out)


def fixed_query_to_patch(projector, grid: tuple[int, int], normalise: bool = True):
    """The projector's data-independent (M, N) mapping, row-normalised (or raw), or None."""
    mapping = projector.patch_mapping(*grid)
    if mapping is None:
        return None
    return row_normalise(mapping.float()) if normalise else mapping.float()


def normalise_with_mass(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(row-normalised matrix, its row sums before normalising) of a raw Query-to-Patch matrix."""
    return row_normalise(raw), raw.sum(dim=-1)
