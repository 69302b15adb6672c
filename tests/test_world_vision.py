"""The vision encoder's per-patch targets and probe: geometry shares sum to one per object, the
owner's box is the rendered box, and the optional geometry heads make position linearly readable."""

from __future__ import annotations

import numpy as np
import pytest

from decovlm.world import WorldConfig, patch_labels, render_scene, sample_scene
from decovlm.world.vision import VisionSpec, probe, render_patch_data, train_vision

TINY = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, scenes=200,
            steps=80, batch_size=16, probe_scenes=60)  # fmt: skip


def test_geometry_targets_match_the_rendered_objects():
    config = WorldConfig()
    data = render_patch_data(0, "train", 0, 6, config, 8)
    for n in range(6):
        rendered = render_scene(sample_scene(0, "train", n, config))
        owner = patch_labels(rendered.labels, 8).reshape(-1)
        geometry = data.geometry[n].numpy()
        assert np.all(geometry[owner < 0] == 0)  # background carries no geometry
        for i in set(owner[owner >= 0].tolist()):
            mine = owner == i
            assert geometry[mine, 0].sum() == pytest.approx(1.0, abs=1e-5)  # shares sum to one
            assert np.all(geometry[mine, 0] > 0)
            np.testing.assert_allclose(geometry[mine, 1:], np.tile(rendered.normalized_box(i),
                                       (int(mine.sum()), 1)), atol=1e-6)  # fmt: skip


def test_geometry_heads_make_boxes_linearly_readable():
    config = WorldConfig()
    results = {}
    for weight in (0.0, 1.0):
        spec = VisionSpec(**TINY, geometry_weight=weight)
        model, loss = train_vision(spec, config, seed=0, progress=False)
        assert np.isfinite(loss)
        results[weight] = probe(model, spec, config, seed=0)
    for r in results.values():
        assert {"box_mae", "box_mae_baseline", "share_mae", "share_mae_baseline"} <= set(r)
    # Without the heads nothing asks the features to keep where the object is.
    assert results[1.0]["box_mae"] < 0.8 * results[1.0]["box_mae_baseline"]
    assert results[1.0]["box_mae"] < results[0.0]["box_mae"]


def test_negative_geometry_weight_is_refused():
    with pytest.raises(ValueError, match="geometry_weight"):
        train_vision(VisionSpec(**TINY, geometry_weight=-1.0), WorldConfig(), 0, progress=False)
