"""The runner with a fake generate_fn: the synthetic benchmark, resume, limits, mismatched reruns, printing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from decovlm.eval import evaluate_synthetic, run_benchmark
from decovlm.eval.runner import flatten_scores, print_scores
from decovlm.utils.io import read_jsonl
from eval_fixtures import FakeModel, png, write_jsonl


# -- synthetic ------------------------------------------------------------------------------------
def make_synthetic(root: Path) -> Path:
    png(root / "images" / "0.png", (32, 32))
    png(root / "images" / "1.png", (32, 32), "blue")
    rows = [
        {
            "question_id": "q0",
            "image": "images/0.png",
            "text": "What colour is the circle?",
            "category": "vqa",
            "answer": "red",
        },
        {
            "question_id": "q1",
            "image": "images/0.png",
            "text": "How many circles?",
            "category": "count",
            "answer": "2",
        },
        {
            "question_id": "q2",
            "image": "images/0.png",
            "text": "Where is the star?",
            "category": "localization",
            "answer": "[0.10, 0.10, 0.50, 0.50]",
        },
        {
            "question_id": "q3",
            "image": "images/1.png",
            "text": "Is there a square?",
            "category": "yesno",
            "answer": "yes",
            "pope_split": "random",
        },
        {
            "question_id": "q4",
            "image": "images/1.png",
            "text": "Is there a star?",
            "category": "yesno",
            "answer": "no",
            "pope_split": "adversarial",
        },
        {
            "question_id": "q5",
            "image": "images/1.png",
            "text": "Which shape?\nA. star\nB. circle",
            "category": "multiple_choice",
            "answer": "B",
            "options": ["star", "circle"],
        },
        {
            "question_id": "q6",
            "image": "images/missing.png",
            "text": "What colour is the star?",
            "category": "vqa",
            "answer": "red",
        },
        '{"question_id": "q7", "image": ',  # truncated JSON line
        {
            "question_id": "q8",
            "image": "images/0.png",
            "text": "Where?",
            "category": "localization",
            "answer": "left",
        },
    ]
    write_jsonl(root / "eval" / "questions.jsonl", rows)
    return root


SYNTH_RULES = {
    "Where is": "[0.1, 0.12, 0.5, 0.48]",
    "colour": "Red.",
    "How many": "two",
    "star?": "No",
    "square": "Yes",
    "Which shape": "B",
}


def test_synthetic_scores_per_category_and_resume(tmp_path):
    data = make_synthetic(tmp_path / "world")
    fake = FakeModel(SYNTH_RULES)
    scores = evaluate_synthetic(fake, data, tmp_path / "out")
    assert scores["vqa"] == {"accuracy": 50.0, "n": 2}  # q0 right; q6 has no image -> wrong
    assert scores["count"]["accuracy"] == 100.0  # "two" == "2" after normalisation
    assert scores["localization"]["acc@0.5"] == 100.0
    assert scores["localization"]["mean_iou"] == pytest.approx(0.9, abs=0.01)
    assert scores["yesno"]["accuracy"] == 100.0 and scores["yesno"]["f1"] == 100.0  # all in %
    assert set(scores["yesno"]["pope_splits"]) == {"adversarial", "random"}
    assert scores["multiple_choice"]["accuracy"] == 100.0
    assert scores["n_malformed"] == 2  # q7 (bad JSON) and q8 (bad box)
    assert scores["overall"]["n"] == 9
    assert scores["overall"]["accuracy"] == pytest.approx(100 * 6 / 9)
    assert fake.n_prompts == 6  # neither the missing image nor the malformed rows reach the model

    out = tmp_path / "out"
    records = {r["question_id"]: r for r in read_jsonl(out / "answers.jsonl")}
    assert records["q0"]["prompt"] == "What colour is the circle?"
    assert "missing image" in records["q6"]["error"] and records["q6"]["answer"] is None
    assert "line 8" in records["line8"]["error"]
    assert "not a box" in records["q8"]["error"]
    saved = json.loads((out / "scores.json").read_text())
    assert saved["scores"] == scores and saved["n_errors"] == 3

    # rerun: nothing answered is generated again; the failed one is retried (still missing)
    fake2 = FakeModel(SYNTH_RULES)
    assert evaluate_synthetic(fake2, data, out) == scores
    assert fake2.n_prompts == 0
    # the image appears: only that question is generated on the next run
    png(data / "images" / "missing.png")
    fake3 = FakeModel(SYNTH_RULES)
    scores3 = evaluate_synthetic(fake3, data, out)
    assert fake3.n_prompts == 1 and scores3["vqa"]["accuracy"] == 100.0


def test_interrupted_run_resumes(tmp_path):
    data = make_synthetic(tmp_path / "world")

    class Crash(Exception):
        pass

    def crashing(batch):
        if crashing.calls == 2:
            raise Crash
        crashing.calls += 1
        return ["red"] * len(batch)

    crashing.calls = 0
    with pytest.raises(Crash):
        run_benchmark("synthetic", crashing, data, tmp_path / "out", batch_size=2, progress=False)
    answered = [r for r in read_jsonl(tmp_path / "out" / "answers.jsonl") if not r.get("error")]
    assert len(answered) == 4  # two batches of two were written before the crash
    fake = FakeModel(SYNTH_RULES)
    result = run_benchmark("synthetic", fake, data, tmp_path / "out", batch_size=2, progress=False)
    assert fake.n_prompts == 2 and result["n_questions"] == 9


def test_limit_batch_and_run_mismatch(tmp_path):
    data = make_synthetic(tmp_path / "world")
    fake = FakeModel(SYNTH_RULES)
    result = run_benchmark(
        "synthetic", fake, data, tmp_path / "out", limit=4, batch_size=3, progress=False
    )
    assert result["n_questions"] == 4
    assert [len(c) for c in fake.calls] == [3, 1]
    assert all(has_image for call in fake.calls for has_image, _ in call)
    with pytest.raises(ValueError, match="another run"):
        run_benchmark("pope", fake, data, tmp_path / "out", progress=False)
    run_benchmark("synthetic", fake, data, tmp_path / "named", model_name="a", progress=False)
    with pytest.raises(ValueError, match="another run"):  # answers of model a never mix with b's
        run_benchmark("synthetic", fake, data, tmp_path / "named", model_name="b", progress=False)
    with pytest.raises(ValueError, match="unknown benchmark"):
        run_benchmark("nope", fake, data, tmp_path / "o2")
    with pytest.raises(FileNotFoundError, match="questions.jsonl"):
        run_benchmark("synthetic", fake, tmp_path, tmp_path / "o3")

    def wrong_count(batch):
        return ["x"]

    with pytest.raises(ValueError, match="returned 1 answers for 2"):
        run_benchmark("synthetic", wrong_count, data, tmp_path / "o4", batch_size=2, progress=False)


def test_flatten_and_print(capsys):
    result = {
        "benchmark": "pope",
        "split": None,
        "n_errors": 1,
        "errors": ["question x: missing image y"],
        "scores": {"random": {"f1": 0.5, "n": 2}, "note": "text", "flag": True},
    }
    assert flatten_scores(result["scores"]) == [
        ("random.f1", 0.5),
        ("random.n", 2),
        ("note", "text"),
    ]
    print_scores(result)
    out = capsys.readouterr().out
    assert "random.f1" in out and "0.50" in out and "missing image y" in out
