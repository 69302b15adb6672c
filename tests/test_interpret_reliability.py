"""The structural reliability flag (issue 31) on hand-made tensors: kept shares, the absolute GAE
rollout, the verdicts and their order, and that no absolute tolerance on the mass is involved."""

import pytest
import torch

from decovlm.interpret.query_to_patch import (
    gae_absolute_query_to_patch,
    gae_query_to_patch,
    gradient_query_to_patch_raw,
)
from decovlm.interpret.reliability import (
    NET_NEGATIVE,
    peak_patches,
    share_of,
    signed_maps,
    word_verdict,
)
from decovlm.interpret.words import Word


def saturated(gradient_at_patch: float, scale: float = 1.0):
    """One query, one cross-attention layer over 2 patches, saturated on patch 0 (issue 26)."""
    a = torch.tensor([[0.9998, 0.0002]])
    g = torch.tensor([[gradient_at_patch, 0.1]]) * scale
    maps = [{"layer": 0, "kind": "cross", "probs": a[None, None]}]
    return maps, [g[None, None, None]]


def test_absolute_rollout_is_positive_plus_clamped_part():
    maps, grads = saturated(-1.0)
    positive = gae_query_to_patch(maps, grads, n_patches=2, normalise=False)
    absolute = gae_absolute_query_to_patch(maps, grads, n_patches=2)
    # the cross layer's |g x A| = [0.9998, 2e-5]; the clamp kept only the 2e-5
    assert torch.allclose(absolute[0, 0], torch.tensor([0.9998, 2e-5]), atol=1e-7)
    assert torch.allclose(positive[0, 0], torch.tensor([0.0, 2e-5]), atol=1e-9)
    kept = share_of(positive.sum(-1), absolute.sum(-1))
    assert float(kept) == pytest.approx(2e-5, rel=1e-2)
    # with a positive gradient on the patch nothing is clamped
    maps, grads = saturated(+1.0)
    assert torch.allclose(
        gae_query_to_patch(maps, grads, 2, normalise=False),
        gae_absolute_query_to_patch(maps, grads, 2),
    )


def test_self_attention_layers_mix_absolute_rows_like_positive_ones():
    """A self layer after the cross one mixes rows with GAE's own (positive) self-attention map,
    so absolute - positive is exactly the negative part rolled the same way."""
    cross = torch.tensor([[[0.9, 0.1], [0.2, 0.8]]])  # 2 queries, 2 patches
    selfa = torch.tensor([[[0.5, 0.5], [0.5, 0.5]]])
    maps = [
        {"layer": 0, "kind": "cross", "probs": cross[None]},
        {"layer": 1, "kind": "self", "probs": selfa[None]},
    ]
    g_cross = torch.tensor([[[-1.0, 1.0], [1.0, -1.0]]])[None, None]
    g_self = torch.ones(1, 1, 1, 2, 2)
    positive = gae_query_to_patch(maps, [g_cross, g_self], 2, normalise=False)
    absolute = gae_absolute_query_to_patch(maps, [g_cross, g_self], 2)
    flipped = gae_query_to_patch(maps, [-g_cross, g_self], 2, normalise=False)
    assert torch.allclose(absolute, positive + flipped, atol=1e-6)


def test_signed_gradient_x_input_is_the_unclamped_contribution():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 2, requires_grad=True)
    tokens = x * torch.tensor([1.0, -2.0])  # token m reads patch m only
    g = torch.ones(1, 1, 3, 2)
    signed = gradient_query_to_patch_raw(x, tokens, g, signed=True)[0]
    clamped = gradient_query_to_patch_raw(x, tokens, g)[0]
    expected = torch.diag((x[0] * torch.tensor([1.0, -2.0])).sum(-1)).detach()
    assert torch.allclose(signed, expected, atol=1e-6)
    assert torch.allclose(clamped, expected.clamp(min=0), atol=1e-6)


def test_signed_maps_compose_rows_with_text_to_query_weights():
    words = [Word("a", 0, 1), Word("b", 1, 2)]
    q2p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # normalised rows, (M, N)
    mass = torch.tensor([2.0, 0.5])
    absolute = torch.tensor([[2.0, 3.0], [0.0, 0.5]])  # row 0 lost 3 to the clamp
    t2q = torch.tensor([[1.0, 0.0], [1.0, 3.0]])
    pos, total = signed_maps(t2q, q2p, mass, absolute, words, (1, 2))
    assert torch.allclose(pos, torch.tensor([[[2.0, 0.0]], [[0.5, 0.375]]]))
    assert torch.allclose(total, torch.tensor([[[2.0, 3.0]], [[0.5, 1.125]]]))


def normalised(m):
    return m / m.sum() if float(m.sum()) > 0 else m


def test_negative_at_the_reference_peak_is_flagged_whatever_the_mass_scale():
    """Issue 31: masses of misses and hits overlap across tasks, so the verdict must not depend
    on the scale. Scaling every relevance by 1e-9 or 1e9 changes nothing."""
    reference = torch.tensor([[0.9, 0.1]])
    lost = (torch.tensor([[0.0, 2e-5]]), torch.tensor([[0.9998, 2e-5]]))  # GAE's miss
    kept = (torch.tensor([[0.7, 0.1]]), torch.tensor([[0.8, 0.3]]))  # a hit with some clamp
    for scale in (1e-9, 1.0, 1e9):
        pos, tot = lost[0] * scale, lost[1] * scale
        miss = word_verdict("gae", pos, tot, normalised(pos), reference, "attention")
        assert miss.unreliable and miss.code == "negative-at-peak"
        assert "patch (row 0, col 0)" in miss.reason and "attention" in miss.reason
        pos, tot = kept[0] * scale, kept[1] * scale
        hit = word_verdict("gae", pos, tot, normalised(pos), reference, "attention")
        assert not hit.unreliable and hit.reason is None
    # a map that lost most of its signed relevance at the peak but still peaks there shows it:
    # spared (issue 31's 48 px task: kept shares of 6% and 25% on maps that found the patch)
    pos, tot = torch.tensor([[0.06, 0.01]]), torch.tensor([[1.0, 0.01]])
    assert not word_verdict("gae", pos, tot, normalised(pos), reference, "attention").unreliable
    # an empty map (everything clamped) peaks nowhere
    empty = torch.zeros(1, 2)
    assert word_verdict("gae", empty, tot, empty, reference, "attention").unreliable
    # a map that lost most of its signed relevance elsewhere but kept the reference's peak
    pos, tot = torch.tensor([[0.7, 0.0]]), torch.tensor([[0.8, 5.0]])
    assert float(share_of(pos.sum(), tot.sum())) < NET_NEGATIVE
    assert not word_verdict("gae", pos, tot, normalised(pos), reference, "attention").unreliable
    # without a reference the overall share decides
    assert word_verdict("grad-x-input", pos, tot, normalised(pos)).code == "net-negative"
    assert not word_verdict("grad-x-input", *kept, normalised(kept[0])).unreliable


def test_tied_reference_peak_counts_its_whole_cell():
    """A pooled cell ties its patches: the share is over all of them, not an arbitrary one."""
    reference = torch.tensor([[0.25, 0.25], [0.25, 0.25]])
    assert peak_patches(reference).all()
    tot = torch.tensor([[0.1, 0.1], [0.1, 1.0]])
    pos = torch.tensor([[0.0, 0.0], [0.0, 0.9]])  # first patch clamped, the painted one kept
    assert not word_verdict("grad-x-input", pos, tot, pos, reference, "fixed").unreliable


def test_methods_without_a_positive_part_and_the_optional_tolerance():
    reference = torch.tensor([[1.0, 0.0]])
    for method in ("fixed", "attention"):
        verdict = word_verdict(method, None, None, reference, reference, "attention", mass=1e-20)
        assert not verdict.unreliable
    below = word_verdict("fixed", None, None, mass=1e-7, vanish_tol=1e-6)
    assert below.code == "below-tol" and "1e-06" in below.reason
    assert not word_verdict("fixed", None, None, mass=1e-7).unreliable  # no default tolerance
