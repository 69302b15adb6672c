"""Figures: one scale per figure with a colour bar, integer query ticks, nearest upsampling."""

import numpy as np
import pytest
import torch
from PIL import Image

from decovlm.interpret import draw, explain
from decovlm.testing import tiny_model

PROMPT = "USER: <image>\nwhat colour is the circle ? ASSISTANT:"


def test_upsample_nearest_is_patch_accurate_and_raw_values_kept():
    grid = np.array([[0.0, 2.0], [1.0, 0.0]], np.float32)
    up = draw.upsample(grid, (4, 4), "nearest", normalise=False)
    assert np.array_equal(up[:2, 2:], np.full((2, 2), 2.0)) and up[2:, :2].max() == 1.0
    assert draw.upsample(grid, (4, 4), "nearest").max() == 1.0  # min-max by default
    with pytest.raises(ValueError, match="upsampling"):
        draw.upsample(grid, (4, 4), "bicubic")
    assert draw.shared_max([grid, grid * 3]) == 6.0


def test_overlay_uses_the_given_shared_scale():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    heat = draw.overlay(ax, Image.new("RGB", (8, 8)), np.ones((2, 2)), vmax=4.0)
    assert heat.get_clim() == (0.0, 4.0) and heat.get_cmap().name == draw.CMAP
    plt.close(fig)


def test_word_figure_and_query_grid(tmp_path):
    model, processor = tiny_model("qformer2_4")
    image = Image.fromarray((np.random.RandomState(0).rand(32, 32, 3) * 255).astype("uint8"))
    expl = explain(model, processor, image, PROMPT, answer="red square", extra_methods="all")
    view = draw.model_view(processor, image)
    import matplotlib.pyplot as plt

    captured = {}
    real_save = draw._save

    def keep(fig, path):
        captured[path.name] = fig
        axes = fig.get_axes()
        captured[path.name + ":axes"] = [
            (a.get_xlabel(), [t.get_text() for t in a.get_xticklabels()], a.images) for a in axes
        ]
        return real_save(fig, path)

    draw._save = keep
    try:
        paths = draw.draw_all(expl, view, tmp_path, upsampling="nearest")
    finally:
        draw._save = real_save
    assert {p.name for p in paths} == {
        "word_00_red.png",
        "word_01_square.png",
        "query_to_patch.png",
    }
    axes = captured["word_00_red.png:axes"]
    bar = [a for a in axes if a[0] == "visual token (query) index"]
    assert bar and all(t.lstrip("−-").isdigit() for t in bar[0][1] if t)  # integer ticks
    # three Text-to-Patch panels (gae, attention, grad-x-input) on one scale
    clims = {im.get_clim() for _, _, images in axes for im in images[1:]}
    assert len(clims) == 1
    assert any("relevance" in a[0] or a[0] == "" for a in axes)
    with Image.open(tmp_path / "query_to_patch.png") as img:
        assert img.size[0] > 100
    plt.close("all")
    across = draw.draw_words_across([("qformer2_4", expl, view)], tmp_path / "across.png")
    assert across.is_file()
    assert torch.all(expl.text_to_patch >= 0)


def _flag_marks(ax):
    hatches = [p for p in ax.patches if p.get_hatch()]
    texts = [t.get_text() for t in ax.texts]
    return hatches, texts


def test_flagged_map_is_drawn_grey_and_hatched_with_its_reason():
    import matplotlib.pyplot as plt

    fig, (plain, flagged) = plt.subplots(1, 2)
    grid = np.array([[0.0, 1.0], [0.5, 0.2]])
    a = draw.overlay(plain, Image.new("RGB", (8, 8)), grid)
    b = draw.overlay(
        flagged, Image.new("RGB", (8, 8)), grid, flag="gae discounts patch (row 0, col 0)"
    )
    assert a.get_cmap().name == draw.CMAP and _flag_marks(plain) == ([], [])
    assert b.get_cmap().name == draw.FLAG_CMAP  # no colour that reads as relevance
    hatches, texts = _flag_marks(flagged)
    assert hatches and hatches[0].get_hatch() == draw.FLAG_HATCH
    assert any(draw.FLAG_LABEL in t and "discounts patch" in t for t in texts)
    plt.close(fig)


def test_word_figure_marks_only_the_flagged_method(tmp_path, monkeypatch):
    from decovlm.interpret.reliability import Verdict

    model, processor = tiny_model("qformer2_4")
    image = Image.fromarray((np.random.RandomState(1).rand(32, 32, 3) * 255).astype("uint8"))
    expl = explain(model, processor, image, PROMPT, answer="red square")
    reason = "gae discounts patch (row 1, col 2), where the attention map peaks"
    real = type(expl).verdicts

    def verdicts(self, method=None):  # GAE flagged, the attention rollout not
        if (method or self.method) == "gae":
            return [Verdict("negative-at-peak", reason)] * len(self.words)
        return real(self, method)

    monkeypatch.setattr(type(expl), "verdicts", verdicts)
    captured = {}
    real_save = draw._save
    monkeypatch.setattr(
        draw,
        "_save",
        lambda fig, path: captured.setdefault(path.name, fig) and real_save(fig, path),
    )
    draw.draw_word(expl, 0, draw.model_view(processor, image), tmp_path / "w.png")
    axes = captured["w.png"].get_axes()
    panels = {
        a.get_title().split("\n")[0]: a for a in axes if a.get_title().startswith("Text-to-Patch")
    }
    gae, att = panels["Text-to-Patch (gae)"], panels["Text-to-Patch (attention)"]
    assert _flag_marks(gae)[0] and any(reason[:20] in t for t in _flag_marks(gae)[1])
    assert gae.images[-1].get_cmap().name == draw.FLAG_CMAP
    assert _flag_marks(att) == ([], []) and att.images[-1].get_cmap().name == draw.CMAP
    # the colour bar reads the colormap of the map drawn as evidence
    bars = [a._colorbar for a in axes if getattr(a, "_colorbar", None) is not None]
    assert [b.cmap.name for b in bars if b.ax.get_ylabel() == "Text-to-Patch relevance"] == [
        draw.CMAP
    ]
