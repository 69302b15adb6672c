"""Cached frozen-tower features (`data.vision_features`): the same training as from pixels, computed
once, and refused when another tower or preprocessing made them."""

from __future__ import annotations

import pytest
import torch

from decovlm.data.toy import write_toy_dataset
from decovlm.train import load_config, train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("feat_data")
    return write_toy_dataset(root, n=12, kind="chat", text_only_every=4, name="chat.json")


def _run(data, out, **extra):
    overrides = [
        f"data.path={data}",
        f"training.output_dir={out}",
        "training.max_steps=3",
        "training.global_batch_size=4",
        "training.per_device_batch_size=4",
        "training.disable_tqdm=true",
        "training.logging_steps=1",
        "data.sampler=random",
    ] + [f"{k}={v}" for k, v in extra.items()]
    return train(load_config("tiny_noalign", overrides))


def _losses(result):
    return [m["loss"] for m in result.metrics if "loss" in m]


def test_cached_features_train_exactly_as_pixels(data, tmp_path):
    from_pixels = _run(data, tmp_path / "pixels")
    cached = _run(data, tmp_path / "cached", **{"data.vision_features": "auto"})
    files = list((data.parent / "features").glob("*.safetensors"))
    assert len(files) == 1
    assert _losses(cached) == pytest.approx(_losses(from_pixels), rel=1e-5)
    # A second run reuses the file (same tower fingerprint) instead of writing another.
    before = files[0].stat().st_mtime_ns
    _run(data, tmp_path / "again", **{"data.vision_features": "auto"})
    assert files[0].stat().st_mtime_ns == before


def test_features_of_another_tower_are_refused(data, tmp_path):
    from decovlm.data.features import FeatureTable, compute_features, tower_fingerprint
    from decovlm.errors import UserError
    from decovlm.modeling.tiny import tiny_model

    model, processor = tiny_model(seed=0)
    other, _ = tiny_model(seed=1)
    images = ["images/0.png", "images/1.png"]
    path = compute_features(model, processor, data.parent, images, tmp_path / "f.safetensors",
                            progress=False)  # fmt: skip
    table = FeatureTable.open(path, tower_fingerprint(model, processor))
    assert len(table) == 2 and "images/1.png" in table
    with torch.no_grad():
        from decovlm.utils.images import load_image

        want, _ = model.encode_patches(
            processor.preprocess_images([load_image(data.parent / images[1])])
        )
    torch.testing.assert_close(table["images/1.png"], want[0])
    with pytest.raises(UserError, match="another vision tower"):
        FeatureTable.open(path, tower_fingerprint(other, processor))
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="not a feature file"):
        FeatureTable.open(tmp_path / "junk.safetensors")
