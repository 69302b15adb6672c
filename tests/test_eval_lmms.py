"""The lmms-eval adapter against the installed lmms-eval: entry-point discovery, a local task run
in-process (generate_until + multiple_choice) and the stock `python -m lmms_eval` CLI, all offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

lmms_eval = pytest.importorskip("lmms_eval")
pytest.importorskip("lmms_eval.evaluator")  # fails to import when its runtime deps are missing

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from decovlm.eval.lmms_plugin import CLASS_PATH, MODEL_ID, manifest  # noqa: E402
from decovlm.testing import tiny_model  # noqa: E402

UTILS = """
from PIL import Image

def doc_to_visual(doc):
    return [Image.open(doc["image_path"]).convert("RGB")]

def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return "<image>\\n" + doc["question"]

def doc_to_choice(doc):
    return doc["choices"]

def process_results(doc, results):
    return {"exact_match": float(results[0].strip().lower() == doc["answer"])}
"""

GEN_YAML = """
task: decovlm_tiny_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
  cache_dir: {cache}
test_split: test
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: answer
generation_kwargs:
  max_new_tokens: 3
  until: ["ASSISTANT:"]
process_results: !function utils.process_results
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 0.0
"""

MC_YAML = """
task: decovlm_tiny_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
  cache_dir: {cache}
test_split: test
output_type: multiple_choice
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_choice: !function utils.doc_to_choice
doc_to_target: label
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 0.0
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("lmms")
    model, processor = tiny_model("avgpool2_4")
    model_dir = root / "model"
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)
    images = []
    for i, colour in enumerate(["red", "blue", "green"]):
        images.append(root / f"img{i}.png")
        Image.new("RGB", (32, 24), colour).save(images[-1])
    rows = [
        {
            "question": f"what colour is the circle {k} ?",
            "answer": "red",
            "image_path": str(images[k]),
            "choices": ["red", "blue", "green"],
            "label": k,
        }
        for k in range(3)
    ]
    data = root / "data.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    tasks = root / "tasks" / "decovlm_tiny"
    tasks.mkdir(parents=True)
    (tasks / "utils.py").write_text(UTILS)
    cache = root / "hf_cache"
    (tasks / "decovlm_tiny_gen.yaml").write_text(GEN_YAML.format(data=data, cache=cache))
    (tasks / "decovlm_tiny_mc.yaml").write_text(MC_YAML.format(data=data, cache=cache))
    # A dist-info folder that declares the entry point exactly as pyproject.toml does.
    site = root / "site"
    dist = site / "decovlm_lmms_test-0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: decovlm-lmms-test\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text(
        "[lmms_eval.models]\ndecovlm = decovlm.eval.lmms_plugin:manifest\n"
    )
    return {
        "root": root,
        "model_dir": model_dir,
        "tasks": root / "tasks",
        "site": site,
        "model": model,
        "processor": processor,
    }


def test_entry_point_is_discovered_by_lmms_eval_registry(setup, monkeypatch):
    from lmms_eval.api.model import lmms
    from lmms_eval.models.registry_v2 import ModelRegistryV2

    monkeypatch.syspath_prepend(str(setup["site"]))
    registry = ModelRegistryV2()
    registry.load_entrypoint_manifests()
    resolved = registry.resolve(MODEL_ID)
    assert resolved.class_path == CLASS_PATH and resolved.model_type == "simple"
    assert registry.resolve("deco").model_id == MODEL_ID
    cls = registry.get_model_class(MODEL_ID)  # imports and validates (lmms subclass, is_simple)
    assert issubclass(cls, lmms) and cls.__name__ == "DecoVLMLMM"


def _register_globally():
    from lmms_eval.models import MODEL_REGISTRY_V2

    MODEL_REGISTRY_V2.register_manifest(manifest(), overwrite=True)


def test_simple_evaluate_local_tasks(setup, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    _register_globally()
    results = simple_evaluate(
        model="decovlm",
        model_args=f"pretrained={setup['model_dir']}",
        tasks=["decovlm_tiny_gen", "decovlm_tiny_mc"],
        task_manager=TaskManager(include_path=str(setup["tasks"])),
        batch_size=2,
        log_samples=True,
    )
    gen = results["results"]["decovlm_tiny_gen"]
    mc = results["results"]["decovlm_tiny_mc"]
    assert 0.0 <= gen["exact_match,none"] <= 1.0
    assert 0.0 <= mc["acc,none"] <= 1.0
    samples = results["samples"]["decovlm_tiny_gen"]
    assert len(samples) == 3 and all(isinstance(s["resps"][0][0], str) for s in samples)
    mc_samples = results["samples"]["decovlm_tiny_mc"]
    assert len(mc_samples) == 3 and len(mc_samples[0]["resps"]) == 3  # one loglikelihood per choice


def test_adapter_matches_direct_generation_and_likelihood(setup):
    from lmms_eval.api.instance import Instance

    from decovlm.eval.generate import decovlm_generate_fn
    from decovlm.eval.lmms_adapter import DecoVLMLMM

    lm = DecoVLMLMM(model=setup["model"], processor=setup["processor"], batch_size=2)
    image = Image.new("RGB", (32, 24), "red")
    docs = [{"q": "what colour ?"}, {"q": "how many objects ?"}, {"q": "is there a star ?"}]
    lm.task_dict = {"t": {"test": docs}}

    def visual(doc):
        return [image]

    gen_kwargs = {"max_new_tokens": 3, "until": ["\n\n"]}
    reqs = [
        Instance(
            "generate_until",
            (f"<image>\n{d['q']}", gen_kwargs, visual, i, "t", "test"),
            idx=0,
            metadata={"task": "t", "doc_id": i, "repeats": 1},
        )
        for i, d in enumerate(docs)
    ]
    got = lm.generate_until(reqs)
    expected = decovlm_generate_fn(
        setup["model"], setup["processor"], batch_size=2, max_new_tokens=3
    )([(image, d["q"]) for d in docs])
    assert got == expected

    # log p(continuation): the greedy continuation is flagged greedy and beats another word
    greedy_word = decovlm_generate_fn(setup["model"], setup["processor"], max_new_tokens=1)(
        [(image, "what colour ?")]
    )[0]
    other = "blue" if greedy_word != "blue" else "red"
    ll_reqs = [
        Instance(
            "loglikelihood",
            ("what colour ?", " " + w, visual, 0, "t", "test"),
            idx=0,
            metadata={"task": "t", "doc_id": 0, "repeats": 1},
        )
        for w in (greedy_word, other)
    ]
    from lmms_eval.api.instance import GenerationResult

    out = [r.text if isinstance(r, GenerationResult) else r for r in lm.loglikelihood(ll_reqs)]
    (lp_greedy, is_greedy), (lp_other, other_greedy) = out
    assert is_greedy and not other_greedy
    assert lp_greedy > lp_other and lp_greedy < 0
    with pytest.raises(ValueError, match="single-round tasks only"):
        lm.generate_until_multi_round([])
    with pytest.raises(ValueError, match="pretrained"):
        DecoVLMLMM()


@pytest.mark.slow
def test_stock_lmms_eval_cli(setup, tmp_path):
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(setup["site"]), env.get("PYTHONPATH", "")]),
        HF_DATASETS_OFFLINE="1",
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
    )
    cmd = [
        sys.executable,
        "-m",
        "lmms_eval",
        "--model",
        "decovlm",
        "--model_args",
        f"pretrained={setup['model_dir']}",
        "--tasks",
        "decovlm_tiny_gen",
        "--include_path",
        str(setup["tasks"]),
        "--batch_size",
        "1",
        "--output_path",
        str(tmp_path / "out"),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "decovlm_tiny_gen" in proc.stdout and "exact_match" in proc.stdout
    written = list(Path(tmp_path / "out").rglob("*results.json"))
    assert written, textwrap.shorten(proc.stdout, 500)
