"""DeCo's projector (`avgpool{L}_{M}`) against the paper's reference code, and the patch mappings."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from decovlm.projectors import build_projector
from decovlm.projectors.pooling import adaptive_windows

DV, DL = 32, 48


# fmt: off
class AvgPoolProjector(nn.Module):
    """The DeCo README's reference code (the seed), as published."""

    def __init__(
        self,
        layer_num: int = 2,
        query_num: int = 144,
        mm_hidden_size: int = 1024,
        llm_hidden_size: int = 4096,
    ):
        super().__init__()
        self.layer_num = layer_num
        self.query_num = query_num
        self.mm_hidden_size = mm_hidden_size
        self.llm_hidden_size = llm_hidden_size
        self.build_net()

    def build_net(self):
        hw = int(self.query_num ** 0.5)
        sampler = nn.AdaptiveAvgPool2d((hw, hw))
        self.sampler = sampler
        modules = [nn.Linear(self.mm_hidden_size, self.llm_hidden_size)]
        for _ in range(1, self.layer_num):
            modules.append(nn.GELU())
            modules.append(nn.Linear(self.llm_hidden_size, self.llm_hidden_size))
        self.mlp_projector = nn.Sequential(*modules)

    def forward(self, visual_feat: torch.Tensor) -> torch.Tensor:
        batch_size, seq_len, h_dim = visual_feat.shape # 576
        hw = int(seq_len ** 0.5) # 24
        shaped_visual_feat = rearrange(visual_feat, "b (h w) d -> b d h w", h=hw, w=hw) # torch.Size([64, 1024, 24, 24])
        pooled_visual_feat = self.sampler(shaped_visual_feat) # torch.Size([64, 1024, 12, 12])
        reshaped_visual_feat = rearrange(pooled_visual_feat, "b d h w -> b (h w) d") # [64, 144, 1024]
        output_feat = self.mlp_projector(reshaped_visual_feat) # [64, 144, 4096])
        return output_feat
# fmt: on


@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("m", [144, 64])
def test_avgpool_equals_the_reference(depth, m):
    torch.manual_seed(0)
    ref = AvgPoolProjector(layer_num=depth, query_num=m, mm_hidden_size=DV, llm_hidden_size=DL)
    ours = build_projector(f"avgpool{depth}_{m}", DV, DL)
    ours.load_state_dict(ref.state_dict())  # `mlp_projector.*` keys match; the sampler has none
    x = torch.randn(3, 576, DV)
    expected = ref(x)
    assert expected.shape == (3, m, DL)
    torch.testing.assert_close(ours(x), expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(ours(x, grid=(24, 24)), expected, atol=1e-6, rtol=0)


def test_avgpool_parameter_count_at_paper_size():
    with torch.device("meta"):
        proj = build_projector("avgpool2_144", 1024, 4096)
        ref = AvgPoolProjector()
    assert proj.trainable == proj.total == 20_979_712
    assert sum(p.numel() for p in ref.parameters()) == 20_979_712
    with torch.device("meta"):
        assert (
            build_projector("avgpool1_144", 1024, 4096, input_grid=(24, 24)).trainable == 4_198_400
        )


def test_uneven_grid_uses_adaptive_pool_windows():
    proj = build_projector("avgpool2_144", DV, DL)
    x = torch.randn(2, 27 * 27, DV)
    pooled = proj.compress(x, grid=(27, 27))
    assert pooled.shape == (2, 144, DV)
    grid = x.reshape(2, 27, 27, DV)
    windows = adaptive_windows(27, 12)
    assert windows[0] == (0, 3) and windows[1] == (2, 5)  # uneven, overlapping windows
    expected = torch.stack(
        [grid[:, r0:r1, c0:c1].mean(dim=(1, 2)) for r0, r1 in windows for c0, c1 in windows], dim=1
    )
    torch.testing.assert_close(pooled, expected)
    reference = (
        F.adaptive_avg_pool2d(grid.permute(0, 3, 1, 2), 12).permute(0, 2, 3, 1).reshape(2, 144, DV)
    )
    torch.testing.assert_close(pooled, reference)


def test_non_square_grid_keeps_its_aspect():
    proj = build_projector("avgpool2_144", DV, DL)
    assert proj.output_grid(24, 32) == (10, 14)
    assert proj.num_output_tokens(24, 32) == 140
    out = proj(torch.randn(2, 24 * 32, DV), grid=(24, 32))
    assert out.shape == (2, 140, DL)
    # Row-major over the 10x14 output: token (i, j) averages adaptive window (i, j).
    x = torch.randn(1, 24 * 32, DV)
    pooled = proj.compress(x, grid=(24, 32))
    (r0, r1), (c0, c1) = adaptive_windows(24, 10)[3], adaptive_windows(32, 14)[5]
    expected = x.reshape(24, 32, DV)[r0:r1, c0:c1].mean(dim=(0, 1))
    torch.testing.assert_close(pooled[0, 3 * 14 + 5], expected)


def test_impossible_requests_fail_early_and_clearly():
    with pytest.raises(ValueError, match="perfect square.*150; try 144 or 169"):
        build_projector("avgpool2_150", DV, DL)
    with pytest.raises(
        ValueError, match=r"8x8 grid \(64 patches\) to 144 tokens \(M must be <= N\)"
    ):
        build_projector("avgpool2_144", DV, DL, input_grid=(8, 8))
    proj = build_projector("avgpool2_144", DV, DL)
    with pytest.raises(ValueError, match=r"8x8 grid \(64 patches\) to 144"):
        proj(torch.randn(1, 64, DV))
    with pytest.raises(ValueError, match=r"577 patch tokens.*grid=\(h, w\)"):
        proj(torch.randn(1, 577, DV))  # the seed code would crash inside einops here


def test_no_align_prefix_is_not_a_projector():
    # A training choice (decovlm.train), refused by every projector entry point.
    with pytest.raises(ValueError, match="unknown projector spec 'no-align\\+avgpool2_64'"):
        build_projector("no-align+avgpool2_64", DV, DL)


# -- patch_mapping: the (M, N) matrix the relevance maps compose with ---------------------------
def push_identity(spec: str, grid: tuple[int, int]) -> torch.Tensor:
    """The mapping by definition: compress the one-hot patches (vision_dim = N, one channel each)."""
    n = grid[0] * grid[1]
    proj = build_projector(spec, n, DL)
    basis = torch.eye(n).unsqueeze(0)  # patch p has feature e_p
    return proj.compress(basis, grid=grid)[0]  # (M, N): token k's coefficient on patch p


@pytest.mark.parametrize("grid", [(4, 4), (27, 27), (24, 32), (6, 9)])
def test_avgpool_mapping_equals_pushing_the_identity(grid):
    spec = "avgpool2_4" if grid == (4, 4) else "avgpool2_144" if grid[0] > 6 else "avgpool2_16"
    proj = build_projector(spec, DV, DL)
    mapping = proj.patch_mapping(*grid)
    assert mapping.shape == (proj.num_output_tokens(*grid), grid[0] * grid[1])
    torch.testing.assert_close(mapping.sum(dim=1), torch.ones(mapping.shape[0]))
    torch.testing.assert_close(mapping, push_identity(spec, grid))


def test_avgpool_mapping_blocks_for_four_by_four():
    mapping = build_projector("avgpool2_4", DV, DL).patch_mapping(4, 4)
    expected = torch.zeros(4, 16)
    for k, (r, c) in enumerate([(0, 0), (0, 2), (2, 0), (2, 2)]):
        for dr in range(2):
            for dc in range(2):
                expected[k, (r + dr) * 4 + c + dc] = 0.25
    assert torch.equal(mapping, expected)


@pytest.mark.parametrize("grid", [(24, 24), (24, 32)])
def test_bilinear_mapping_equals_pushing_the_identity(grid):
    mapping = build_projector("bilinear2_144", DV, DL).patch_mapping(*grid)
    torch.testing.assert_close(mapping, push_identity("bilinear2_144", grid), atol=1e-6, rtol=0)


@pytest.mark.parametrize("spec", ["linear", "mlp2x_gelu"])
@pytest.mark.parametrize("grid", [(3, 3), (3, 5)])
def test_per_patch_projectors_map_identity(spec, grid):
    proj = build_projector(spec, DV, DL)
    assert torch.equal(proj.patch_mapping(*grid), torch.eye(grid[0] * grid[1]))
    assert proj.num_output_tokens(*grid) == grid[0] * grid[1]


def test_data_dependent_projectors_have_no_fixed_mapping():
    small = {"resampler2_16": {"head_dim": 8}, "cabstractor_16": {"hidden_size": 32}}
    for spec in ["maxpool2_16", "qformer2_16", "resampler2_16", "ldpv2_16", "cabstractor_16"]:
        assert build_projector(spec, DV, DL, **small.get(spec, {})).patch_mapping(8, 8) is None
