"""The contract every projector of the zoo keeps, plus the specifics of the non-DeCo families."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from decovlm.projectors import (
    ProjectorSpec,
    build_projector,
    config_from_dict,
    example_specs,
    families,
    registry,
)
from decovlm.projectors.pixelshuffle import space_to_depth

DV, DL = 32, 48
# Families whose default widths (1024) are far too big for a unit test: shrink them.
SMALL = {
    "cabstractor": {"hidden_size": 32},
    "dabstractor": {"d_model": 32, "ffn_dim": 64},
    "resampler": {"head_dim": 8},
}
EXTRA_SPECS = [
    "qformer2_64",
    "qformer1_16",
    "resampler2_64",
    "pixelshuffle2",
    "pixelshuffle3",
    "ldpv2",
    "ldpv2_16",
    "cabstractor_16",
    "dabstractor_16",
    "avgpool1_16",
    "mlp1x_gelu",
]
ALL_SPECS = list(dict.fromkeys(example_specs() + EXTRA_SPECS))


def build(spec: str, vision_dim: int = DV, llm_dim: int = DL, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    family = ProjectorSpec.parse(spec).family
    return build_projector(spec, vision_dim, llm_dim, **{**SMALL.get(family, {}), **overrides})


def test_every_family_has_examples_and_registers():
    names = set(families())
    assert {"qformer", "cabstractor", "dabstractor", "resampler", "ldpv2", "pixelshuffle"} <= names
    for fam in families().values():
        assert fam.examples, fam.name
        for spec in fam.examples:
            assert ProjectorSpec.parse(spec).family == fam.name


# -- ProjectorSpec: the one parser of spec strings ----------------------------------------------
@pytest.mark.parametrize("spec", ALL_SPECS)
def test_spec_round_trips_through_its_canonical_string(spec):
    parsed = ProjectorSpec.parse(spec)
    assert str(parsed) == spec  # every spec of the study is written canonically
    assert ProjectorSpec.parse(str(parsed)) == parsed
    assert ProjectorSpec.parse(spec.upper()) == parsed and ProjectorSpec.parse(parsed) is parsed


@pytest.mark.parametrize(
    "spec, canonical, tokens",
    [
        ("AvgPool2_144", "avgpool2_144", 144),
        (" gelu-mlp ", "mlp2x_gelu", None),
        ("QFORMER2_64", "qformer2_64", 64),
        ("resampler6_144", "resampler6_144", 144),
        ("ldpv2", "ldpv2", 144),  # MobileVLM-v2's fixed 12x12
        ("pixelshuffle2", "pixelshuffle2", None),  # M = N / 4: set by the grid
    ],
)
def test_spec_canonical_form_and_token_count(spec, canonical, tokens):
    parsed = ProjectorSpec.parse(spec)
    assert (str(parsed), parsed.tokens) == (canonical, tokens)


def test_with_tokens_changes_only_the_token_count():
    assert str(ProjectorSpec.parse("qformer2_144").with_tokens(16)) == "qformer2_16"
    assert str(ProjectorSpec.parse("maxpool3_144").with_tokens(64)) == "maxpool3_64"
    assert str(ProjectorSpec.parse("ldpv2").with_tokens(16)) == "ldpv2_16"
    assert ProjectorSpec.parse("resampler6_144").with_tokens(64).fields == {
        "num_layers": 6, "num_latents": 64,
    }  # fmt: skip
    with pytest.raises(ValueError, match="mlp2x_gelu has no token count of its own"):
        ProjectorSpec.parse("mlp2x_gelu").with_tokens(16)


@pytest.mark.parametrize("bad", ["", "avgpool", "avgpool2_", "no-align+avgpool2_144", 144, None])
def test_bad_specs_name_the_spec_and_the_syntaxes(bad):
    from decovlm.errors import UserError

    with pytest.raises(UserError, match="projector spec") as err:
        ProjectorSpec.parse(bad)
    assert "\n" not in str(err.value)


def test_a_family_that_fails_to_import_is_an_error_naming_it(monkeypatch):
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(
        registry, "_FAMILY_MODULES", (*registry._FAMILY_MODULES, "decovlm.projectors.nosuchfamily")
    )
    with pytest.raises(ImportError, match="decovlm.projectors.nosuchfamily failed to import"):
        ProjectorSpec.parse("avgpool2_144")
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "_FAMILY_MODULES", ("decovlm.projectors.mlp",))
    assert str(ProjectorSpec.parse("gelu-mlp")) == "mlp2x_gelu"  # importable again: no error


@pytest.mark.parametrize("spec", ALL_SPECS)
@pytest.mark.parametrize("grid", [(24, 24), (12, 18)])
def test_shape_and_token_count(spec, grid):
    proj = build(spec)
    h, w = grid
    out = proj(torch.randn(2, h * w, DV), grid=grid)
    assert out.shape == (2, proj.num_output_tokens(h, w), DL)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    if proj.compressive:
        assert proj.num_output_tokens(24, 24) < 576
    if grid == (24, 24):  # a square N needs no grid
        assert proj(torch.randn(1, 576, DV)).shape[1] == proj.num_output_tokens(24, 24)


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_gradients_reach_every_trainable_parameter(spec):
    proj = build(spec)
    out = proj(torch.randn(2, 576, DV), grid=(24, 24))
    # A random projection of the output, so no gradient cancels out by symmetry.
    (out * torch.randn_like(out)).sum().backward()
    for name, p in proj.named_parameters():
        assert p.grad is not None, f"{spec}: no gradient for {name}"
        assert p.grad.abs().sum() > 0, f"{spec}: zero gradient for {name}"


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_bfloat16(spec):
    proj = build(spec).to(torch.bfloat16)
    out = proj(torch.randn(2, 576, DV, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
    out.float().sum().backward()


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_config_round_trip_rebuilds_the_same_module(spec):
    proj = build(spec)
    config = config_from_dict(json.loads(json.dumps(proj.config.to_dict())))
    assert config == proj.config
    rebuilt = type(proj)(config)
    rebuilt.load_state_dict(proj.state_dict())
    x = torch.randn(1, 576, DV)
    torch.testing.assert_close(rebuilt(x), proj(x))
    assert (rebuilt.trainable, rebuilt.total) == (proj.trainable, proj.total)


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_bad_inputs_fail_with_clear_errors(spec):
    proj = build(spec)
    with pytest.raises(ValueError, match=r"577.*grid"):
        proj(torch.randn(1, 577, DV))  # CLS left in
    with pytest.raises(ValueError, match="N=576"):
        proj(torch.randn(1, 576, DV), grid=(20, 20))
    with pytest.raises(ValueError, match="vision_dim=32"):
        proj(torch.randn(1, 576, DV + 1))


def test_unknown_spec_lists_known_specs():
    with pytest.raises(
        ValueError, match=r"unknown projector spec 'qformer'.*qformer\{L\}_\{M\}.*ldpv2"
    ):
        build_projector("qformer", DV, DL)


@pytest.mark.parametrize("spec", ["cabstractor_150", "dabstractor_150", "ldpv2_150"])
def test_non_square_token_count_fails_at_build(spec):
    with pytest.raises(ValueError, match="perfect square.*150"):
        build(spec)


@pytest.mark.parametrize("spec", ["cabstractor_144", "dabstractor_144", "ldpv2"])
def test_more_tokens_than_patches_fails_at_build_and_forward(spec):
    with pytest.raises(ValueError, match=r"8x8 grid \(64 patches\).*144"):
        build(spec, input_grid=(8, 8))
    proj = build(spec)
    with pytest.raises(ValueError, match=r"8x8 grid \(64 patches\).*144"):
        proj(torch.randn(1, 64, DV))


# -- Q-Former ---------------------------------------------------------------------------------
def test_qformer_defaults_follow_deco():
    proj = build("qformer2_64")
    assert [layer.cross_attn is not None for layer in proj.layers] == [True, False]
    cfg = proj.config
    assert (cfg.hidden_size, cfg.num_heads, cfg.intermediate_size) == (DL, 1, 4 * DL)
    cfg = build("qformer4_8", cross_attention_freq=1, hidden_size=64).config
    assert cfg.num_heads == 1 and cfg.llm_dim == DL
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        build("qformer2_64", hidden_size=48, num_heads=5)


def test_qformer_parameter_count_formula():
    dv, dl, m = 1024, 4096, 64
    with torch.device("meta"):
        proj = build_projector("qformer2_64", dv, dl)
    h, i = dl, 4 * dl  # hidden = llm_dim, intermediate = 4 * hidden
    attn = 4 * (h * h + h) + 2 * h
    ffn = 2 * h * i + i + h + 2 * h
    expected = 2 * dv + dv * h + h + m * h + 2 * h + (2 * attn + ffn) + (attn + ffn) + h * dl + dl
    assert proj.trainable == proj.total == expected == 491_145_216


def test_qformer_saves_attention_probabilities_with_gradients():
    proj = build("qformer2_64", hidden_size=64, num_heads=4)
    x = torch.randn(2, 576, DV)
    plain = proj(x)
    assert proj.attention_maps == []
    proj.save_attentions = True
    out = proj(x)
    torch.testing.assert_close(out, plain, atol=1e-5, rtol=1e-5)  # eager == fused attention
    maps = proj.attention_maps
    assert [(m["layer"], m["kind"]) for m in maps] == [(0, "self"), (0, "cross"), (1, "self")]
    assert maps[0]["probs"].shape == (2, 4, 64, 64)
    assert maps[1]["probs"].shape == (2, 4, 64, 576)
    for m in maps:
        torch.testing.assert_close(m["probs"].sum(-1), torch.ones(m["probs"].shape[:-1]))
    grads = torch.autograd.grad(out[:, 0].sum(), [m["probs"] for m in maps])
    assert all(g.shape == m["probs"].shape and g.abs().sum() > 0 for g, m in zip(grads, maps))
    proj(x)  # a second forward replaces, not nests, the list
    assert len(proj.attention_maps) == 3


# -- Perceiver resampler ----------------------------------------------------------------------
def test_resampler_parameter_count_formula():
    d, depth, n, i, ff, dl = 1024, 6, 64, 512, 4, 4096
    with torch.device("meta"):
        proj = build_projector(f"resampler{depth}_{n}", d, dl)
    flamingo = n * d + depth * (4 * d + 4 * d * i + 2 * d + 2 * ff * d * d) + 2 * d
    assert flamingo == 63_019_008  # the reference survey's computed count
    assert proj.trainable == flamingo + d * dl + dl


def test_resampler_attends_to_patches_and_latents():
    proj = build("resampler2_64")
    proj.save_attentions = True
    proj(torch.randn(2, 144, DV))
    assert [m["probs"].shape for m in proj.attention_maps] == [(2, 8, 64, 144 + 64)] * 2
    proj = build("resampler1_4", width=16)
    assert proj(torch.randn(1, 36, DV)).shape == (1, 4, DL)


# -- C-Abstractor -----------------------------------------------------------------------------
def test_cabstractor_position_embedding_follows_input_grid():
    assert build("cabstractor_16").pos_emb.shape == (1, 576, DV)
    proj = build("cabstractor_16", input_grid=(12, 16))
    assert proj.pos_emb.shape == (1, 192, DV)
    assert proj(torch.randn(1, 192, DV), grid=(12, 16)).shape == (
        1,
        proj.num_output_tokens(12, 16),
        DL,
    )
    assert proj(torch.randn(1, 576, DV)).shape == (1, 16, DL)  # resized bicubically to 24x24


def test_cabstractor_without_blocks_is_pool_then_silu_mlp():
    proj = build("cabstractor_16", depth=0, pos_emb=False)
    x = torch.randn(2, 64, DV)
    pooled = F.adaptive_avg_pool2d(x.reshape(2, 8, 8, DV).permute(0, 3, 1, 2), 4)
    pooled = pooled.permute(0, 2, 3, 1).reshape(2, 16, DV)
    r = proj.readout
    torch.testing.assert_close(proj(x), r[2](F.silu(r[0](pooled))))


# -- D-Abstractor -----------------------------------------------------------------------------
def test_dabstractor_reference_points_start_on_a_uniform_grid():
    ref = build("dabstractor_16").reference_points.detach()
    assert ref.shape == (16, 2) and ref.min() > 0 and ref.max() < 1
    expected = torch.linspace(0.5, 23.5, 4) / 24
    torch.testing.assert_close(ref[:4, 0], expected)  # x varies along a row
    torch.testing.assert_close(ref[::4, 1], expected)  # y down a column


def test_deformable_attention_samples_at_the_reference_point():
    """With zero offsets and identity projections, a query reads the value at its reference point."""
    proj = build("dabstractor_4", d_model=DV, num_heads=4)
    attn = proj.layers[0].cross_attn
    with torch.no_grad():
        attn.sampling_offsets.weight.zero_()
        attn.sampling_offsets.bias.zero_()
        for lin in (attn.value_proj, attn.output_proj):
            lin.weight.copy_(torch.eye(DV))
            lin.bias.zero_()
    h, w = 6, 10  # non-square, so swapping x and y would fail
    value = torch.randn(1, h * w, DV)
    cells = [(0, 0), (2, 7), (5, 9), (3, 1)]
    ref = torch.tensor([[(j + 0.5) / w, (i + 0.5) / h] for i, j in cells])
    out = attn(torch.randn(1, 4, DV), value, (h, w), ref)
    torch.testing.assert_close(out[0], value[0, [i * w + j for i, j in cells]])


# -- LDPv2 ------------------------------------------------------------------------------------
def test_ldpv2_parameter_count_formula():
    dv, dl = 1024, 2048
    with torch.device("meta"):
        proj = build_projector("ldpv2", dv, dl)
    assert proj.trainable == dv * dl + dl + dl * dl + dl + 9 * dl + dl == 6_316_032


def test_ldpv2_pools_to_twelve_by_twelve():
    proj = build("ldpv2")
    assert proj.num_output_tokens(27, 27) == proj.num_output_tokens(24, 24) == 144
    assert proj.num_output_tokens(24, 32) == 140  # aspect kept: 10x14
    assert build("ldpv2_64").num_output_tokens(24, 24) == 64


# -- pixel shuffle ----------------------------------------------------------------------------
def test_pixelshuffle_nanovlm_parameter_count():
    with torch.device("meta"):
        proj = build_projector("pixelshuffle4", 768, 960)
    assert proj.trainable == 768 * 16 * 960 == 11_796_480
    assert proj.num_output_tokens(32, 32) == 64


def test_space_to_depth_channel_order_is_dh_dw_c():
    h, w, s, c = 4, 6, 2, 3
    x = torch.randn(1, h * w, c)
    out = space_to_depth(x, (h, w), s)
    assert out.shape == (1, 6, 12)
    patches = x.reshape(h, w, c)
    for i in range(h // s):
        for j in range(w // s):
            expected = torch.cat(
                [patches[s * i + dh, s * j + dw] for dh in range(s) for dw in range(s)]
            )
            torch.testing.assert_close(out[0, i * (w // s) + j], expected)


def test_pixelshuffle_rejects_indivisible_grids():
    with pytest.raises(ValueError, match=r"grid 25x25 cannot be split into 2x2 blocks.*s=2"):
        build("pixelshuffle2", input_grid=(25, 25))
    proj = build("pixelshuffle2")
    with pytest.raises(ValueError, match=r"grid 5x6 .* s=2"):
        proj(torch.randn(1, 30, DV), grid=(5, 6))
    assert build("pixelshuffle3").num_output_tokens(27, 27) == 81  # SmolVLM: 729 -> 81


def test_pixelshuffle_mapping_is_block_membership():
    proj = build("pixelshuffle2")
    mapping = proj.patch_mapping(4, 6)
    assert mapping.shape == (6, 24)
    torch.testing.assert_close(mapping.sum(1), torch.ones(6))
    assert torch.equal(mapping.nonzero()[:4, 1], torch.tensor([0, 1, 6, 7]))
    # On a divisible square grid it is DeCo's pooling mapping (the same 2x2 windows).
    torch.testing.assert_close(proj.patch_mapping(8, 8), build("avgpool2_16").patch_mapping(8, 8))


# -- the CLI ----------------------------------------------------------------------------------
def run_cli(capsys, *argv: str) -> tuple[int, str]:
    """`decovlm projectors ...` through the CLI's entry point: (exit code, stdout + stderr)."""
    from decovlm.cli import main

    rc = main(["projectors", *argv])
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


def test_cli_lists_every_example_at_paper_size(capsys):
    rc, out = run_cli(capsys, "--json")
    rows = {r["spec"]: r for r in json.loads(out)}
    assert rc == 0 and list(rows) == example_specs()
    assert rows["avgpool2_144"]["trainable"] == 20_979_712
    assert rows["avgpool2_144"]["tokens"] == 144 and rows["linear"]["tokens"] == 576
    assert rows["avgpool2_144"]["compressive"] and not rows["mlp2x_gelu"]["compressive"]
    rc, out = run_cli(capsys, "--grid", "24x32", "--spec", "avgpool2_144", "pixelshuffle2")
    assert rc == 0 and "140" in out and "192" in out and "20,979,712" in out


def test_cli_reports_bad_requests(capsys):
    rc, out = run_cli(capsys, "--spec", "nope")
    assert rc == 2 and "known specs" in out
    rc, out = run_cli(capsys, "--grid", "8x8", "--spec", "avgpool2_144", "--json")
    assert rc == 1 and "M must be <= N" in json.loads(out)[0]["error"]
    rc, out = run_cli(capsys, "--grid", "24by24")
    assert rc == 2 and "24x24" in out
