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
