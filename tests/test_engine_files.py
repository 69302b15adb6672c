"""Engine config files (DeepSpeed / FSDP) are found by packaged name or by path, and a wrong name
lists the packaged ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from decovlm.train.config import list_presets, load_config
from decovlm.train.engine_files import list_engine_files, resolve_engine_file


def test_packaged_names_resolve_with_or_without_suffix():
    assert {"zero2", "zero3", "fsdp_full_shard", "fsdp_shard_grad_op"} <= set(list_engine_files())
    path = Path(resolve_engine_file("zero3", "deepspeed"))
    assert path == Path(resolve_engine_file("zero3.json", "deepspeed"))
    assert json.loads(path.read_text())["zero_optimization"]["stage"] == 3


def test_a_users_own_file_wins(tmp_path):
    own = tmp_path / "zero3.json"
    own.write_text("{}")
    assert resolve_engine_file(str(own), "deepspeed") == str(own)
    assert resolve_engine_file(None, "deepspeed") is None


@pytest.mark.parametrize("value", ["zero9", "missing/zero3.json", "../configs/zero3"])
def test_unknown_name_names_the_key_and_the_known_files(value):
    with pytest.raises(FileNotFoundError) as err:
        resolve_engine_file(value, "fsdp_config")
    message = str(err.value)
    assert "training.fsdp_config" in message and repr(value) in message
    assert "zero2" in message and "fsdp_full_shard" in message


def test_every_preset_engine_file_resolves_and_a_bad_override_fails_validation():
    for name in list_presets():
        t = load_config(name, []).training
        for key in ("deepspeed", "fsdp_config"):
            value = getattr(t, key)
            assert value is None or Path(resolve_engine_file(value, key)).is_file(), (name, key)
    config = load_config("vicuna7b_finetune", ["training.deepspeed=zero9"])
    with pytest.raises(FileNotFoundError, match="zero9"):
        config.validate()
