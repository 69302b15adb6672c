"""The real tiny decovlm model end to end: `decovlm eval` on a synthetic question file, and resume."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from decovlm.cli import main
from decovlm.eval.generate import decovlm_generate_fn
from decovlm.testing import tiny_model
from decovlm.utils.io import read_jsonl


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory):
    torch.set_num_threads(1)
    model, processor = tiny_model("avgpool2_4")
    path = tmp_path_factory.mktemp("tiny")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return model, processor, path


def test_prompt_templates(saved_tiny):
    _, processor, _ = saved_tiny
    assert processor.format_question("what colour ?") == "USER: <image>\nwhat colour ? ASSISTANT:"
    vicuna = processor.format_question("what colour ?", False, chat_template="vicuna_v1")
    assert vicuna.startswith("A chat between") and vicuna.endswith("USER: what colour ? ASSISTANT:")
    with pytest.raises(ValueError, match="chat template"):
        processor.format_question("q", chat_template="chatml")


def test_generate_fn_batches_match_single(saved_tiny):
    model, processor, _ = saved_tiny
    batch = [
        (Image.new("RGB", (40, 30), "red"), "what colour is the circle ?"),
        (None, "how many objects ?"),
        (Image.new("RGB", (30, 30), "blue"), "is there a red square in the image ?"),
    ]
    single = decovlm_generate_fn(model, processor, batch_size=1, max_new_tokens=4)(batch)
    assert len(single) == 3 and all(isinstance(a, str) for a in single)
    batched = decovlm_generate_fn(model, processor, batch_size=3, max_new_tokens=4)(batch)
    assert len(batched) == 3  # left padding may change a few greedy answers; the count must not
    assert "<image>" not in " ".join(single)


def test_finished_rows_leave_the_batch_and_answers_do_not_change(monkeypatch):
    """greedy_ids decodes in rounds and drops finished rows: the same answers as one generate."""
    from decovlm.eval import generate
    from decovlm.eval.generate import encode_questions, greedy_ids

    model, processor = tiny_model("avgpool2_4")
    model.eval()
    questions = ["what colour is the circle ?", "how many objects ?", "is there a red square ?"]
    batch = [
        (Image.new("RGB", (32, 32), c), q) for c, q in zip(["red", "blue", "green"], questions)
    ]
    inputs = encode_questions(processor, batch)
    n = inputs["input_ids"].shape[1]
    with torch.no_grad():
        free = model.generate(**inputs, max_new_tokens=12, do_sample=False)[:, n:].tolist()
    # End tokens that finish row 0 after 1 token and row 1 after 9 (a random model has none):
    # row 0 leaves after the first round of 8, the batch goes on with rows 1 and 2.
    eos = {free[0][1], free[1][9]}
    cut = [row[: next((i for i, t in enumerate(row) if t in eos), len(row))] for row in free]
    assert len(cut[0]) <= 1 and len(cut[2]) > len(cut[0])
    model.generation_config.eos_token_id = sorted(eos)
    sizes = []
    hook = model.register_forward_pre_hook(
        lambda _, args, kwargs: sizes.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    monkeypatch.setattr(generate, "FIRST_ROUND", 8)
    assert greedy_ids(model, processor.tokenizer, inputs, 12) == cut
    hook.remove()
    assert sizes[0] == 3 and sizes[-1] < 3  # finished rows were dropped, KV cache rows with them


def test_cli_eval_synthetic_end_to_end(saved_tiny, tmp_path, capsys):
    _, _, model_dir = saved_tiny
    data = tmp_path / "world"
    (data / "images").mkdir(parents=True)
    Image.new("RGB", (32, 32), "red").save(data / "images" / "0.png")
    rows = [
        {
            "question_id": "a",
            "image": "images/0.png",
            "text": "what colour is the circle ?",
            "category": "vqa",
            "answer": "red",
        },
        {
            "question_id": "b",
            "image": "images/0.png",
            "text": "is there a star ?",
            "category": "yesno",
            "answer": "no",
        },
        {
            "question_id": "c",
            "image": "images/0.png",
            "text": "where is the circle ?",
            "category": "localization",
            "answer": "[0.1, 0.1, 0.6, 0.6]",
        },
        {
            "question_id": "d",
            "image": "images/gone.png",
            "text": "how many ?",
            "category": "count",
            "answer": "1",
        },
    ]
    (data / "eval").mkdir()
    (data / "eval" / "questions.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "out"
    argv = [
        "eval",
        "--model",
        str(model_dir),
        "--benchmark",
        "synthetic",
        "--data",
        str(data),
        "--out",
        str(out),
        "--max-new-tokens",
        "4",
        "--quiet",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "overall.accuracy" in printed and "scores.json" in printed
    result = json.loads((out / "scores.json").read_text())
    assert result["n_questions"] == 4 and result["n_errors"] == 1
    assert set(result["scores"]) >= {"vqa", "yesno", "localization", "count", "overall"}
    assert result["scores"]["count"]["accuracy"] == 0.0  # the missing image counts as wrong
    answers = read_jsonl(out / "answers.jsonl")
    assert len(answers) == 4 and all(
        isinstance(r["answer"], str) for r in answers if not r.get("error")
    )
    # a rerun generates nothing new and keeps the same scores
    assert main(argv) == 0
    # only the failed question was retried; failing the same way again adds no line
    assert len(read_jsonl(out / "answers.jsonl")) == 4
    assert json.loads((out / "scores.json").read_text())["scores"] == result["scores"]


def test_cli_errors(tmp_path, capsys):
    argv = ["eval", "--model", str(tmp_path / "none"), "--benchmark", "pope"]
    assert main([*argv, "--data", str(tmp_path)]) == 2  # a user error: one line, exit code 2
    assert "not a folder with a saved decovlm model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "--model", "x", "--benchmark", "nope", "--data", str(tmp_path)])
