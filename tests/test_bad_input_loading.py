"""A model folder is what it says or it is refused; the other cases a new user tried; a full disk.

Each CLI case asserts exit code 2, one line on stderr, no traceback and, where it matters, that
the model was never loaded (`load_model` is replaced by one that fails the test).
"""

from __future__ import annotations

import errno
import json
import shutil
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from decovlm.cli import main
from decovlm.errors import DiskFullError, UserError, is_disk_full
from decovlm.utils.images import ImageError, load_image
from eval_fixtures import FakeModel, png, write_jsonl


# -- a crafted PNG: valid checksums, fewer rows of data than the header promises ---------------------
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)


def crafted_png(width: int, height: int, cut: int = 0, interlace: bool = False) -> bytes:
    """An RGB PNG of colour (200, 10, 10) whose image data lacks its last `cut` bytes of rows."""
    pixel = bytes([200, 10, 10])
    if interlace:
        rows = []
        for x0, y0, dx, dy in ADAM7:
            cols = len(range(x0, width, dx))
            rows += [b"\x00" + pixel * cols for _ in range(y0, height, dy) if cols]
    else:
        rows = [b"\x00" + pixel * width for _ in range(height)]
    raw = b"".join(rows)
    raw = raw[: len(raw) - cut]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, int(interlace))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )


def test_a_png_with_rows_missing_is_refused(tmp_path):
    short = crafted_png(8, 8, cut=4 * 25)  # 4 of 8 rows
    with _bytes_image(short) as img:
        img.verify()  # PIL's checksums pass: this is what load_image adds
    with pytest.raises(
        ImageError, match=r"short.png: the PNG is truncated: .*promises 8 rows.*about 4"
    ):
        load_image(_write(tmp_path / "short.png", short))
    with pytest.raises(ImageError, match="truncated"):
        load_image(short, name="upload.png")
    with pytest.raises(ImageError, match="truncated"):
        load_image(crafted_png(9, 7, cut=1, interlace=True), name="interlaced.png")
    # complete images, plain and interlaced, load as they are
    for interlace in (False, True):
        img = load_image(crafted_png(9, 7, interlace=interlace))
        assert img.size == (9, 7) and img.getpixel((8, 6)) == (200, 10, 10)


def _bytes_image(data: bytes):
    import io

    return Image.open(io.BytesIO(data))


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_training_skips_a_truncated_png_with_a_reason(tmp_path):
    from decovlm.data.dataset import ConversationDataset
    from decovlm.data.records import SkipLog, load_records
    from decovlm.data.toy import write_toy_dataset
    from decovlm.testing import tiny_model

    _, processor = tiny_model()
    root = tmp_path / "d"
    write_toy_dataset(root, n=3, kind="chat")
    size = Image.open(root / "images" / "0.png").size
    _write(root / "images" / "0.png", crafted_png(*size, cut=size[0] * 3 + 1))
    log = SkipLog()
    ds = ConversationDataset(
        load_records(root / "data.json"), processor, "vicuna_v1", image_root=root, skip_log=log
    )
    assert ds[0]["pixel_values"] is not None  # record 0 skipped, the next one returned
    assert sum(log.counts.values()) == 1, log.counts


# -- model folders ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from decovlm.testing import tiny_model

    root = tmp_path_factory.mktemp("folders")
    model, processor = tiny_model("avgpool2_4")
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    for name, projector in (("otherfam", "qformer2_4"), ("badproj", "nosuch_3")):
        shutil.copytree(root / "model", root / name)
        cfg = json.loads((root / name / "config.json").read_text())
        (root / name / "config.json").write_text(json.dumps({**cfg, "projector": projector}))
    png(root / "img.png", (32, 32))
    _write(root / "short.png", crafted_png(32, 32, cut=32 * 3 * 4))
    write_jsonl(root / "q.jsonl", [{"id": 1, "question": "colour?", "image": "img.png"}])
    (root / "empty.jsonl").write_text("")
    return root


def test_weights_of_another_projector_are_refused_naming_them(folders, capsys):
    from decovlm.modeling.loading import load_model

    with pytest.raises(UserError) as err:
        load_model(folders / "otherfam", "cpu")
    message = str(err.value)
    assert "does not match config.json" in message and "\n" not in message
    assert "missing weights: 51 projector (projector." in message
    assert "4 projector (projector.mlp_projector." in message  # the avgpool MLP, unexpected
    assert "--allow-missing-weights" in message
    model, _ = load_model(folders / "otherfam", "cpu", allow_missing_weights=True)
    assert type(model.projector).__name__.lower().startswith("qformer")
    assert "loaded anyway" in capsys.readouterr().err
    model, _ = load_model(folders / "model", "cpu")  # a folder that is what it says loads
    assert model.config.projector == "avgpool2_4"


def test_allow_missing_weights_from_the_environment(folders, monkeypatch):
    from decovlm.modeling.loading import load_model

    monkeypatch.setenv("DECOVLM_ALLOW_MISSING_WEIGHTS", "1")
    load_model(folders / "otherfam", "cpu")
    with pytest.raises(UserError, match="does not match"):
        load_model(folders / "otherfam", "cpu", allow_missing_weights=False)


def test_serve_loader_refuses_too(folders):
    pytest.importorskip("gradio")
    from decovlm.serve.engine import load_explorer

    with pytest.raises(UserError, match="does not match config.json"):
        load_explorer(folders / "otherfam", device="cpu")


@pytest.fixture
def no_load(monkeypatch):
    import decovlm.modeling.loading as loading

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(loading, "load_model", refuse)


def _one_line(capsys, code, command: str, expected: str) -> None:
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip() and "Loading weights" not in line]
    lines = [line for line in lines if not line.startswith("[transformers]")]  # its own notices
    assert len(lines) == 1, err
    assert lines[0].startswith(f"decovlm {command}: error: ") and expected in lines[0], lines[0]


def _loaded_cases():
    """Cases that load the model and then must refuse it."""

    def predict(model):
        return lambda r: ["predict", "--model", str(r / model), "--input", str(r / "q.jsonl"),
                          "--out", str(r / f"a-{model}.jsonl")]  # fmt: skip

    def explain(model):
        return lambda r: ["explain", "--model", str(r / model), "--image", str(r / "img.png"),
                          "--prompt", "colour?", "--out", str(r / "ex")]  # fmt: skip

    return [
        ("predict-other-projector", predict("otherfam"), "missing weights: 51 projector"),
        ("explain-other-projector", explain("otherfam"), "missing weights: 51 projector"),
    ]


@pytest.mark.parametrize(
    "argv, expected", [c[1:] for c in _loaded_cases()], ids=[c[0] for c in _loaded_cases()]
)
def test_model_folder_refused_in_one_line(folders, capsys, argv, expected):
    args = argv(folders)
    _one_line(capsys, main(args), args[0], expected)


def _early_cases():
    """Cases that must stop before any model loads."""

    def ev(model):
        return lambda r: ["eval", "--model", str(r / model), "--benchmark", "pope",
                          "--data", str(r), "--out", str(r / "ev")]  # fmt: skip

    def explain(*extra, model="model", image="img.png"):
        return lambda r: ["explain", "--model", str(r / model), "--image", str(r / image),
                          "--out", str(r / "ex"), *extra]  # fmt: skip

    def predict(*extra, model="model", questions="q.jsonl"):
        return lambda r: ["predict", "--model", str(r / model), "--input", str(r / questions),
                          "--out", str(r / "a.jsonl"), *extra]  # fmt: skip

    bad_projector = "projector 'nosuch_3' cannot be built: unknown projector spec"
    return [
        ("eval-bad-projector", ev("badproj"), bad_projector),
        ("explain-bad-projector", explain("--prompt", "hi", model="badproj"), bad_projector),
        ("predict-bad-projector", predict(model="badproj"), bad_projector),
        ("explain-empty-prompt", explain("--prompt", ""), "--prompt is empty"),
        ("explain-blank-prompt", explain("--prompt", "  "), "--prompt is empty"),
        ("explain-truncated-png", explain("--prompt", "hi", image="short.png"), "PNG is truncated"),
        ("predict-empty-file", predict(questions="empty.jsonl"), "no questions (the file is empty"),
        ("predict-batch-size-0", predict("--batch-size", "0"), "--batch-size must be at least 1"),
        ("projectors-vision-dim-0", lambda r: ["projectors", "--vision-dim", "0"], "--vision-dim must be"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    "argv, expected", [c[1:] for c in _early_cases()], ids=[c[0] for c in _early_cases()]
)
def test_bad_input_is_one_line_before_the_model_loads(folders, no_load, capsys, argv, expected):
    args = argv(folders)
    _one_line(capsys, main(args), args[0], expected)


# -- training ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from decovlm.data.toy import write_toy_dataset

    return write_toy_dataset(tmp_path_factory.mktemp("toy"), n=4, kind="chat")


@pytest.fixture
def no_build(monkeypatch):
    import decovlm.train.build as build

    def refuse(*args, **kwargs):
        raise AssertionError("the model was built before the config was checked")

    monkeypatch.setattr(build, "build_model", refuse)


def test_global_batch_not_a_multiple_is_one_line_before_building(toy, tmp_path, no_build, capsys):
    argv = ["train", "tiny_noalign", f"data.path={toy}", f"training.output_dir={tmp_path / 'run'}"]
    argv += ["training.global_batch_size=3", "training.per_device_batch_size=2"]
    _one_line(capsys, main(argv), "train", "global_batch_size 3 is not a multiple")


def _checkpoint(root: Path, step: int) -> Path:
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    for name in ("trainer_state.json", "optimizer.pt", "scheduler.pt", "model.safetensors"):
        (folder / name).write_text("x")
    (folder / "COMPLETE").write_text(f"step {step}\n")
    return folder


def test_resume_from_a_complete_checkpoint_without_weights_names_the_folder(
    toy, tmp_path, no_build, capsys
):
    out = tmp_path / "run"
    _checkpoint(out, 2)
    (_checkpoint(out, 4) / "model.safetensors").unlink()
    argv = ["train", "tiny_noalign", f"data.path={toy}", f"training.output_dir={out}", "--resume"]
    _one_line(
        capsys, main(argv), "train", "checkpoint-4 is marked complete but has no model weights"
    )
    err_line = "remove that folder and rerun with --resume (the run resumes from checkpoint-2)"
    main(argv)
    assert err_line in capsys.readouterr().err
    assert (out / "checkpoint-4").is_dir()  # nothing deleted for the user


# -- a full disk -------------------------------------------------------------------------------------
def test_is_disk_full_reads_every_writer():
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(
        Exception('IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })')
    )
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    wrapped = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1 vs 2")
    wrapped.__context__ = OSError(errno.ENOSPC, "No space left on device")
    assert is_disk_full(wrapped)  # found in the chain


def test_torch_stream_error_counts_only_when_the_disk_is_nearly_full(tmp_path, monkeypatch):
    import decovlm.errors as errors

    err = RuntimeError("basic_ios::clear: iostream error")
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(errors.shutil, "disk_usage", lambda p: usage._replace(free=4096))
    assert is_disk_full(err, tmp_path / "not" / "yet" / "made")
    monkeypatch.setattr(errors.shutil, "disk_usage", lambda p: usage._replace(free=10 * 2**30))
    assert not is_disk_full(err, tmp_path)  # another write failure: a bug, keeps its traceback


def test_eval_disk_full_is_one_line_and_a_rerun_resumes(tmp_path, monkeypatch, capsys):
    import decovlm.eval.generate as generate
    import decovlm.eval.runner as runner
    import decovlm.modeling.loading as loading
    from decovlm.eval import run_benchmark
    from test_eval_rescore import RULES, make_vqav2

    data = make_vqav2(tmp_path / "data")
    out = tmp_path / "out"
    real_append = runner.append_jsonl_many
    calls = []

    def full_after_one(path, records):  # the first batch of answers is written, then the disk fills
        calls.append(records)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_append(path, records)

    monkeypatch.setattr(runner, "append_jsonl_many", full_after_one)
    with pytest.raises(DiskFullError, match=f"{out}: the disk is full"):
        run_benchmark("vqav2", FakeModel(RULES), data, out, progress=False)
    # the CLI: one line, exit 2
    monkeypatch.setattr(loading, "check_model_folder", lambda path, what: Path(path))
    monkeypatch.setattr(loading, "load_model", lambda *a, **k: (None, None))
    monkeypatch.setattr(generate, "decovlm_generate_fn", lambda *a, **k: FakeModel(RULES))
    argv = ["eval", "--model", "m", "--benchmark", "vqav2", "--data", str(data), "--out", str(out)]
    (out / "run.json").unlink()  # the library run above had no model name
    _one_line(
        capsys, main([*argv, "--quiet"]), "eval", "the disk is full (no space left on device)"
    )
    monkeypatch.setattr(runner, "append_jsonl_many", real_append)
    assert main([*argv, "--quiet"]) == 0  # space again: the rerun finishes
    assert json.loads((out / "scores.json").read_text())["n_questions"] == 2


def test_train_disk_full_is_one_line(toy, tmp_path, monkeypatch, capsys):
    import decovlm.errors as errors
    import decovlm.train.runner as runner

    def torch_writer_fails(*args, **kwargs):
        raise RuntimeError("basic_ios::clear: iostream error")

    monkeypatch.setattr(runner, "train", torch_writer_fails)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(errors.shutil, "disk_usage", lambda p: usage._replace(free=0))
    out = tmp_path / "run"
    argv = ["train", "tiny_noalign", f"data.path={toy}", f"training.output_dir={out}"]
    _one_line(capsys, main(argv), "train", f"{out}: the disk is full")
