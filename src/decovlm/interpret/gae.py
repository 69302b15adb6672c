"""The GAE update rules (Chefer et al., ICCV 2021) that R-GAE is built on, on plain tensors.

Notation follows the paper: `A` is one layer's attention probabilities (heads, queries, keys), `grad`
the gradient of the explained logit with respect to `A`, and `R^{xy}` a relevance matrix saying how
much each token of set x depends on each token of set y. Everything is computed in float32 whatever
the model's dtype (bf16 products and sums lose the small terms the maps are made of).
"""

from __future__ import annotations

import torch


def avg_heads(attn: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Rule 5: mean over heads of the positive part of grad * A.

    `attn` and `grad` are (heads, q, k) or batched (..., heads, q, k); the head axis is -3. The
    positive part is taken *before* the mean, as in GAE (a head whose attention lowers the logit
    does not cancel one that raises it).
    """
    if attn.shape != grad.shape:
        raise ValueError(
            f"attention {tuple(attn.shape)} and gradient {tuple(grad.shape)} differ in shape"
        )
    if attn.dim() < 3:
        raise ValueError(f"attention must be (heads, q, k), got shape {tuple(attn.shape)}")
    return (grad.float() * attn.float()).clamp(min=0).mean(dim=-3)


def self_attention_rule(r_ss: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """Rules 6/7: R^{sx} <- R^{sx} + A_bar R^{sx} (the "+" is the residual connection)."""
    return r_ss + cam @ r_ss


def handle_residual(r_ss: torch.Tensor) -> torch.Tensor:
    """Eqs. 8-9: subtract I, row-normalise what the layers added, add I back.

    A row that nothing has been added to yet (R still exactly I there, e.g. no self-attention layer
    has run) has a zero sum; the GAE reference divides 0/0 there and zeroes the NaN, which silently
    drops the whole cross-attention contribution. We leave such rows at I instead (guard: a zero
    row sum is replaced by 1). Tiny negative round-off on the diagonal is clamped away.
    """
    n = r_ss.shape[-1]
    eye = torch.eye(n, dtype=r_ss.dtype, device=r_ss.device)
    added = (r_ss - eye).clamp(min=0)
    sums = added.sum(dim=-1, keepdim=True)
    sums = torch.where(sums == 0, torch.ones_like(sums), sums)
    return added / sums + eye


def cross_attention_rule(
    r_qk: torch.Tensor, r_qq: torch.Tensor, cam_qk: torch.Tensor, r_kk: torch.Tensor | None = None
) -> torch.Tensor:
    """Rule 10: R^{qk} <- R^{qk} + (R_bar^{qq})^T A_bar^{qk} R_bar^{kk}.

    Queries q attend to keys k (e.g. Q-Former queries to ViT patches). `r_kk` is the key side's
    own relevance; None means the key side is not explained (R^{kk} = I, so R_bar^{kk} = I).
    """
    left = handle_residual(r_qq).transpose(-1, -2)
    added = left @ cam_qk
    if r_kk is not None:
        added = added @ handle_residual(r_kk)
    return r_qk + added


def propagate_row(cams: list[torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
    """Rows of the rule-6 relevance R = (I + A_L) ... (I + A_1), without forming R.

    `cams` are the per-layer A_bar in forward order, each (L, L) or batched (B, L, L); `rows` are
    one-hot (or any) row vectors (B, L). Reading row p of R only needs a vector-matrix product per
    layer, applied from the last layer back to the first: v <- v + v A_l. This is O(L^2) per layer
    instead of the O(L^3) update of the full matrix, and gives exactly e_p^T R.
    """
    v = rows.float()
    for cam in reversed(cams):
        cam = cam.float()
        v = v + (v @ cam if cam.dim() == 2 else torch.einsum("bi,bij->bj", v, cam))
    return v


def full_relevance(cams: list[torch.Tensor]) -> torch.Tensor:
    """The full rule-6 matrix R (L, L): R = I, then R += A_bar R per layer (reference for tests)."""
    n = cams[0].shape[-1]
    r = torch.eye(n, dtype=torch.float32, device=cams[0].device)
    for cam in cams:
        r = self_attention_rule(r, cam.float())
    return r


def row_normalise(m: torch.Tensor) -> torch.Tensor:
    """Each row divided by its sum; an all-zero row stays zero (no 0/0)."""
    sums = m.sum(dim=-1, keepdim=True)
    return m / torch.where(sums == 0, torch.ones_like(sums), sums)
