"""GAE rules, Query-to-Patch rules, word grouping and scores on hand-made tensors with hand-computed results."""

import math

import numpy as np
import pytest
import torch

from decovlm.interpret.gae import (
    avg_heads,
    cross_attention_rule,
    full_relevance,
    handle_residual,
    propagate_row,
    row_normalise,
    self_attention_rule,
)
from decovlm.interpret.query_to_patch import gae_query_to_patch
from decovlm.interpret.scores import (
    box_to_mask,
    concentration,
    energy_pointing_game,
    mask_to_grid,
    pointing_game,
    score_map,
)
from decovlm.interpret.words import Word, group_words, merge_words

A = torch.tensor([[[0.5, 0.5], [0.2, 0.8]], [[1.0, 0.0], [0.3, 0.7]]])
G = torch.tensor([[[2.0, -1.0], [1.0, 1.0]], [[-1.0, 3.0], [0.0, 2.0]]])
# head 0: grad*A = [[1, -.5], [.2, .8]] -> [[1, 0], [.2, .8]]; head 1: [[-1, 0], [0, 1.4]] -> [[0, 0], [0, 1.4]]
CAM = torch.tensor([[0.5, 0.0], [0.1, 1.1]])


def close(a, b, tol=1e-6):
    return torch.allclose(
        torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32), atol=tol
    )


def test_avg_heads_clamps_before_mean():
    assert close(avg_heads(A, G), CAM)
    assert close(avg_heads(A[None], G[None])[0], CAM)  # batched (B, heads, q, k)
    with pytest.raises(ValueError, match="differ in shape"):
        avg_heads(A, G[:1])


def test_self_rule_two_layers_is_product():
    r1 = self_attention_rule(torch.eye(2), CAM)
    assert close(r1, [[1.5, 0.0], [0.1, 2.1]])
    r2 = self_attention_rule(r1, CAM)
    assert close(r2, [[2.25, 0.0], [0.36, 4.41]])  # (I + A)^2
    assert close(full_relevance([CAM, CAM]), r2)


def test_propagate_row_equals_rows_of_full_matrix():
    torch.manual_seed(0)
    cams = [torch.rand(5, 5).tril() for _ in range(3)]
    full = full_relevance(cams)
    rows = torch.eye(5)[[4, 2]]
    assert close(propagate_row(cams, rows), full[[4, 2]], 1e-5)
    batched = [c.expand(2, 5, 5) for c in cams]
    assert close(propagate_row(batched, rows), full[[4, 2]], 1e-5)


def test_handle_residual_and_zero_row_guard():
    r = torch.tensor([[2.0, 0.5, 0.5], [0.0, 1.0, 0.0], [0.2, 0.2, 1.6]])
    # row 1 is still exactly I: 0/0 must give I, not NaN
    expected = [[1.5, 0.25, 0.25], [0.0, 1.0, 0.0], [0.2, 0.2, 1.6]]
    out = handle_residual(r)
    assert close(out, expected)
    assert close(handle_residual(torch.eye(4)), torch.eye(4))
    assert not torch.isnan(out).any()


def test_cross_rule_hand_computed():
    r_qq = torch.tensor([[1.5, 0.0], [0.1, 2.1]])
    cam = torch.tensor([[1.0, 0.0, 1.0], [0.0, 2.0, 0.0]])
    # handle_residual(r_qq) = [[2, 0], [1/12, 23/12]]; its transpose @ cam:
    expected = [[2.0, 2 / 12, 2.0], [0.0, 46 / 12, 0.0]]
    assert close(cross_attention_rule(torch.zeros(2, 3), r_qq, cam), expected, 1e-5)
    # an explained key side multiplies by its normalised relevance on the right
    r_kk = torch.eye(3)
    assert close(cross_attention_rule(torch.zeros(2, 3), r_qq, cam, r_kk), expected, 1e-5)


def test_row_normalise_keeps_zero_rows():
    out = row_normalise(torch.tensor([[1.0, 3.0], [0.0, 0.0]]))
    assert close(out, [[0.25, 0.75], [0.0, 0.0]])


def _maps(*specs):
    """(kind, cam) -> recorded map with probs = cam (1 head) and gradient 1, so avg_heads gives cam."""
    maps, grads = [], []
    for kind, cam in specs:
        cam = torch.tensor(cam)
        maps.append({"layer": len(maps), "kind": kind, "probs": cam[None, None]})
        grads.append(torch.ones(1, 1, 1, *cam.shape))
    return maps, grads


def test_qformer_gae_self_then_cross():
    a_self = torch.tensor([[0.5, 0.5], [0.2, 0.8]])
    g_self = torch.tensor([[2.0, -1.0], [1.0, 1.0]])
    a_cross = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]])
    g_cross = torch.tensor([[2.0, 0.0, 4.0], [0.0, 10.0, -1.0]])
    maps = [
        {"layer": 0, "kind": "self", "probs": a_self[None, None]},
        {"layer": 0, "kind": "cross", "probs": a_cross[None, None]},
    ]
    grads = [g_self[None, None, None], g_cross[None, None, None]]
    # self cam [[1,0],[.2,.8]] -> R_qq = [[2,0],[.2,1.8]] (already row-normalised residual);
    # cross cam [[1,0,1],[0,1,0]]; R_qq_bar^T @ cam = [[2,.2,2],[0,1.8,0]] -> rows normalised
    out = gae_query_to_patch(maps, grads, n_patches=3)
    assert out.shape == (1, 2, 3)
    assert close(out[0], [[2 / 4.2, 0.2 / 4.2, 2 / 4.2], [0.0, 1.0, 0.0]], 1e-5)


def test_resampler_gae_joint_patch_and_latent_keys():
    maps, grads = _maps(
        ("cross", [[1.0, 0.0, 0.5, 0.0], [0.0, 1.0, 0.0, 0.0]]),
        ("cross", [[0.0, 1.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0]]),
    )
    # layer 1: R_qp = I, R_qq = [[1.5,0],[0,1]]; layer 2: R_qp = I + [[0,2],[0,0]] + [[.5,0],[0,0]]
    out = gae_query_to_patch(maps, grads, n_patches=2)
    assert close(out[0], [[3 / 7, 4 / 7], [0.0, 1.0]], 1e-5)


def test_gae_rejects_unexpected_shapes():
    maps, grads = _maps(("self", [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    with pytest.raises(ValueError, match="expected Q x Q"):
        gae_query_to_patch(maps, grads, n_patches=5)


class _Tok:
    """Decodes ids into a subword-ish text: id 0 = 'pur', 1 = 'ple', 2 = ' and', 3 = ' red', 4 = '.'."""

    pieces = ["pur", "ple", " and", " red", "."]

    def decode(self, ids, skip_special_tokens=True):
        return "".join(self.pieces[i] for i in ids)


def test_words_from_subtokens_and_mean_merge():
    from decovlm.interpret.words import token_spans

    text, spans = token_spans(_Tok(), [0, 1, 2, 3, 4])
    assert text == "purple and red."
    words = group_words(text, spans)
    assert [(w.text, w.start, w.end) for w in words] == [
        ("purple", 0, 2),
        ("and", 2, 3),
        ("red", 3, 4),
        (".", 4, 5),
    ]
    maps = torch.arange(5.0)[:, None].expand(5, 3)
    merged = merge_words(maps, [Word("purple", 0, 2), Word("red", 3, 4)])
    assert close(merged, [[0.5] * 3, [3.0] * 3])


def test_mask_to_grid_fractions_and_box():
    mask = box_to_mask([0, 0, 6, 4], (8, 8))  # 6 px wide, 4 px tall at top-left of an 8x8 image
    grid = mask_to_grid(mask, (2, 2))
    assert np.allclose(grid, [[1.0, 0.5], [0.0, 0.0]])
    # pad mode: a 8x4 (w x h) image is padded to 8x8 with 2 rows above and below
    wide = np.ones((4, 8), dtype=np.float32)
    assert np.allclose(mask_to_grid(wide, (4, 4), "pad"), [[0] * 4, [1] * 4, [1] * 4, [0] * 4])
    assert np.allclose(mask_to_grid(wide, (2, 2), "crop"), np.ones((2, 2)))


def test_scores_hand_computed():
    relevance = np.array([[0.0, 1.0], [3.0, 0.0]])
    mask = np.array([[0.0, 1.0], [0.5, 0.0]])
    assert pointing_game(relevance, mask) == 1.0
    assert pointing_game(relevance, np.array([[1.0, 1.0], [0.0, 0.0]])) == 0.0
    assert pointing_game(np.zeros((2, 2)), mask) == 0.0
    assert math.isnan(pointing_game(relevance, np.zeros((2, 2))))
    assert energy_pointing_game(relevance, mask) == pytest.approx((1.0 + 1.5) / 4.0)
    conc = concentration(relevance)
    p = np.array([0.25, 0.75])
    assert conc["entropy"] == pytest.approx(float(-(p * np.log(p)).sum()))
    assert conc["k50"] == 1 and conc["k90"] == 2
    uniform = concentration(np.ones((3, 3)))
    assert uniform["effective_patches"] == pytest.approx(9.0)
    assert uniform["k50"] == 5 and uniform["k90"] == 9
    scores = score_map(relevance, mask)
    assert scores["mask_area"] == pytest.approx(1.5 / 4)
    with pytest.raises(ValueError, match="differ"):
        pointing_game(relevance, np.zeros((3, 3)))


def test_gradient_query_to_patch_batched_matches_loop():
    from decovlm.interpret.query_to_patch import gradient_query_to_patch

    torch.manual_seed(0)
    x = torch.randn(1, 4, 3, requires_grad=True)
    w = torch.randn(3, 5)
    mix = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.2, 0.8]])  # 2 tokens from 4 patches
    tokens = torch.einsum("mn,bnd->bmd", mix, torch.tanh(x)) @ w
    g = torch.randn(2, 1, 2, 5)
    a = gradient_query_to_patch(x, tokens, g, batched=True)
    b = gradient_query_to_patch(x, tokens, g, batched=False)
    assert a.shape == (2, 2, 4) and torch.allclose(a, b, atol=1e-6)
    # a token gets nothing from patches it does not read
    assert torch.all(a[:, 0, 2:] == 0) and torch.all(a[:, 1, :2] == 0)
    sums = a.sum(-1)
    assert torch.all(((sums - 1).abs() < 1e-5) | (sums == 0))


def test_saturated_cross_attention_vanishes_under_gae_but_not_rollout():
    """Issue 26: the query attends to patch 0 with p ~ 1 but the gradient there is negative, so
    (grad x A)^+ is ~0: GAE's raw row mass is tiny and its normalised row points at the wrong
    patch, while the raw attention rollout keeps the patch."""
    from decovlm.interpret.query_to_patch import attention_query_to_patch

    a = torch.tensor([[0.9998, 0.0002]])
    g = torch.tensor([[-1.0, 0.1]])
    maps = [{"layer": 0, "kind": "cross", "probs": a[None, None]}]
    raw = gae_query_to_patch(maps, [g[None, None, None]], n_patches=2, normalise=False)
    assert float(raw.sum()) == pytest.approx(2e-5, rel=1e-3)
    normalised = gae_query_to_patch(maps, [g[None, None, None]], n_patches=2)
    assert close(normalised[0], [[0.0, 1.0]], 1e-6)  # a confident picture of the wrong patch
    rollout = attention_query_to_patch(maps, n_patches=2)
    assert close(rollout, [[0.9998, 0.0002]], 1e-6)


def test_token_mass_weights_rows_by_text_to_query():
    from decovlm.interpret.explanation import token_mass

    t2q = torch.tensor([[3.0, 1.0], [0.0, 0.0]])
    mass = torch.tensor([1.0, 1e-6])
    out = token_mass(t2q, mass)
    assert close(out, [0.75 + 0.25e-6, 0.0], 1e-9)
