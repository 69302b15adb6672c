"""The error contract of the command line, walked over every sub-command: a bad argument ends in
one line `decovlm NAME: error: ...` and exit code 2, and `--debug` shows it as a raised `UserError`
(decovlm.errors). Each case is caught before any model is loaded unless it needs one."""

from __future__ import annotations

import pytest

from decovlm.cli import COMMANDS, main
from decovlm.errors import UserError


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from decovlm.testing import tiny_model

    root = tmp_path_factory.mktemp("contract")
    model, processor = tiny_model()
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    (root / "empty.jsonl").write_text("")
    (root / "q.jsonl").write_text('{"id": 1, "question": "what colour ?"}\n')
    from PIL import Image

    Image.new("RGB", (32, 32), "red").save(root / "img.png")
    return root


# (name, argv with {r} for the fixture folder, part of the message); names start with the command.
CASES = [
    ("demo", ["demo", "--seeds", "0"], "--seeds must be >= 1"),
    ("demo-extra", ["demo", "--extra", "no-align+avgpool2_16"], "unknown projector spec"),
    ("projectors", ["projectors", "--spec", "avgpool2_x"], "unknown projector spec"),
    ("projectors-grid", ["projectors", "--grid", "0x3"], "grid"),
    pytest.param(
        "projectors-vision-dim",
        ["projectors", "--vision-dim", "0"],
        "--vision-dim",
        id="projectors-vision-dim",
    ),  # fmt: skip
    (
        "train",
        ["train", "tiny_noalign", "data.path={r}/d.json", "model.projector=avgpool2_x"],
        "unknown projector spec 'avgpool2_x'",
    ),  # fmt: skip
    ("train-preset", ["train", "no_such_preset"], "no config file or preset"),
    (
        "eval",
        [
            "eval",
            "--model",
            "{r}/none",
            "--benchmark",
            "synthetic",
            "--data",
            "{r}",
            "--out",
            "{r}/o",
        ],
        "--model",
    ),  # fmt: skip
    (
        "explain",
        [
            "explain",
            "--model",
            "{r}/model",
            "--image",
            "{r}/none.png",
            "--prompt",
            "hi",
            "--out",
            "{r}/o",
        ],
        "image file not found",
    ),  # fmt: skip
    pytest.param(
        "explain-layers",
        [
            "explain",
            "--model",
            "{r}/model",
            "--image",
            "{r}/img.png",
            "--prompt",
            "hi",
            "--out",
            "{r}/o",
            "--start-layer",
            "99",
        ],
        "do not give a layer range within the LLM's 2 layers",
        id="explain-layers",
    ),  # fmt: skip
    ("explain-eval", ["explain-eval", "--out", "{r}/o"], "needs --model"),
    ("convert-llava", ["convert-llava", "{r}/none", "{r}/o"], "no LLaVA checkpoint folder"),
    ("world", ["world", "--out", "{r}/w", "--train", "0"], "--train and --eval must be >= 1"),
    ("world-grid", ["world", "--out", "{r}/w", "--position-grid", "500"], "--position-grid"),
    ("serve", ["serve", "--model", "{r}/model", "--port", "0"], "--port must be in 1..65535"),
    ("chat", ["chat", "--model", "{r}/model", "--max-new-tokens", "0"], "--max-new-tokens"),
    (
        "chat-image",
        ["chat", "--model", "{r}/model", "--image", "{r}/none.png"],
        "image file not found",
    ),
    (
        "predict",
        ["predict", "--model", "{r}/model", "--input", "{r}/none.jsonl", "--out", "{r}/a"],
        "--input: no file",
    ),  # fmt: skip
    pytest.param(
        "predict-empty",
        ["predict", "--model", "{r}/model", "--input", "{r}/empty.jsonl", "--out", "{r}/a"],
        "no questions",
        id="predict-empty",
    ),  # fmt: skip
    pytest.param(
        "predict-batch",
        [
            "predict",
            "--model",
            "{r}/model",
            "--input",
            "{r}/q.jsonl",
            "--out",
            "{r}/a",
            "--batch-size",
            "0",
        ],
        "--batch-size",
        id="predict-batch",
    ),  # fmt: skip
]


def _name(case) -> str:
    return case.values[0] if hasattr(case, "values") else case[0]


def test_every_subcommand_has_a_case():
    walked = {_name(c).split("-")[0] for c in CASES} | {
        n for c in CASES for n in COMMANDS if _name(c).startswith(n)
    }
    assert set(COMMANDS) <= walked, f"no bad-argument case for {sorted(set(COMMANDS) - walked)}"


def _argv(argv: list[str], root) -> list[str]:
    return [a.format(r=root) for a in argv]


@pytest.mark.parametrize("name, argv, message", CASES, ids=[_name(c) for c in CASES])
def test_bad_argument_is_one_line_exit_2(root, capsys, name, argv, message):
    argv = _argv(argv, root)
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith(f"decovlm {argv[0]}: error: "), lines[0]
    assert message in lines[0], lines[0]


@pytest.mark.parametrize("name, argv, message", CASES, ids=[_name(c) for c in CASES])
def test_debug_raises_the_user_error(root, name, argv, message):
    with pytest.raises(UserError) as err:
        main([*_argv(argv, root), "--debug"])
    assert message in str(err.value)
