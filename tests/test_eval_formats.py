"""Each benchmark's on-disk format read and scored by the runner (tiny fixtures, fake generate_fn)."""

from __future__ import annotations

import base64
import io
import json
import pickle

import pytest
from PIL import Image

from decovlm.eval import run_benchmark
from decovlm.utils.io import read_jsonl
from eval_fixtures import FakeModel, png, write_jsonl


# -- POPE and MME -----------------------------------------------------------------------------------
def test_pope_files(tmp_path):
    png(tmp_path / "val2014" / "COCO_val2014_1.jpg")
    for split in ("random", "popular", "adversarial"):
        write_jsonl(
            tmp_path / f"coco_pope_{split}.json",
            [
                {
                    "question_id": 1,
                    "image": "COCO_val2014_1.jpg",
                    "text": "Is there a dog in the image?",
                    "label": "yes",
                },
                {
                    "question_id": 2,
                    "image": "COCO_val2014_1.jpg",
                    "text": "Is there a cat in the image?",
                    "label": "no",
                },
                {
                    "question_id": 3,
                    "image": "COCO_val2014_1.jpg",
                    "text": "Is there a car?",
                    "label": "maybe",
                },
            ],
        )
    fake = FakeModel({"dog": "Yes, there is.", "cat": "No."})
    result = run_benchmark("pope", fake, tmp_path, tmp_path / "out", progress=False)
    s = result["scores"]
    assert s["random"]["accuracy"] == 100.0 and s["mean"]["f1"] == 100.0 and s["mean"]["n"] == 6
    assert s["n_malformed"] == 3
    assert (
        fake.calls[0][0][1]
        == "Is there a dog in the image?\nAnswer the question using a single word or phrase."
    )
    only = run_benchmark(
        "pope", fake, tmp_path, tmp_path / "out_adv", split="adversarial", progress=False
    )
    assert set(only["scores"]) == {"adversarial", "mean", "n_malformed"}
    with pytest.raises(ValueError, match="must be one of"):
        run_benchmark("pope", fake, tmp_path, tmp_path / "o", split="hard")


def test_mme_folders(tmp_path):
    root = tmp_path / "MME_Benchmark_release_version"
    # layout 1: images/ + questions_answers_YN/
    png(root / "existence" / "images" / "000.png")
    (root / "existence" / "questions_answers_YN").mkdir(parents=True)
    (root / "existence" / "questions_answers_YN" / "000.txt").write_text(
        "Is there a dog in this image? Please answer yes or no.\tYes\n"
        "Is there a cat in this image?  Please answer yes or no.\tNo\n"
    )
    # layout 2: side by side
    png(root / "code_reasoning" / "0020.png")
    (root / "code_reasoning" / "0020.txt").write_text(
        "Is the output 3? Please answer yes or no.\tyes\nbroken line\n"
    )
    fake = FakeModel({"dog": "Yes", "cat": "Yes", "output": "yes"})
    result = run_benchmark("mme", fake, tmp_path, tmp_path / "out", progress=False)
    s = result["scores"]
    assert s["subtasks"]["existence"]["score"] == pytest.approx(50.0)  # acc 1/2, acc+ 0
    assert s["subtasks"]["code_reasoning"]["score"] == pytest.approx(200.0)
    assert s["perception"] == pytest.approx(50.0) and s["cognition"] == pytest.approx(200.0)
    assert s["n_malformed"] == 1
    prompts = [p for call in fake.calls for _, p in call]
    assert (
        "Is there a cat in this image?\nAnswer the question using a single word or phrase."
        in prompts
    )


# -- MMBench and SEED --------------------------------------------------------------------------------
def b64_png(colour="red") -> str:
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), colour).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_mmbench_tsv_circular(tmp_path):
    header = "index\tquestion\thint\tA\tB\tC\tD\tanswer\tcategory\timage"
    rows = [
        f"1\tWhat colour?\tnan\tred\tblue\tnan\tnan\tA\tcolour\t{b64_png()}",
        f"2\tWhich animal?\tA farm.\tcow\tpig\tdog\tnan\tC\tanimal\t{b64_png('blue')}",
        "3\t\tnan\tx\ty\tnan\tnan\tA\tbroken\tnan",
    ]
    (tmp_path / "mmbench_dev_20230712.tsv").write_text("\n".join([header, *rows]) + "\n")

    def answer(batch):
        # always right on the colour question; on the animal question only when "dog" is option C
        out = []
        for _, prompt in batch:
            if "colour" in prompt:
                out.append("A" if "A. red" in prompt else "B")
            else:
                out.append("C")
        return out

    result = run_benchmark("mmbench", answer, tmp_path, tmp_path / "out", progress=False)
    s = result["scores"]
    # the TSV has no rotation rows, so each question is asked once per rotation (2 + 3 rows);
    # the malformed row 3 drops its question instead of counting as a question of its own
    assert s["n_rows"] == 2 + 3 and s["n_questions"] == 2
    assert s["n_dropped_questions"] == 1 and s["dropped_questions"] == ["3"]
    assert s["accuracy"] == pytest.approx(50.0)  # colour passes all rotations; animal fails 2 of 3
    assert s["categories"]["colour"] == 100.0 and s["categories"]["animal"] == 0.0
    answers = {r["question_id"]: r for r in read_jsonl(tmp_path / "out" / "answers.jsonl")}
    assert answers["2"]["prompt"].startswith("A farm.\nWhich animal?\nA. cow\nB. pig\nC. dog\n")
    assert answers["2@1"]["prompt"].split("\n")[2:5] == ["A. pig", "B. dog", "C. cow"]
    assert answers["1"]["image"] == "<inline>"


def test_seed_json(tmp_path):
    png(tmp_path / "SEED-Bench-image" / "a.jpg")
    questions = [
        {
            "question_id": "101",
            "question": "What is shown?",
            "choice_a": "cat",
            "choice_b": "dog",
            "choice_c": "car",
            "choice_d": "sun",
            "answer": "B",
            "data_type": "image",
            "question_type_id": 1,
            "data_id": "a.jpg",
        },
        {
            "question_id": "102",
            "question": "Count?",
            "choice_a": "1",
            "choice_b": "2",
            "choice_c": "3",
            "choice_d": "4",
            "answer": "C",
            "data_type": "image",
            "question_type_id": 2,
            "data_id": "a.jpg",
        },
        {
            "question_id": "103",
            "question": "Video?",
            "choice_a": "1",
            "choice_b": "2",
            "choice_c": "3",
            "choice_d": "4",
            "answer": "A",
            "data_type": "video",
            "question_type_id": 2,
            "data_id": "v.mp4",
        },
    ]
    (tmp_path / "SEED-Bench.json").write_text(
        json.dumps({"questions": questions, "question_type": {"Scene": 1, "Counting": 2}})
    )
    fake = FakeModel({"What is shown": "B", "Count": "c"})
    s = run_benchmark("seed", fake, tmp_path, tmp_path / "out", progress=False)["scores"]
    assert s["n"] == 2 and s["accuracy"] == 50.0  # LLaVA's convention: "c" is not "C"
    assert s["categories"] == {"Counting": 0.0, "Scene": 100.0}
    lmms = run_benchmark(
        "seed",
        fake,
        tmp_path,
        tmp_path / "lmms",
        options={"convention": "lmms-eval"},
        progress=False,
    )
    assert lmms["convention"] == "lmms-eval" and lmms["scores"]["accuracy"] == 100.0
    s_all = run_benchmark("seed", fake, tmp_path, tmp_path / "out_all", split="all", progress=False)
    assert s_all["scores"]["n"] == 3 and s_all["n_errors"] == 1  # the video frame is not there


# -- open-ended VQA -----------------------------------------------------------------------------------
def test_vqav2_and_gqa(tmp_path):
    png(tmp_path / "val2014" / "COCO_val2014_000000000042.jpg")
    qs = {
        "questions": [
            {"question_id": 7, "image_id": 42, "question": "How many dogs?"},
            {"question_id": 8, "image_id": 42, "question": "What colour?"},
            {"question_id": 9, "question": "No image id"},
        ]
    }
    anns = {
        "annotations": [
            {
                "question_id": 7,
                "answer_type": "number",
                "answers": [{"answer": "2"}] * 3 + [{"answer": "3"}] * 7,
            },
            {"question_id": 8, "answer_type": "other", "answers": [{"answer": "red"}] * 10},
        ]
    }
    (tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(json.dumps(qs))
    (tmp_path / "v2_mscoco_val2014_annotations.json").write_text(json.dumps(anns))
    fake = FakeModel({"dogs": "Two", "colour": "Red"})
    s = run_benchmark("vqav2", fake, tmp_path, tmp_path / "out", progress=False)["scores"]
    assert s["accuracy"] == pytest.approx(100 * (0.9 + 1.0 + 0.0) / 3)
    assert s["answer_types"] == {"number": pytest.approx(90.0), "other": 100.0}

    png(tmp_path / "gqa" / "images" / "n1.jpg")
    (tmp_path / "gqa" / "testdev_balanced_questions.json").write_text(
        json.dumps(
            {
                "q1": {"imageId": "n1", "question": "Is it red?", "answer": "yes"},
                "q2": {"imageId": "n1", "question": "Which side?", "answer": "left"},
                "q3": {"imageId": "n2", "question": "What?", "answer": "cup"},  # image missing
            }
        )
    )
    fake = FakeModel({"red": "Yes.", "side": "right"})
    s = run_benchmark("gqa", fake, tmp_path / "gqa", tmp_path / "out_gqa", progress=False)["scores"]
    assert s["accuracy"] == pytest.approx(100 / 3) and s["n"] == 3


def test_textvqa_ocr_prompt(tmp_path):
    png(tmp_path / "train_images" / "abc.jpg")
    data = {
        "data": [
            {
                "question_id": 1,
                "image_id": "abc",
                "question": "What brand?",
                "answers": ["dakota"] * 10,
                "ocr_tokens": ["DAKOTA", "Camera"],
            }
        ]
    }
    (tmp_path / "TextVQA_0.5.1_val.json").write_text(json.dumps(data))
    fake = FakeModel({"brand": "Dakota"})
    result = run_benchmark("textvqa", fake, tmp_path, tmp_path / "out", progress=False)
    assert result["scores"]["accuracy"] == 100.0
    assert fake.calls[0][0][1] == (
        "What brand?\nReference OCR token: DAKOTA, Camera\nAnswer the question using a single word or phrase."
    )
    fake = FakeModel({"brand": "Dakota"})
    run_benchmark(
        "textvqa", fake, tmp_path, tmp_path / "out2", options={"ocr": False}, progress=False
    )
    assert "OCR" not in fake.calls[0][0][1]
    # LLaVA's question file present: its prompt is used verbatim, matched on (image_id, question)
    llava_prompt = (
        "What brand?\nReference OCR token: DAKOTA, digitat\n"
        "Answer the question using a single word or phrase."
    )
    write_jsonl(
        tmp_path / "llava_textvqa_val_v051_ocr.jsonl",
        [{"question_id": 0, "image": "abc.jpg", "text": llava_prompt}],
    )
    fake = FakeModel({"brand": "Dakota"})
    run_benchmark("textvqa", fake, tmp_path, tmp_path / "out3", progress=False)
    assert fake.calls[0][0][1] == llava_prompt


def test_vizwiz_unanswerable_prompt(tmp_path):
    png(tmp_path / "val" / "VizWiz_val_0.jpg")
    records = [
        {
            "image": "VizWiz_val_0.jpg",
            "question": "What is this?",
            "answer_type": "unanswerable",
            "answers": [{"answer": "unanswerable"}] * 8 + [{"answer": "unsuitable"}] * 2,
        }
    ]
    (tmp_path / "val.json").write_text(json.dumps(records))
    fake = FakeModel({"this": "Unanswerable"})
    s = run_benchmark("vizwiz", fake, tmp_path, tmp_path / "out", progress=False)["scores"]
    assert s["accuracy"] == 100.0 and s["answer_types"] == {"unanswerable": 100.0}
    assert fake.calls[0][0][1] == (
        "What is this?\nWhen the provided information is insufficient, respond with 'Unanswerable'.\n"
        "Answer the question using a single word or phrase."
    )


# -- RefCOCO ------------------------------------------------------------------------------------------
def test_refcoco_frames(tmp_path):
    png(tmp_path / "images" / "train2014" / "COCO_train2014_000000000005.jpg", (300, 100))
    refs = [
        {
            "ref_id": 1,
            "ann_id": 11,
            "image_id": 5,
            "split": "val",
            "sentences": [
                {"sent": "left dog", "sent_id": 100},
                {"sent": "the dog", "sent_id": 101},
            ],
        },
        {
            "ref_id": 2,
            "ann_id": 12,
            "image_id": 5,
            "split": "testA",
            "sentences": [{"sent": "cat", "sent_id": 102}],
        },
        {
            "ref_id": 3,
            "ann_id": 99,
            "image_id": 5,
            "split": "val",
            "sentences": [{"sent": "ghost", "sent_id": 103}],
        },
    ]
    inst = {
        "images": [
            {"id": 5, "file_name": "COCO_train2014_000000000005.jpg", "width": 300, "height": 100}
        ],
        "annotations": [{"id": 11, "bbox": [30, 20, 150, 60]}, {"id": 12, "bbox": [0, 0, 10, 10]}],
    }
    (tmp_path / "refcoco").mkdir()
    with open(tmp_path / "refcoco" / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f)
    (tmp_path / "refcoco" / "instances.json").write_text(json.dumps(inst))
    # The model answers in the padded-square frame (S = 300, 100 px added above): pixel box
    # (30, 20, 180, 80) is (0.1, 0.4, 0.6, 0.6) there.
    fake = FakeModel(
        {"left dog": "[0.10, 0.40, 0.60, 0.60]", "the dog": "It is at (0.1, 0.4, 0.6, 0.6)"}
    )
    pad = run_benchmark(
        "refcoco", fake, tmp_path, tmp_path / "pad", options={"box_frame": "pad"}, progress=False
    )
    s = pad["scores"]
    # lmms-eval's parser (default) reads "[...]" only: the parenthesised answer has no box
    assert s["acc@0.5"] == pytest.approx(100 / 3) and s["n"] == 3 and s["n_unparsed"] == 2
    assert pad["convention"] == "lmms-eval"
    lenient = run_benchmark(
        "refcoco",
        fake,
        tmp_path,
        tmp_path / "lenient",
        options={"box_frame": "pad", "convention": "lenient"},
        progress=False,
    )
    assert lenient["scores"]["acc@0.5"] == pytest.approx(100 * 2 / 3)
    assert "annotation or image missing" in pad["errors"][0]
    assert fake.calls[0][0][1] == (
        "Please provide the bounding box coordinate of the region this sentence describes: left dog."
    )
    strict = run_benchmark(
        "refcoco",
        fake,
        tmp_path,
        tmp_path / "strict",
        options={"box_frame": "pad", "box_parse": "strict"},
        progress=False,
    )
    assert strict["scores"]["acc@0.5"] == pytest.approx(100 / 3)
    # read in the stretched frame the same answers miss: (30, 40, 180, 60) has IoU 1/3
    naive = run_benchmark(
        "refcoco",
        fake,
        tmp_path,
        tmp_path / "naive",
        options={"box_frame": "naive"},
        progress=False,
    )
    assert naive["scores"]["acc@0.5"] == 0.0
    test_a = run_benchmark(
        "refcoco", fake, tmp_path, tmp_path / "ta", split="testA", progress=False
    )
    assert test_a["n_questions"] == 1
