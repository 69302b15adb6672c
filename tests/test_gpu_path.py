"""What the first GPU run broke, checked on CPU: hub kernels off in every loader (a spy on
`from_pretrained`), config-built paper-layout models run, and the device-aware tests
(`pytest --device cuda`, bf16) of model, training, generation and relevance."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest
import torch
from transformers import PreTrainedModel

from decovlm.modeling import DecoVLMForConditionalGeneration
from decovlm.modeling import kernels as kernels_mod
from decovlm.modeling.kernels import kernel_kwargs, resolve_use_kernels
from decovlm.testing import tiny_model

SRC = Path(__file__).resolve().parents[1] / "src" / "decovlm"


# -- hub kernels: off unless asked, in every loader ---------------------------------------------
@pytest.fixture
def spy(monkeypatch):
    """Every `from_pretrained` of a model class (Auto classes end there too): its kwargs."""
    calls: list[tuple[str, dict]] = []
    original = PreTrainedModel.from_pretrained.__func__

    def recording(cls, *args, **kwargs):
        calls.append((cls.__name__, dict(kwargs)))
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", classmethod(recording))
    monkeypatch.delenv(kernels_mod.ENV, raising=False)
    return calls


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A saved decovlm model, its parts saved as components, and a LLaVA checkpoint."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    root = tmp_path_factory.mktemp("saved")
    model, processor = tiny_model("mlp2x_gelu")
    model.save_pretrained(root / "deco")
    processor.save_pretrained(root / "deco")
    model.vision_tower.save_pretrained(root / "vision")
    processor.image_processor.save_pretrained(root / "vision")
    model.language_model.save_pretrained(root / "llm")
    processor.tokenizer.save_pretrained(root / "llm")
    llava = LlavaForConditionalGeneration(
        LlavaConfig(
            vision_config=model.config.vision_config,
            text_config=model.config.text_config,
            image_token_id=model.config.image_token_id,
        )
    )
    llava.save_pretrained(root / "llava")
    return root


def _loaders(root: Path):
    from transformers import AutoModelForImageTextToText

    from decovlm.convert import from_llava
    from decovlm.modeling.loading import load_model
    from decovlm.train.build import build_model
    from decovlm.train.config import ModelSection

    return {
        "load_model": lambda: load_model(root / "deco", device="cpu"),
        "auto_class": lambda: AutoModelForImageTextToText.from_pretrained(root / "deco"),
        "train.init_from": lambda: build_model(
            ModelSection(init_from=str(root / "deco"), projector="mlp2x_gelu")
        ),
        "train.components": lambda: build_model(
            ModelSection(vision=str(root / "vision"), llm=str(root / "llm"))
        ),
        "from_components": lambda: DecoVLMForConditionalGeneration.from_components(
            root / "vision", root / "llm", projector="linear"
        ),
        "from_llava": lambda: from_llava(root / "llava"),
    }


def test_every_loader_passes_use_kernels_off(spy, saved):
    for name, load in _loaders(saved).items():
        spy.clear()
        load()
        assert spy, f"{name} loaded nothing through from_pretrained"
        for cls, kwargs in spy:
            assert kwargs.get("use_kernels") is False, f"{name}: {cls}.from_pretrained got {kwargs}"


def test_use_kernels_setting_reaches_the_load(spy, saved, monkeypatch):
    # On, with the package and the hub "present" (nothing is fetched: the spy stops the load).
    monkeypatch.setattr(kernels_mod, "check_kernels_usable", lambda: None)

    def stop(cls, *args, **kwargs):
        spy.append((cls.__name__, dict(kwargs)))
        raise RuntimeError("stop")

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", classmethod(stop))
    from decovlm.modeling.loading import load_model

    with pytest.raises(RuntimeError, match="stop"):
        load_model(saved / "deco", device="cpu", use_kernels=True)
    monkeypatch.setenv(kernels_mod.ENV, "1")
    with pytest.raises(RuntimeError, match="stop"):
        DecoVLMForConditionalGeneration.from_pretrained(saved / "deco")
    assert [kw["use_kernels"] for _, kw in spy] == [True, True]


def test_use_kernels_on_fails_clearly_without_package_or_hub(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        kernels_mod.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "kernels" else real(name, *a),
    )
    with pytest.raises(RuntimeError, match="`kernels` package is not installed"):
        kernel_kwargs(True)
    monkeypatch.undo()
    monkeypatch.setattr(kernels_mod.importlib.util, "find_spec", lambda name, *a: object())
    monkeypatch.setattr("huggingface_hub.constants.is_offline_mode", lambda: True)
    with pytest.raises(RuntimeError, match="offline"):
        kernel_kwargs(True)


def test_use_kernels_environment_values(monkeypatch):
    monkeypatch.delenv(kernels_mod.ENV, raising=False)
    assert resolve_use_kernels(None) is False
    assert kernel_kwargs(None) == {"use_kernels": False}
    monkeypatch.setenv(kernels_mod.ENV, "off")
    assert resolve_use_kernels(None) is False
    assert resolve_use_kernels(True) is True  # an explicit value wins
    monkeypatch.setenv(kernels_mod.ENV, "maybe")
    with pytest.raises(ValueError, match="DECOVLM_USE_KERNELS"):
        resolve_use_kernels(None)


def _from_pretrained_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "from_pretrained"
        ):
            yield node


def test_no_model_from_pretrained_in_the_package_bypasses_the_setting():
    """A future loader must pass `use_kernels` (or forward **kwargs that a spied loader fills)."""
    exempt_suffixes = ("Tokenizer", "Processor", "Config", "DecoVLMForConditionalGeneration")
    offenders = []
    for path in SRC.rglob("*.py"):
        for call in _from_pretrained_calls(ast.parse(path.read_text(encoding="utf-8"))):
            receiver = ast.unparse(call.func.value)
            if receiver.endswith(exempt_suffixes) or receiver.startswith("super("):
                continue  # not a model, or decovlm's own class (its override defaults the setting)
            keywords = {k.arg for k in call.keywords}
            if "use_kernels" in keywords or None in keywords:  # None: a **mapping
                continue
            offenders.append(f"{path.relative_to(SRC)}:{call.lineno} {ast.unparse(call)}")
    assert not offenders, offenders


# -- a model built from a paper config runs -----------------------------------------------------
def small_paper_config(projector: str = "avgpool2_144"):
    """The paper's token layout (576 patches, vocabulary 32000, <image> = 32000), tiny widths."""
    from decovlm.presets import paper_config

    return paper_config(
        projector,
        vision=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2
        ),
        text=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
        ),
    )


def test_config_built_paper_model_runs_forward_and_generate():
    config = small_paper_config()
    assert config.image_token_id == 32000
    torch.manual_seed(0)
    model = DecoVLMForConditionalGeneration(config).eval()
    assert model.get_input_embeddings().num_embeddings == 32001
    assert model.config.text_config.vocab_size == 32001  # saved configs match the weights
    m = model.num_image_tokens
    assert m == 144
    ids = torch.cat(
        [torch.tensor([[1]]), torch.full((1, m), 32000), torch.tensor([[450, 29871]])], 1
    )
    pixels = torch.randn(1, 3, 336, 336)
    with torch.no_grad():
        out = model(input_ids=ids, pixel_values=pixels)
        generated = model.generate(
            input_ids=ids, pixel_values=pixels, max_new_tokens=3, min_new_tokens=3, do_sample=False
        )
    assert out.logits.shape == (1, ids.shape[1], 32001)
    assert generated.shape == (1, ids.shape[1] + 3)
    assert not (generated[0, ids.shape[1] :] == 32000).any()  # the placeholder is never generated


def test_config_inside_the_vocabulary_is_left_alone():
    config = small_paper_config()
    config.image_token_id = 5
    model = DecoVLMForConditionalGeneration(config)
    assert model.get_input_embeddings().num_embeddings == 32000


# -- device-aware tests: `pytest --device cuda` runs them on a GPU in bf16 ------------------------
def test_model_train_step_and_generate_on_device(device, dtype, red_image):
    model, processor = tiny_model("avgpool2_4")
    model = model.to(device=device, dtype=dtype).train()
    batch = processor(
        text=["USER: <image>\nwhat colour ? ASSISTANT: red"],
        images=[red_image],
        return_tensors="pt",
    )
    batch = {k: v.to(device) for k, v in batch.items()}
    labels = batch["input_ids"].masked_fill(batch["input_ids"] == model.config.image_token_id, -100)
    loss = model(**batch, labels=labels).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert model.projector.parameters().__next__().grad is not None
    model.eval()
    with torch.no_grad():
        cached = model.generate(**batch, max_new_tokens=4, do_sample=False)
        uncached = model.generate(**batch, max_new_tokens=4, do_sample=False, use_cache=False)
    assert cached.shape[1] == batch["input_ids"].shape[1] + 4
    if dtype == torch.float32:  # bf16 rounding may flip a near-tie between the two paths
        assert torch.equal(cached, uncached)


def test_training_stage_on_device(device, tmp_path):
    from decovlm.data.toy import write_toy_dataset
    from decovlm.train import load_config, train

    data = write_toy_dataset(tmp_path / "data", n=8, kind="chat")
    cuda = device.type == "cuda"
    result = train(
        load_config(
            "tiny_noalign",
            [
                f"data.path={data}",
                f"training.output_dir={tmp_path / 'run'}",
                "training.max_steps=2",
                "training.global_batch_size=4",
                "training.per_device_batch_size=4",
                "training.disable_tqdm=true",
                f"training.use_cpu={str(not cuda).lower()}",
                f"training.precision={'bf16' if cuda else 'fp32'}",
            ],
        )
    )
    assert result.global_step == 2
    assert all(torch.isfinite(torch.tensor(m["loss"])) for m in result.metrics if "loss" in m)
    assert (result.model_path / "config.json").is_file()


def test_explain_on_device_picks_gradients_by_device(device, dtype, red_image, monkeypatch):
    explain_mod = importlib.import_module(
        "decovlm.interpret.explain"
    )  # the package re-exports a function of that name
    seen = []
    original = explain_mod._gradients

    def recording(targets, index, inputs, batched):
        seen.append(batched)
        return original(targets, index, inputs, batched)

    monkeypatch.setattr(explain_mod, "_gradients", recording)
    model, processor = tiny_model("avgpool2_4")
    model = model.to(device=device, dtype=dtype)
    result = explain_mod.explain(
        model, processor, red_image, "USER: <image>\nwhat colour ? ASSISTANT:", answer="red blue"
    )
    assert seen and set(seen) == {device.type == "cuda"}
    assert torch.isfinite(torch.as_tensor(result.text_to_patch).float()).all()
    seen.clear()
    explain_mod.explain(
        model, processor, red_image, "USER: <image>\nwhat colour ? ASSISTANT:", answer="red blue",
        batched=device.type != "cuda",
    )  # fmt: skip
    assert set(seen) == {device.type != "cuda"}  # the default is overridable


# -- the GPU check's CPU-testable parts ---------------------------------------------------------
BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    """benchmarks/ on the path (its scripts import `common`), RESULTS.md never written."""
    monkeypatch.syspath_prepend(str(BENCH))
    import common

    monkeypatch.setattr(common, "write_section", lambda *a: pytest.fail("RESULTS.md written"))
    return BENCH


def test_gpu_check_plan_and_budget(bench, tmp_path, capsys):
    import gpu_check

    args = gpu_check.parse_args(["--out", str(tmp_path), "--parts", "tests", "fsdp", "deepspeed"])
    parts = gpu_check.plan(args, tmp_path / "train.json")
    assert [p.name for p in parts] == ["tests", "fsdp", "deepspeed"]
    assert parts[0].cmd[parts[0].cmd.index("--device") + 1] == "cuda"
    assert "training.fsdp=full_shard auto_wrap" in parts[1].cmd
    assert "training.deepspeed=zero3" in parts[2].cmd
    assert all("training.max_steps=20" in p.cmd for p in parts[1:])
    # every part within the budget, the later ones keep their minimum
    limits = gpu_check.limits_within(gpu_check.plan(gpu_check.parse_args([]), tmp_path), 470)
    assert sum(limits) <= 470 and min(limits) >= gpu_check.MIN_LIMIT
    assert gpu_check.limits_within(parts, 50) == [20, 20, 10]  # < MIN_LIMIT: skipped
    assert gpu_check.main(["--dry-run", "--step-args", "--batch", "16"]) == 0
    assert "benchmarks/step.py --device cuda" in capsys.readouterr().out
    step_args = gpu_check.parse_args(["--step-args", "--batch", "16", "--text", "64"]).step_args
    assert step_args == ["--batch", "16", "--text", "64"]


def test_gpu_check_requirements(bench):
    import gpu_check

    declared = gpu_check.declared_requirements()
    assert any(r.startswith("transformers") for r in declared)
    assert gpu_check.missing_requirements(declared) == []  # this venv meets the minimums
    assert gpu_check.missing_requirements(["transformers>=99", "no-such-package-xyz"]) == [
        "transformers>=99",
        "no-such-package-xyz",
    ]


def test_gpu_check_runs_and_reports_a_part(bench, tmp_path):
    import sys

    import gpu_check

    ok = gpu_check.Part("tests", [sys.executable, "-c", "print('3 passed, 1 skipped')"], 30)
    refused = gpu_check.Part(
        "deepspeed",
        [
            sys.executable,
            "-c",
            "print('decovlm train: error: training.deepspeed=zero3 needs X'); exit(2)",
        ],
        30,
    )
    results = [gpu_check.run_part(p, 30, tmp_path) for p in (ok, refused)]
    results.append(gpu_check.run_part(ok, 5, tmp_path))  # too little time left: skipped
    assert [r["status"] for r in results] == [
        "ok",
        "refused: training.deepspeed=zero3 needs X",
        "skipped (time budget)",
    ]
    body = gpu_check.report(results, tmp_path, 12.0)
    assert body.startswith("## GPU check") and "3 passed, 1 skipped" in body
    assert "Machine: " in body


def test_step_benchmark_memory_fit(bench, monkeypatch):
    import step

    # memory = 100 + 10 per sample: a budget of 260 fits 16
    assert step.fit_batch([(4, 140.0), (8, 180.0)], 260.0) == 16
    assert step.fit_batch([(4, 140.0), (8, 140.0)], 260.0, ceiling=64) == 64
    args = step.parse_args(["--batch", "8"])
    calls = []

    def fake_run(model, batch, args, device, count_flops=False):
        calls.append(batch)
        if batch > 14:  # the fit says 16, the allocator disagrees
            raise torch.OutOfMemoryError("CUDA out of memory")
        return {"batch": batch, "peak_bytes": 100.0 + 10 * batch, "step_s": 1.0}

    monkeypatch.setattr(step, "run", fake_run)
    first = {"peak_bytes": 180.0}
    result = step.equal_memory(None, 260.0, first, args, torch.device("cpu"))
    assert calls == [4, 16, 14] and result["batch"] == 14


def test_step_benchmark_tiny_on_cpu(bench, capsys):
    import step

    args = step.parse_args(
        ["--scale", "tiny", "--device", "cpu", "--dtype", "float32", "--batch", "1", "--text", "4",
         "--steps", "1", "--warmup", "0", "--projectors", "mlp2x_gelu", "avgpool2_64", "--no-write"]
    )  # fmt: skip
    result = step.measure(args)
    names = [r["model"] for r in result["rows"]]
    assert names == ["LLaVA (transformers)", "decovlm mlp2x_gelu", "decovlm avgpool2_64"]
    llava, ours, pooled = result["rows"]
    assert llava["sequence"] == ours["sequence"] == 256 + 4 and pooled["sequence"] == 64 + 4
    assert llava["flops"] == ours["flops"] > pooled["flops"] > 0  # the same model, counted alike
    assert result["peak_flops"] > 0
    body = step.report(result, args)
    assert "| decovlm avgpool2_64 | 64 | 68 | 1 |" in body and "3.82x" in body  # 260 / 68
