"""Answers are kept apart from how they are scored: rescoring, reruns with another convention, and
the eval CLI's checks before any model loads (one line, exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from decovlm.cli import main
from decovlm.errors import UserError
from decovlm.eval import run_benchmark
from decovlm.eval.runner import rescore_benchmark
from decovlm.utils.io import read_json
from eval_fixtures import FakeModel, png

# The two questions: the current vqaEval.py scores both 1.0, its 2016 revision 0.0 and 0.6.
GOLD = {7: ["two"] * 4 + ["3"] * 6, 8: ["a dog"] * 8 + ["dog"] * 2}
RULES = {"How many": "2", "What animal": "dog"}


def make_vqav2(root: Path) -> Path:
    png(root / "val2014" / "COCO_val2014_000000000042.jpg")
    questions = [
        {"question_id": 7, "image_id": 42, "question": "How many cats?"},
        {"question_id": 8, "image_id": 42, "question": "What animal?"},
    ]
    annotations = [
        {
            "question_id": qid,
            "answer_type": "other",
            "answers": [{"answer": a, "answer_id": i + 1} for i, a in enumerate(answers)],
        }
        for qid, answers in GOLD.items()
    ]
    (root / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(
        json.dumps({"questions": questions})
    )
    (root / "v2_mscoco_val2014_annotations.json").write_text(
        json.dumps({"annotations": annotations})
    )
    return root


@pytest.fixture
def run(tmp_path):
    data = make_vqav2(tmp_path / "data")
    out = tmp_path / "out"
    model = FakeModel(RULES)
    result = run_benchmark("vqav2", model, data, out, model_name="m", progress=False)
    assert model.n_prompts == 2
    assert result["convention"] == "llava" and result["scores"]["accuracy"] == 100.0
    return data, out


def test_naming_the_default_is_the_same_run_and_another_convention_reuses_the_answers(run):
    data, out = run
    again = FakeModel(RULES)
    same = run_benchmark(
        "vqav2", again, data, out, options={"convention": "llava"}, model_name="m", progress=False
    )
    assert again.n_prompts == 0 and same["scores"]["accuracy"] == 100.0
    old = run_benchmark(
        "vqav2",
        again,
        data,
        out,
        options={"convention": "vqaeval-2016"},
        model_name="m",
        progress=False,
    )
    assert again.n_prompts == 0  # nothing generated again
    assert old["scores"]["accuracy"] == pytest.approx(30.0)  # (0.0 + 0.6) / 2
    assert read_json(out / "scores.vqaeval-2016.json")["convention"] == "vqaeval-2016"
    # scores.json keeps the run's own convention
    assert read_json(out / "scores.json")["convention"] == "llava"
    assert read_json(out / "run.json")["convention"] == "llava"
    # another model is still another run
    with pytest.raises(UserError, match="holds answers of another run"):
        run_benchmark("vqav2", again, data, out, model_name="other", progress=False)


def test_rescore_generates_nothing(run, monkeypatch, capsys):
    import decovlm.eval.generate as generate
    import decovlm.modeling.loading as loading

    data, out = run
    calls = {"load": 0, "generate": 0}

    def counting_load(*args, **kwargs):
        calls["load"] += 1
        raise AssertionError("--rescore must not load a model")

    def counting_generate_fn(*args, **kwargs):
        calls["generate"] += 1
        raise AssertionError("--rescore must not generate")

    monkeypatch.setattr(loading, "load_model", counting_load)
    monkeypatch.setattr(generate, "decovlm_generate_fn", counting_generate_fn)
    before = (out / "scores.json").read_bytes()
    argv = ["eval", "--rescore", "--out", str(out), "--data", str(data), "--quiet"]
    assert main([*argv, "--convention", "vqaeval-2016"]) == 0
    assert calls == {"load": 0, "generate": 0}
    scores = read_json(out / "scores.vqaeval-2016.json")
    assert scores["scores"]["accuracy"] == pytest.approx(30.0) and scores["n_questions"] == 2
    assert "458a8b268b1a239dc388e0af4423f3fe7477b04f" in scores["convention_source"]
    assert (out / "scores.json").read_bytes() == before
    assert "scores.vqaeval-2016.json" in capsys.readouterr().out
    # the run's own convention, named or not, rewrites scores.json (same numbers)
    assert main([*argv, "--convention", "llava"]) == 0
    assert read_json(out / "scores.json")["scores"]["accuracy"] == 100.0
    result, path = rescore_benchmark(out, data, {"convention": "vqaeval"})
    assert path.name == "scores.vqaeval.json" and result["scores"]["accuracy"] == 100.0
    assert calls == {"load": 0, "generate": 0}


def test_rescore_scores_only_the_questions_the_run_answered(tmp_path):
    data = make_vqav2(tmp_path / "data")
    out = tmp_path / "out"
    run_benchmark("vqav2", FakeModel(RULES), data, out, limit=1, progress=False)
    result, _ = rescore_benchmark(out, data, {"convention": "vqaeval-2016"})
    assert result["n_questions"] == 1 and result["scores"]["accuracy"] == 0.0


# -- the CLI: one line and exit 2, before any model loads ------------------------------------------
@pytest.fixture
def no_load(monkeypatch):
    """load_model that fails the test: every case below must stop before it."""
    import decovlm.modeling.loading as loading

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(loading, "load_model", refuse)


def fake_model_folder(root: Path, projector: str = "avgpool2_4") -> Path:
    """A folder that passes check_model_folder (no real weights: nothing here loads them)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps({"model_type": "decovlm", "projector": projector}))
    (root / "model.safetensors").write_bytes(b"")
    return root


def _cases():
    def ev(*extra, bench="vqav2", model="model", out="out"):
        return lambda r: [
            "eval", "--model", str(r / model), "--benchmark", bench, "--data", str(r / "data"),
            "--out", str(r / out), *extra,
        ]  # fmt: skip

    return [
        ("unknown-convention", ev("--convention", "nope"), "unknown scoring convention 'nope'"),
        (
            "conflicting-options",
            ev("--convention", "strict", "--box-parse", "lenient", bench="refcoco"),
            "disagrees with the older option",
        ),
        ("another-run", ev(bench="gqa"), "holds answers of another run"),
        ("batch-size-0", ev("--batch-size", "0"), "--batch-size must be at least 1"),
        ("limit-negative", ev("--limit", "-1"), "--limit must be 0 or more"),
        (
            "no-model",
            lambda r: ["eval", "--benchmark", "pope", "--data", str(r)],
            "--model required",
        ),
        ("bad-projector", ev(model="badproj"), "projector 'nosuch_3' cannot be built"),
        (
            "rescore-without-out",
            lambda r: ["eval", "--rescore", "--data", str(r / "data")],
            "--rescore needs --out",
        ),
        (
            "rescore-empty-folder",
            lambda r: ["eval", "--rescore", "--out", str(r / "data"), "--data", str(r / "data")],
            "no saved run to rescore",
        ),
        (
            "rescore-unknown-convention",
            lambda r: [
                "eval",
                "--rescore",
                "--out",
                str(r / "out"),
                "--data",
                str(r / "data"),
                "--convention",
                "nope",
            ],  # fmt: skip
            "unknown scoring convention 'nope'",
        ),
    ]


@pytest.mark.parametrize("argv, expected", [c[1:] for c in _cases()], ids=[c[0] for c in _cases()])
def test_eval_cli_errors_before_the_model_loads(run, no_load, capsys, argv, expected):
    data, out = run
    root = data.parent
    fake_model_folder(root / "model")
    fake_model_folder(root / "badproj", projector="nosuch_3")
    # run.json says model "m"; a CLI run names its folder: rewrite it as this folder's run
    info = read_json(out / "run.json")
    (out / "run.json").write_text(json.dumps({**info, "model": str(root / "model")}))
    code = main(argv(root))
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("decovlm eval: error: ") and expected in lines[0], lines[0]
