"""`decovlm chat` (piped stdin, streaming, multi-turn, /image, /reset) and `decovlm predict` (resume, bad rows)."""

from __future__ import annotations

import io
import json

import pytest
import torch
from PIL import Image

from decovlm.cli import main
from decovlm.infer.chat import ChatSession
from decovlm.testing import tiny_model
from decovlm.utils.io import read_jsonl


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.set_num_threads(1)
    model, processor = tiny_model("avgpool2_4")
    path = tmp_path_factory.mktemp("model")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return model, processor, path


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "data" / "images"
    folder.mkdir(parents=True)
    Image.new("RGB", (32, 32), "red").save(folder / "red.png")
    Image.new("RGB", (40, 30), "blue").save(folder / "blue.png")
    (folder / "broken.png").write_bytes(b"not a png")
    return folder


def test_chat_session_is_multi_turn_and_streams(saved, images):
    model, processor, _ = saved
    out = io.StringIO()
    session = ChatSession(model, processor, images / "red.png", max_new_tokens=3, out=out)
    session.set_image(images / "red.png")
    first = session.ask("what colour is the circle ?")
    assert out.getvalue().strip() == first  # what was streamed is the answer
    session.ask("how many objects ?")
    assert [m["role"] for m in session.messages] == ["user", "assistant"] * 2
    assert session.messages[0]["content"].startswith("<image>\n")  # the image once, first
    assert "<image>" not in session.messages[2]["content"]
    prompt = session.prompt("is there a star ?")
    assert prompt.count("<image>") == 1 and "what colour is the circle ?" in prompt
    assert prompt.endswith(
        processor.format_question("is there a star ?", False).split("USER: ")[-1]
    )
    session.reset()
    assert session.prompt("is there a star ?") == processor.format_question("is there a star ?")


def test_chat_cli_reads_piped_lines(saved, images, monkeypatch, capsys):
    _, _, path = saved
    lines = [
        "what colour is the circle ?",
        "how many objects ?",
        f"/image {images / 'blue.png'}",
        "what colour ?",
        f"/image {images / 'broken.png'}",  # a bad image keeps the session
        "/reset",
        "/help",
        "/quit",
        "never asked",
    ]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    code = main(
        ["chat", "--model", str(path), "--image", str(images / "red.png"), "--max-new-tokens", "2"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("assistant> ") == 3
    assert "you> how many objects ?" in out and "never asked" not in out
    assert "now talking about" in out and "conversation reset" in out
    assert "error: cannot read image" in out and "broken.png" in out
    assert "/image PATH" in out  # the help line


def _write(path, rows):
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )


def test_predict_answers_resumes_and_records_bad_rows_once(saved, images, tmp_path, capsys):
    _, _, path = saved
    questions = images.parent / "questions.jsonl"
    good = [
        {"id": "a", "image": "images/red.png", "question": "what colour is the circle ?", "answer": "red"},
        {"id": "b", "question": "how many objects ?"},  # text only
        {"id": 7, "image": "images/blue.png", "question": "what colour ?", "split": ["val", 2]},
    ]  # fmt: skip
    bad = [
        "{not json",
        {"id": "c", "image": "images/missing.png", "question": "what ?"},
        {"id": "a", "question": "a duplicate id"},
        {"id": "d", "image": "images/red.png"},
        {"id": "e", "image": "images/broken.png", "question": "what colour ?"},
        {"id": "g", "question": "what ?", "prediction": "an earlier model's"},
    ]
    _write(questions, good[:1] + bad + good[1:])
    out = tmp_path / "answers.jsonl"
    # run from another folder: image paths are relative to the input file
    args = ["predict", "--model", str(path), "--input", str(questions), "--out", str(out)]
    assert main([*args, "--batch-size", "2", "--max-new-tokens", "2", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == ["a", "b", 7]
    assert all(isinstance(r["prediction"], str) for r in rows)
    # every input field is kept as it was, the reference answer included
    assert [{k: v for k, v in r.items() if k != "prediction"} for r in rows] == good
    errors = read_jsonl(out.with_name("answers.errors.jsonl"))
    assert len(errors) == 6 and "skipped 6 bad row(s)" in printed
    assert "line 2" in printed and "id c" in printed and "id e" in printed
    reasons = " | ".join(e["error"] for e in errors)
    for part in ("not valid JSON", "image not found", "duplicate id", "question", "cannot read"):
        assert part in reasons
    assert 'already has a "prediction" field' in reasons

    # resume: a crash left half a line; a new question was added
    with out.open("a", encoding="utf-8") as f:
        f.write('{"id": "x", "answ')
    _write(questions, good[:1] + bad + good[1:] + [{"id": "f", "question": "is there a star ?"}])
    assert main([*args, "--max-new-tokens", "2", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert [r["id"] for r in read_jsonl(out)] == ["a", "b", 7, "f"]
    assert "answered 1 question(s)" in printed and "(3 already there)" in printed
    assert len(read_jsonl(out.with_name("answers.errors.jsonl"))) == 6  # once, not twice


def test_predict_batches_agree_with_eval_at_batch_size_one(saved, images, tmp_path):
    from decovlm.eval.generate import decovlm_generate_fn
    from decovlm.infer.predict import predict, read_questions

    model, processor, _ = saved
    questions = images.parent / "q.jsonl"
    _write(questions, [{"id": 1, "image": "images/red.png", "question": "what colour ?"}])
    found, bad = read_questions(questions)
    assert not bad
    predict(model, processor, found, tmp_path / "a.jsonl", batch_size=1, max_new_tokens=3)
    image = Image.open(images / "red.png").convert("RGB")
    expected = decovlm_generate_fn(model, processor, max_new_tokens=3)([(image, "what colour ?")])
    assert read_jsonl(tmp_path / "a.jsonl")[0]["prediction"] == expected[0]


def test_predict_input_errors_are_one_line(saved, tmp_path, capsys):
    _, _, path = saved
    rc = main(
        ["predict", "--model", str(path), "--input", str(tmp_path / "no.jsonl"), "--out", "x"]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("decovlm predict: error: --input: no file") and len(err.splitlines()) == 1
