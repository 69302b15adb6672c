"""Stage freezing, the align -> finetune projector hand-off, output folder and config errors."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from decovlm.data.toy import write_toy_dataset
from decovlm.modeling import DecoVLMForConditionalGeneration
from decovlm.train import load_config, train
from decovlm.train.build import build_model
from decovlm.train.config import config_from_dict


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return {
        "caption": write_toy_dataset(root, n=16, kind="caption", name="captions.json"),
        "chat": write_toy_dataset(root, n=16, kind="chat", text_only_every=4, name="chat.json"),
    }


def _config(preset, out, data_path, **extra):
    overrides = [
        f"data.path={data_path}",
        f"training.output_dir={out}",
        "training.max_steps=2",
        "training.global_batch_size=4",
        "training.per_device_batch_size=4",
        "training.disable_tqdm=true",
    ]
    return load_config(preset, overrides + [f"{k}={v}" for k, v in extra.items()])


def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before, after):
    return {k for k in before if not torch.equal(before[k], after[k])}


class Snapshot(TrainerCallback):
    """Captures the model's weights when training starts (after loading, before any step)."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.weights = _state(model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.modes = (model.vision_tower.training, model.language_model.training)


@pytest.fixture(scope="module")
def align_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("align")
    cfg = _config("tiny_align", out, data["caption"], **{"training.learning_rate": 1e-2})
    snap = Snapshot()
    result = train(cfg, callbacks=[snap])
    return result, snap.weights


def test_align_changes_only_the_projector(align_run):
    result, before = align_run
    after = load_file(str(result.model_path / "model.safetensors"))
    changed = _changed({k: before[k] for k in after}, after)
    assert changed and all(k.startswith("projector.") for k in changed)
    assert {k for k in before if k.startswith("projector.")} <= changed
    # output folder: resolved config, metrics per step, projector artefact, trainable counts
    assert (result.output_dir / "config.yaml").is_file()
    assert [m["step"] for m in result.metrics if "loss" in m] == [1, 2]
    assert {"loss", "lr", "grad_norm", "epoch", "time"} <= set(result.metrics[0])
    assert result.projector_path.name == "projector.safetensors"
    assert (result.output_dir / "projector_config.json").is_file()
    counts = {r["module"]: r for r in result.trainable}
    assert counts["projector"]["trainable"] == counts["projector"]["total"] > 0
    assert counts["language_model"]["trainable"] == counts["vision_tower"]["trainable"] == 0
    model = DecoVLMForConditionalGeneration.from_pretrained(result.model_path)
    assert model.config.projector == "avgpool2_4"


def test_finetune_loads_the_align_projector_and_keeps_vision_frozen(align_run, data, tmp_path):
    align, _ = align_run
    cfg = _config(
        "tiny_finetune",
        tmp_path / "ft",
        data["chat"],
        **{"training.projector_path": align.projector_path},
    )
    snap = Snapshot()
    result = train(cfg, callbacks=[snap])
    projector = load_file(str(align.projector_path))
    for k, v in projector.items():
        assert torch.equal(snap.weights[f"projector.{k}"], v), k  # loaded before training started
    after = load_file(str(result.model_path / "model.safetensors"))
    changed = _changed({k: snap.weights[k] for k in after}, after)
    assert not any(k.startswith("vision_tower.") for k in changed)
    assert any(k.startswith("language_model.") for k in changed)
    assert any(k.startswith("projector.") for k in changed)
    assert snap.modes == (False, True)  # the frozen vision tower stays in eval mode


def test_finetune_rejects_a_projector_of_another_spec(align_run, data, tmp_path):
    align, _ = align_run
    cfg = _config(
        "tiny_finetune",
        tmp_path / "ft",
        data["chat"],
        **{"training.projector_path": align.projector_path, "model.projector": "avgpool2_1"},
    )
    with pytest.raises(ValueError, match="trained as 'avgpool2_4'"):
        train(cfg)


def test_no_align_with_lora_trains_adapters_and_saves_a_merged_model(data, tmp_path):
    cfg = _config(
        "tiny_noalign",
        tmp_path / "lora",
        data["chat"],
        **{"training.lora.enabled": "true", "training.lora.r": 4, "training.lora.alpha": 8},
    )
    result = train(cfg)
    rows = {r["module"]: r for r in result.trainable}
    assert 0 < rows["language_model"]["trainable"] < rows["language_model"]["total"]
    model = DecoVLMForConditionalGeneration.from_pretrained(result.model_path)
    assert not any("lora" in k for k in model.state_dict())


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ValueError, match=r"training.lr.*known keys.*learning_rate"):
        load_config("tiny_align", ["training.lr=1"])
    with pytest.raises(ValueError, match="needs the align stage's projector"):
        config_from_dict({"data": {"path": "x.json"}, "training": {"stage": "finetune"}}).validate()
    cfg = load_config("vicuna7b_finetune", ["model.projector=avgpool2_64"])
    assert cfg.training.projector_path == "runs/vicuna7b_avgpool2_64_align/projector.safetensors"
    assert (cfg.training.learning_rate, cfg.training.global_batch_size) == (2e-5, 128)


def test_tiny_model_section_builds_the_paper_token_counts():
    cfg = load_config(
        "tiny_align",
        ["model.tiny.image_size=96", "model.tiny.patch_size=4", "model.projector=avgpool2_144"],
    )
    model, processor = build_model(cfg.model)
    assert model.patch_grid == (24, 24) and processor.num_image_tokens == 144


def test_components_from_local_folders(tmp_path):
    """The path the paper presets take (vision + LLM by name), with local folders instead of the hub."""
    from decovlm.testing import tiny_llm, tiny_tokenizer, tiny_vision

    tok = tiny_tokenizer()
    vision, image_processor = tiny_vision()
    vision.save_pretrained(tmp_path / "vis")
    image_processor.save_pretrained(tmp_path / "vis")
    tiny_llm(vocab_size=len(tok)).save_pretrained(tmp_path / "llm")
    tok.save_pretrained(tmp_path / "llm")
    cfg = load_config(
        "tiny_align",
        [
            f"model.vision={tmp_path / 'vis'}",
            f"model.llm={tmp_path / 'llm'}",
            "model.tiny=null",
            "data.path=x.json",
        ],
    )
    model, processor = build_model(cfg.model)
    assert processor.num_image_tokens == model.num_image_tokens == 4
    assert processor.image_token_id == model.config.image_token_id


def test_finetune_can_start_from_a_saved_model(align_run, data, tmp_path):
    align, _ = align_run
    cfg = _config(
        "tiny_finetune",
        tmp_path / "ft",
        data["chat"],
        **{"training.projector_path": "null", "model.init_from": align.model_path},
    )
    snap = Snapshot()
    train(cfg, callbacks=[snap])
    projector = load_file(str(align.projector_path))
    for k, v in projector.items():
        assert torch.equal(snap.weights[f"projector.{k}"], v), (
            k,
            v.flatten()[:3],
            snap.weights[f"projector.{k}"].flatten()[:3],
        )
