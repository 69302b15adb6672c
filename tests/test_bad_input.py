"""Bad input never crashes: each case a new user hit ends in one line naming the problem.

CLI cases assert exit code 2, exactly one line on stderr and no traceback; the others check that
bad rows, torn files, huge images, interrupted checkpoint rotation, bad corpora and hostile
pickles are counted, repaired or refused with a message (see decovlm.errors).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image

from decovlm.cli import main
from decovlm.data.records import SkipLog, load_records
from decovlm.data.toy import write_toy_dataset
from decovlm.errors import UserError
from decovlm.eval.runner import run_benchmark
from decovlm.utils.io import append_jsonl, read_json, read_jsonl
from eval_fixtures import FakeModel, png, write_jsonl


def bomb_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height (a few bytes on disk; never decoded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )
    return path


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    from decovlm.testing import tiny_model

    root = tmp_path_factory.mktemp("bad")
    model, processor = tiny_model()
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    shutil.copytree(root / "model", root / "trunc")
    cfg = root / "trunc" / "config.json"
    cfg.write_text(cfg.read_text()[:40])
    shutil.copytree(root / "model", root / "noweights")
    (root / "noweights" / "model.safetensors").unlink()
    shutil.copytree(root / "model", root / "noconfig")
    (root / "noconfig" / "config.json").unlink()
    data = write_toy_dataset(root / "data", n=8, kind="chat")
    rows = json.loads(data.read_text())
    rows[3]["conversations"] = []
    (root / "data" / "bad.json").write_text(json.dumps(rows))
    (root / "text.png").write_text("hello, I am text")
    bomb_png(root / "bomb.png", 20000, 20000)
    return root


def _cases():
    t = ["training.max_steps=1", "training.disable_tqdm=true"]

    def ev(model, data="data"):
        return lambda r: ["eval", "--model", str(r / model), "--benchmark", "synthetic",
                          "--data", str(r / data), "--out", str(r / "eval_out")]  # fmt: skip

    def tr(*extra, preset="tiny_noalign", data="data/data.json"):
        return lambda r: ["train", preset, f"data.path={r / data}", *t,
                          f"training.output_dir={r / 'run'}", *[e.format(r=r) for e in extra]]  # fmt: skip

    def ex(image):
        return lambda r: ["explain", "--model", str(r / "model"), "--image", str(r / image),
                          "--prompt", "hi", "--out", str(r / "explain_out")]  # fmt: skip

    return [
        ("eval-missing-model", ev("nomodel"), "is not a folder with a saved decovlm model"),
        ("eval-truncated-config", ev("trunc"), "config.json: not valid JSON: Unterminated string"),
        ("eval-no-weights", ev("noweights"), "has no weights file"),
        ("eval-missing-data", ev("model", "nodata"), "--data: no folder"),
        ("train-projector-143", tr("model.projector=avgpool2_143"), "perfect square"),
        ("train-projector-foo", tr("model.projector=foo"), "unknown projector spec 'foo'"),
        ("train-missing-data", tr(data="nodata.json"), "data.path: no file"),
        (
            "train-missing-projector",
            tr("training.projector_path={r}/noproj.safetensors", preset="tiny_finetune"),
            "training.projector_path",
        ),  # fmt: skip
        ("train-init-from-no-config", tr("model.init_from={r}/noconfig"), "no config.json"),
        ("train-bad-override-yaml", tr("training.seed=[1"), "not valid YAML"),
        ("train-strict", tr("data.strict=true", data="data/bad.json"), "record 'toy-3'"),
        ("explain-missing-image", ex("missing.png"), "image file not found"),
        ("explain-text-as-png", ex("text.png"), "cannot read image /"),
        ("explain-bomb", ex("bomb.png"), "bomb.png has over 179 Mpx, over the 64.0 Mpx limit"),
        (
            "convert-missing-path",
            lambda r: ["convert-llava", str(r / "nonexist"), str(r / "o")],
            "no LLaVA checkpoint folder",
        ),  # fmt: skip
    ]


@pytest.mark.parametrize("argv, expected", [c[1:] for c in _cases()], ids=[c[0] for c in _cases()])
def test_cli_user_error_is_one_line_exit_2(fx, capsys, argv, expected):
    code = main(argv(fx))
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"decovlm {argv(fx)[0]}: error: ") and expected in lines[0]


def test_debug_shows_the_traceback(fx, monkeypatch):
    argv = ["explain", "--model", str(fx / "model"), "--image", str(fx / "missing.png")]
    argv += ["--prompt", "hi", "--out", str(fx / "o")]
    with pytest.raises(FileNotFoundError, match="missing.png"):
        main([*argv, "--debug"])
    monkeypatch.setenv("DECOVLM_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        main(argv)


def test_internal_bugs_keep_their_traceback(monkeypatch):
    import decovlm.projectors.cli as projectors_cli

    monkeypatch.setattr(projectors_cli, "run", lambda args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        main(["projectors"])


def test_entry_point_exit_code_and_single_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    env.pop("DECOVLM_DEBUG", None)
    argv = ["eval", "--model", str(tmp_path / "m"), "--benchmark", "pope", "--data", str(tmp_path)]
    proc = subprocess.run(
        [sys.executable, "-m", "decovlm", *argv], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("decovlm eval: error: --model:")


def test_resume_without_optimizer_state_is_refused(fx, capsys):
    out = fx / "resume_run"
    ckpt = out / "checkpoint-2"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text("{}")
    (ckpt / "model.safetensors").write_text("x")  # the weights are there, the optimizer is not
    (ckpt / "COMPLETE").write_text("step 2\n")
    argv = ["train", "tiny_noalign", f"data.path={fx / 'data' / 'data.json'}"]
    argv += [f"training.output_dir={out}", "--resume"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "optimizer" in err and "training.resume_without_optimizer=true" in err


# -- benchmark rows of the wrong type ----------------------------------------------------------
def test_wrongly_typed_rows_are_counted_wrong_once(tmp_path):
    png(tmp_path / "images" / "a.png")
    rows = [
        {"question_id": "ok", "image": "images/a.png", "text": "colour?", "category": "vqa", "answer": "red"},
        {"question_id": "img123", "image": 123, "text": "colour?", "category": "vqa", "answer": "red"},
        {"question_id": "ans5", "image": "images/a.png", "text": "q", "category": "vqa", "answer": "red", "answers": 5},
        "{not json",
    ]  # fmt: skip
    write_jsonl(tmp_path / "eval" / "questions.jsonl", rows)
    out = tmp_path / "out"
    for _ in range(3):  # reruns: malformed rows are not appended again
        result = run_benchmark(
            "synthetic", FakeModel({"colour": "red"}), tmp_path, out, progress=False
        )
    assert result["n_questions"] == 4 and result["n_errors"] == 3
    assert any("img123" in e or "image must be a file name" in e for e in result["errors"])
    assert any("answers must be a list" in e for e in result["errors"])
    assert result["scores"]["vqa"]["accuracy"] == 100.0
    assert len((out / "answers.jsonl").read_text().splitlines()) == 4


# -- torn JSONL files --------------------------------------------------------------------------
def test_torn_answers_file_is_repaired_on_rerun(tmp_path):
    png(tmp_path / "images" / "a.png")
    rows = [
        {"question_id": f"q{i}", "image": "images/a.png", "text": "colour?", "category": "vqa", "answer": "red"}
        for i in range(5)
    ]  # fmt: skip
    write_jsonl(tmp_path / "eval" / "questions.jsonl", rows)
    out = tmp_path / "out"
    run_benchmark("synthetic", FakeModel({"colour": "red"}), tmp_path, out, limit=3, progress=False)
    answers = out / "answers.jsonl"
    answers.write_bytes(answers.read_bytes()[:-15])  # a crash mid-append: q2's line is torn
    model = FakeModel({"colour": "red"})
    run_benchmark("synthetic", model, tmp_path, out, progress=False)
    assert model.n_prompts == 3  # q2 again, q3, q4
    result = run_benchmark("synthetic", FakeModel({"colour": "red"}), tmp_path, out, progress=False)
    assert result["scores"]["overall"]["accuracy"] == 100.0
    assert [r["question_id"] for r in read_jsonl(answers)] == [f"q{i}" for i in range(5)]


def test_torn_skip_log_is_repaired(tmp_path):
    from decovlm.train.runner import skip_summary

    path = tmp_path / "skipped.jsonl"
    log = SkipLog(path=path)
    log.add("a", "missing image: x", index=0)
    path.write_bytes(path.read_bytes() + b'{"id": "b", "rea')  # killed mid-append
    log.add("c", "corrupt image: y", index=2)
    assert [r["id"] for r in read_jsonl(path)] == ["a", "c"]
    assert skip_summary(path)["total"] == 2


# -- images ------------------------------------------------------------------------------------
def test_huge_image_in_training_data_is_skipped(fx, tmp_path):
    from decovlm.data.dataset import ConversationDataset
    from decovlm.testing import tiny_model

    _, processor = tiny_model()
    root = tmp_path / "d"
    write_toy_dataset(root, n=3, kind="chat")
    bomb_png(root / "images" / "0.png", 20000, 20000)
    log = SkipLog()
    ds = ConversationDataset(
        load_records(root / "data.json"), processor, "vicuna_v1", image_root=root, skip_log=log
    )
    assert ds[0]["pixel_values"] is not None  # record 0 skipped, the next one returned
    assert log.counts == {"image too large": 1}


def test_explorer_keeps_a_downscaled_copy(tmp_path):
    from decovlm.serve.render import KEPT_SIDE, open_image

    big = tmp_path / "big.png"
    Image.new("RGB", (3000, 1500), "red").save(big)
    assert open_image(big).size == (KEPT_SIDE, KEPT_SIDE // 2)
    with pytest.raises(ValueError, match="over the 64.0 Mpx limit"):
        open_image(bomb_png(tmp_path / "wide.png", 12000, 12000))


def test_pixel_limit_is_a_setting(tmp_path, monkeypatch):
    from decovlm.utils.images import TooManyPixels, load_image

    path = tmp_path / "a.png"
    Image.new("RGB", (40, 30)).save(path)
    assert load_image(path).size == (40, 30)
    monkeypatch.setenv("DECOVLM_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(TooManyPixels, match="a.png is 40x30"):
        load_image(path)
    assert load_image(path, max_pixels=1200).size == (40, 30)


# -- checkpoints -------------------------------------------------------------------------------
def _ckpt(root: Path, step: int, complete: bool) -> Path:
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    for name in ("trainer_state.json", "optimizer.pt", "scheduler.pt", "model.safetensors"):
        (folder / name).write_text("x")
    if complete:
        (folder / "COMPLETE").write_text(f"step {step}\n")
    return folder


def test_rotation_never_deletes_the_last_complete_checkpoint(tmp_path):
    from decovlm.train.callbacks import find_resume_checkpoint, list_checkpoints, rotate_checkpoints

    _ckpt(tmp_path, 2, True)
    _ckpt(tmp_path, 4, False)  # the new save, not marked yet (a crash here must not lose 2)
    rotate_checkpoints(tmp_path, 1)
    assert find_resume_checkpoint(tmp_path).name == "checkpoint-2"
    (tmp_path / "checkpoint-4" / "COMPLETE").write_text("step 4\n")
    rotate_checkpoints(tmp_path, 1)
    assert [p.name for _, p, _ in list_checkpoints(tmp_path)] == ["checkpoint-4"]


def test_trainer_marks_before_it_rotates(tmp_path, monkeypatch):
    import decovlm.train.callbacks as callbacks
    from decovlm.train import load_config, train

    seen = []
    original = callbacks.rotate_checkpoints

    def spy(output_dir, limit, keep=None):
        newest = callbacks.list_checkpoints(output_dir)[-1]
        seen.append((newest[0], newest[2]))  # (step, complete) when rotation starts
        original(output_dir, limit, keep)

    monkeypatch.setattr(callbacks, "rotate_checkpoints", spy)
    data = write_toy_dataset(tmp_path / "data", n=8, kind="chat")
    args = [f"data.path={data}", f"training.output_dir={tmp_path / 'run'}", "training.max_steps=4"]
    args += ["training.save_steps=2", "training.save_total_limit=1", "training.disable_tqdm=true"]
    args += ["training.global_batch_size=2", "training.per_device_batch_size=2"]
    train(load_config("tiny_noalign", args))
    assert seen == [(2, True), (4, True)]
    assert [p.name for _, p, ok in callbacks.list_checkpoints(tmp_path / "run") if ok] == [
        "checkpoint-4"
    ]


def test_missing_optimizer_state_is_allowed_when_asked(tmp_path):
    from decovlm.train.callbacks import check_resumable

    folder = _ckpt(tmp_path, 2, True)
    (folder / "optimizer.pt").unlink()
    with pytest.raises(UserError, match="no optimizer state"):
        check_resumable(folder)
    assert check_resumable(folder, allow_fresh_optimizer=True) == ["optimizer state (optimizer.pt)"]


# -- corpora -----------------------------------------------------------------------------------
def test_skips_are_counted_per_record_not_per_id(tmp_path):
    from decovlm.train.runner import skip_summary

    rows = [{"id": "x", "conversations": []}, {"id": "x", "image": 5, "conversations": []}]
    rows += [{"id": "y", "conversations": [{"from": "gpt", "value": "a"}]}, {"id": "y"}]
    rows.append(
        {
            "id": "ok",
            "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
        }
    )
    path = tmp_path / "d.json"
    path.write_text(json.dumps(rows))
    log = SkipLog(path=tmp_path / "skipped.jsonl")
    assert [r.id for r in load_records(path, skip_log=log)] == ["ok"]
    summary = skip_summary(tmp_path / "skipped.jsonl")
    assert summary["total"] == 4 and sum(summary["by_reason"].values()) == 4


def test_bad_jsonl_line_is_a_skipped_record(tmp_path):
    good = {
        "id": "ok",
        "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
    }
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(good) + '\n{"id": "torn", "conv\n' + json.dumps(good) + "\n")
    log = SkipLog()
    assert len(load_records(path, skip_log=log)) == 2
    assert log.counts == {"bad JSON": 1}


def test_non_utf8_and_bad_json_name_the_file_line_and_column(tmp_path):
    latin = tmp_path / "latin.json"
    latin.write_bytes('[{"id": "caf\xe9"}]'.encode("latin-1"))
    with pytest.raises(UserError, match="latin.json: not UTF-8"):
        load_records(latin)
    broken = tmp_path / "broken.json"
    broken.write_text('[\n  {"id": "a", "conversations": "unterminated\n]')
    with pytest.raises(
        UserError,
        match=r"broken.json: not valid JSON: Invalid control character at line 2 column \d+",
    ):
        load_records(broken)
    with pytest.raises(UserError, match=r"line 2 column \d+"):
        read_json(broken)


# -- safe loading ------------------------------------------------------------------------------
def test_refcoco_refs_pickle_cannot_run_code(tmp_path):
    from decovlm.eval.benchmarks.refcoco import _load_refs

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps([Evil()], protocol=2))
    with pytest.raises(UserError, match=r"refs\(unc\).p: not a REFER refs pickle"):
        _load_refs(path)
    assert not marker.exists()
    path.write_bytes(
        pickle.dumps([{"ref_id": 1, "sentences": [{"sent": "a"}], "bbox": (1.0, 2.0)}], protocol=2)
    )
    assert _load_refs(path)[0]["ref_id"] == 1


def test_append_jsonl_is_the_one_writer(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": 2}')  # whole record, only its newline lost: kept
    append_jsonl(path, {"c": 3})
    assert read_jsonl(path) == [{"a": 1}, {"b": 2}, {"c": 3}]


def test_one_line_messages():
    from torch._utils import ExceptionWrapper

    from decovlm.errors import one_line

    try:
        raise UserError("record 'x': bad (data.strict=true)")
    except UserError:
        wrapped = ExceptionWrapper(where="in DataLoader worker process 0")
    with pytest.raises(UserError) as info:
        wrapped.reraise()  # how a DataLoader worker's error reaches the main process
    assert one_line(info.value) == "record 'x': bad (data.strict=true)"
    try:
        Path("/no/such/file.json").read_text()
    except FileNotFoundError as err:
        assert one_line(err) == "/no/such/file.json: No such file or directory"
