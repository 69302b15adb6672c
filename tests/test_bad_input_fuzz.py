"""Property-based tests: every reader and parser of user input either succeeds or raises the
documented error type (`decovlm.errors.UserError`, with a message); nothing else escapes."""

from __future__ import annotations

import io
import json
import pickle
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from decovlm.data.records import BadRecord, SkipLog, load_records, parse_record
from decovlm.errors import UserError
from decovlm.eval.benchmarks import get_benchmark
from decovlm.eval.benchmarks.refcoco import RefsUnpickler
from decovlm.eval.metrics import (
    evalai_normalize,
    extract_option,
    options_from_list,
    parse_box,
    parse_yes_no_llava,
)
from decovlm.train.config import load_config
from decovlm.utils.images import ImageError, load_image
from decovlm.utils.io import append_jsonl, read_json, read_jsonl

FAST = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
# rows that look like records / questions, with every field possibly of the wrong type
KEYS = ["id", "image", "conversations", "from", "value", "question_id", "text", "category"]
KEYS += ["answer", "answers", "options", "pope_split", "label"]
row_like = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=7)
conversation_like = st.fixed_dictionaries(
    {
        "id": json_values,
        "conversations": st.lists(
            st.dictionaries(
                st.sampled_from(["from", "value"]),
                st.sampled_from(["human", "gpt", "user", "x"]) | json_values,
            ),
            max_size=4,
        ),
    },
    optional={"image": json_values | st.just("a.png")},
)


def _message_error(err: BaseException) -> None:
    assert isinstance(err, UserError), f"{type(err).__name__} escaped: {err}"
    assert str(err).strip()


@FAST
@given(data=st.binary(max_size=200))
def test_read_jsonl_and_json_raise_only_user_errors(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.jsonl"
        path.write_bytes(data)
        for reader in (read_jsonl, read_json):
            try:
                reader(path)
            except Exception as err:
                _message_error(err)


@FAST
@given(data=st.binary(max_size=120), record=json_values)
def test_append_after_any_tail_gives_a_readable_file(data, record):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a.jsonl"
        good = [{"n": i} for i in range(2)]
        path.write_text("".join(json.dumps(r) + "\n" for r in good))
        with path.open("ab") as f:  # a torn append: any bytes without a final newline
            f.write(data.replace(b"\n", b" "))
        append_jsonl(path, {"rec": record})
        rows = read_jsonl(path)
        assert rows[:2] == good and rows[-1] == {"rec": record}


@FAST
@given(item=row_like | conversation_like | json_values, index=st.integers(0, 10))
def test_parse_record_raises_only_bad_record(item, index):
    try:
        record = parse_record(item, index)
    except BadRecord as err:
        assert err.reason and err.record_id
    else:
        assert record.turns and record.turns[-1].role == "assistant"


@FAST
@given(
    items=st.lists(conversation_like | row_like | json_values, max_size=6),
    lines=st.lists(st.text(max_size=20), max_size=4),
)
def test_load_records_never_crashes(items, lines):
    with tempfile.TemporaryDirectory() as tmp:
        as_json = Path(tmp) / "d.json"
        as_json.write_text(json.dumps(items))
        log = SkipLog()
        records = load_records(as_json, skip_log=log)
        assert len(records) + log.total == len(items)  # every record is used or counted
        as_jsonl = Path(tmp) / "d.jsonl"
        text_lines = [json.dumps(i) for i in items] + [ln.replace("\n", " ") for ln in lines]
        as_jsonl.write_text("\n".join(text_lines) + "\n")
        log = SkipLog()
        records = load_records(as_jsonl, skip_log=log)
        assert len(records) + log.total == sum(1 for ln in text_lines if ln.strip())


@FAST
@given(rows=st.lists(row_like | json_values, min_size=1, max_size=6), answer=st.text(max_size=30))
def test_benchmark_rows_of_any_shape_are_items(rows, answer):
    for name, rel in (("synthetic", "eval/questions.jsonl"), ("pope", "coco_pope_random.json")):
        bench = get_benchmark(name)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
            items = bench.load(Path(tmp), "random" if name == "pope" else None, {})
            assert len(items) == len(rows)
            for it in items:
                assert it.error or isinstance(it.image, str | None)
            answers = {it.question_id: answer for it in items}
            bench.score(items, answers, {})


@FAST
@given(text=st.text(max_size=60) | st.none())
def test_answer_parsers_take_any_text(text):
    parse_box(text)
    parse_box(text, mode="strict")
    parse_yes_no_llava(text)
    extract_option(text, {"A": "red", "B": "blue"})
    if text is not None:
        evalai_normalize(text)


@FAST
@given(options=st.lists(st.text(max_size=10), max_size=30))
def test_option_letters_from_any_list(options):
    try:
        letters = options_from_list(options)
    except ValueError as err:  # more options than letters
        assert str(err)
    else:
        assert list(letters.values()) == options


@FAST
@given(
    overrides=st.lists(
        st.builds(
            "{}={}".format,
            st.sampled_from(
                [
                    "training.learning_rate",
                    "training.stage",
                    "data.strict",
                    "model.projector",
                    "model.projector_kwargs",
                    "data.max_length",
                    "training.lora",
                    "nope.key",
                    "model",
                ]
            ),
            st.text(max_size=12).filter(lambda s: "\n" not in s),
        )
        | st.text(max_size=15),
        max_size=3,
    )
)
def test_config_overrides_raise_only_value_errors(overrides):
    # The train command maps these ValueErrors to UserError (one line, exit code 2).
    try:
        cfg = load_config("tiny_noalign", ["data.path=x.json", *overrides])
        cfg.validate()
    except ValueError as err:
        assert str(err).strip()


@FAST
@given(data=st.binary(max_size=300))
def test_image_loader_raises_only_image_errors(data):
    try:
        image = load_image(data, name="upload.png")
    except ImageError as err:
        assert "upload.png" in str(err)
    else:
        assert image.mode == "RGB"


@FAST
@given(data=st.binary(max_size=200) | st.builds(pickle.dumps, json_values))
def test_refs_unpickler_builds_only_plain_data(data):
    try:
        RefsUnpickler(io.BytesIO(data)).load()
    except Exception as err:  # the loader wraps these in a UserError naming the file
        assert not isinstance(err, SystemExit | KeyboardInterrupt)


def test_refs_unpickler_refuses_code():
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with pytest.raises(pickle.UnpicklingError, match="builtins.print"):
        RefsUnpickler(io.BytesIO(pickle.dumps([Evil()]))).load()


@FAST
@given(rows=st.lists(row_like | json_values, max_size=5), top=json_values)
def test_json_benchmark_files_of_any_shape_never_crash(rows, top):
    files = {
        "vqav2": ("v2_OpenEnded_mscoco_val2014_questions.json", {"questions": rows}),
        "seed": ("SEED-Bench.json", {"questions": rows, "question_type": top}),
        "textvqa": ("TextVQA_0.5.1_val.json", {"data": rows}),
    }
    for name, (file_name, content) in files.items():
        bench = get_benchmark(name)
        for payload in (content, top):
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / file_name).write_text(json.dumps(payload))
                try:
                    items = bench.load(Path(tmp), None, {})
                except UserError as err:
                    assert str(err)
                    continue
                bench.score(items, {it.question_id: "a" for it in items}, {})


ref_like = st.fixed_dictionaries(
    {"split": st.just("val"), "ref_id": json_values, "ann_id": st.integers(0, 2) | json_values},
    optional={"image_id": st.integers(0, 2) | json_values, "sentences": json_values},
)
instances_like = st.fixed_dictionaries(
    {
        "annotations": st.lists(
            st.fixed_dictionaries({"id": st.integers(0, 2)}, optional={"bbox": json_values}),
            max_size=3,
        ),
        "images": st.lists(
            st.fixed_dictionaries(
                {"id": st.integers(0, 2) | json_values},
                optional={"width": json_values, "height": json_values, "file_name": json_values},
            ),
            max_size=3,
        ),
    }
)


@FAST
@given(refs=st.lists(ref_like | json_values, max_size=4), inst=instances_like | json_values)
def test_refcoco_files_of_any_shape_never_crash(refs, inst):
    bench = get_benchmark("refcoco")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
        (Path(tmp) / "instances.json").write_text(json.dumps(inst))
        items = bench.load(Path(tmp), "val", {})
        bench.score(items, {it.question_id: "[0.1, 0.1, 0.5, 0.5]" for it in items}, {})


cell = st.text(alphabet=st.characters(blacklist_characters='\t\n\r"', codec="utf-8"), max_size=6)


@FAST
@given(rows=st.lists(st.lists(cell, min_size=1, max_size=9), max_size=4))
@example(rows=[["\u00b2", "q", "a", "b"]])  # '²'.isdigit() is True, int('²') fails
def test_mmbench_tsv_of_any_content_never_crashes(rows):
    bench = get_benchmark("mmbench")
    header = "index\tquestion\tA\tB\tC\tanswer\timage\thint\tcategory"
    with tempfile.TemporaryDirectory() as tmp:
        text = "\n".join([header, *("\t".join(r) for r in rows)]) + "\n"
        (Path(tmp) / "mmbench_dev_20230712.tsv").write_text(text, encoding="utf-8")
        items = bench.load(Path(tmp), None, {})
        bench.score(items, {it.question_id: "A" for it in items}, {})
