"""`decovlm world pretrain` and the shipped backbones: the command makes a folder that loads the way
CLIP and Vicuna do, its stamp lists every file, and the copy shipped in the package matches its stamp."""

from __future__ import annotations

import json

import pytest

from decovlm.world.pretrain import (
    DEFAULT_WORLD,
    SHIPPED,
    read_stamp,
    shipped_backbones,
    verify,
    world_hash,
)
from decovlm.world.scene import WorldConfig


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    from decovlm.cli import main

    out = tmp_path_factory.mktemp("pretrained") / "weights"
    assert main(["world", "pretrain", "--out", str(out), "--backbones", "tiny", "--device", "cpu",
                 "--no-progress"]) == 0  # fmt: skip
    return out


def test_pretrain_writes_loadable_backbones_with_a_stamp_and_a_card(made):
    from decovlm.modeling import DecoVLMForConditionalGeneration

    assert (made / "vision" / "model.safetensors").is_file()
    assert (made / "llm" / "model.safetensors").is_file() and (
        made / "llm" / "tokenizer.json"
    ).is_file()
    assert not (made / ".pretrain_world").exists()  # the text-only pretraining world is removed
    stamp = read_stamp(made)
    assert stamp["world_hash"] == world_hash(DEFAULT_WORLD) and stamp["budget"] == "tiny"
    assert verify(made) == []
    card = (made / "README.md").read_text()
    assert "decovlm world pretrain" in card and "colour" in card and "MB" in card
    # The demo's path: the folders go to from_components exactly as hub checkpoints would.
    paths = shipped_backbones(DEFAULT_WORLD, made)
    model = DecoVLMForConditionalGeneration.from_components(paths.vision, paths.llm,
                                                            projector="avgpool2_16")  # fmt: skip
    assert model.num_image_tokens == 16 and model.patch_grid == (8, 8)


def test_another_world_does_not_get_the_shipped_backbones(made):
    assert shipped_backbones(WorldConfig(position_grid=0), made) is None
    assert shipped_backbones(WorldConfig(position_grid=8, image_size=96), made) is None


def test_verify_names_changed_missing_and_unlisted_files(made, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(made, copy)
    (copy / "llm" / "config.json").write_text("{}")
    (copy / "vision" / "preprocessor_config.json").unlink()
    (copy / "vision" / "extra.bin").write_bytes(b"x")
    problems = " | ".join(verify(copy))
    assert "llm/config.json: sha256 differs" in problems
    assert "vision/preprocessor_config.json: missing" in problems
    assert "vision/extra.bin: not in the stamp" in problems


def test_the_shipped_backbones_match_their_stamp_and_this_world():
    """The package's copy: every file as stamped, made for the world this code writes, small."""
    stamp = read_stamp(SHIPPED)
    assert stamp is not None, (
        f"{SHIPPED} has no stamp.json: remake it with `decovlm world pretrain`"
    )
    assert verify(SHIPPED) == []
    assert stamp["world_hash"] == world_hash(DEFAULT_WORLD), (
        "the world's settings changed since the shipped backbones were made: remake them with "
        "`decovlm world pretrain --out src/decovlm/world/weights`"
    )
    assert stamp["budget"] == "ship"
    size = sum(f["bytes"] for f in stamp["files"].values())
    assert size < 16 * 2**20, f"shipped backbones are {size / 2**20:.1f} MB"
    assert json.loads((SHIPPED / "llm" / "config.json").read_text())["model_type"] == "llama"
