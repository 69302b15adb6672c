"""Metric functions against hand-computed cases, official examples and edge cases."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import decovlm.eval.metrics as M
from decovlm.eval.metrics import (
    choice_accuracy,
    circular_accuracy,
    evalai_normalize,
    extract_option,
    from_pixels,
    gqa_exact_match,
    iou,
    mme_scores,
    parse_box,
    parse_mme_answer,
    parse_yes_no_llava,
    parse_yes_no_strict,
    pope_scores,
    rec_accuracy,
    to_pixels,
    vqa_accuracy,
    yes_no_metrics,
)


def test_metrics_modules_do_not_import_torch():
    for path in Path(M.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {
            a.name.split(".")[0]
            for n in ast.walk(tree)
            if isinstance(n, ast.Import)
            for a in n.names
        }
        names |= {
            (n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
        }
        assert "torch" not in names, path.name


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Two.", "2"),
        ("two", "2"),
        ("None", "0"),
        ("the Dog", "dog"),
        ("A man", "man"),
        ("Yes.", "yes"),
        ("3.5", "3.5"),  # a period before a digit stays
        ("1,000", "1000"),
        ("black-and-white", "black and white"),  # punctuation inside a word -> space
        ("dont", "don't"),  # contractions gain their apostrophe
        ("isnt it", "isn't it"),
        ("  Red\n", "red"),
        ("", ""),
        ("what?", "what"),
    ],
)
def test_evalai_normalize(raw, expected):
    assert evalai_normalize(raw) == expected


def test_vqa_accuracy_leave_one_out():
    # 3 of 10 annotators said "2": 3 subsets see 2 matches (2/3), 7 subsets see 3 (1) -> 0.9
    assert vqa_accuracy("two", ["2"] * 3 + ["3"] * 7) == pytest.approx(0.9)
    # 1 of 10: the subset without that annotator scores 0, the other 9 score 1/3 -> 0.3
    assert vqa_accuracy("yes", ["yes"] + ["no"] * 9) == pytest.approx(0.3)
    # 2 of 10: 2 subsets at 1/3, 8 subsets at 2/3 -> (2/3 + 16/3) / 10 = 0.6
    assert vqa_accuracy("Cat.", ["cat", "the cat"] + ["dog"] * 8) == pytest.approx(0.6)
    assert vqa_accuracy("2", ["2"] * 10) == 1.0
    assert vqa_accuracy("4 ", ["2"] * 10) == 0.0
    assert vqa_accuracy("", ["2"] * 10) == 0.0  # empty answer
    assert vqa_accuracy(None, ["2"] * 10) == 0.0  # no answer (missing image) is wrong
    assert vqa_accuracy("Two", ["2"]) == 1.0  # a single reference: exact match
    with pytest.raises(ValueError, match="at least one"):
        vqa_accuracy("x", [])


def test_gqa_exact_match():
    assert gqa_exact_match("Yes.", "yes") == 1.0
    assert gqa_exact_match("left", "right") == 0.0
    assert gqa_exact_match("t-shirt", "tshirt") == 0.0
    assert gqa_exact_match("t-shirt", "tshirt", strip_punctuation=True) == 1.0
    assert gqa_exact_match(None, "yes") == 0.0


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Yes", "yes"),
        ("Yes.", "yes"),
        ("No", "no"),
        ("No, there is not.", "no"),
        ("There is not a dog", "no"),
        ("NO", "yes"),  # LLaVA's parser is case-sensitive: kept for comparability
        ("", "yes"),
        ("Yes. No.", "yes"),  # only the text before the first period counts
        (None, None),
    ],
)
def test_llava_yes_no_parser(text, expected):
    assert parse_yes_no_llava(text) == expected


def test_strict_yes_no_parser():
    assert parse_yes_no_strict("Yes, it is.") == "yes"
    assert parse_yes_no_strict("no") == "no"
    assert parse_yes_no_strict("yes and no") is None
    assert parse_yes_no_strict("maybe") is None


def test_yes_no_metrics_hand_computed():
    preds = ["yes", "yes", "no", "no", "yes", None]
    labels = ["yes", "no", "no", "yes", "yes", "no"]
    s = yes_no_metrics(preds, labels)
    # TP=2, FP=1 + the invalid one on a "no" label -> FP=2, TN=1, FN=1
    assert s.accuracy == pytest.approx(3 / 6)
    assert s.precision == pytest.approx(2 / 4)
    assert s.recall == pytest.approx(2 / 3)
    assert s.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert s.yes_ratio == pytest.approx(4 / 6)
    assert s.n_invalid == 1
    with pytest.raises(ValueError, match="yes' or 'no"):
        yes_no_metrics(["yes"], ["maybe"])


def test_pope_scores_per_split_and_mean():
    answers = ["Yes.", "No", "yes", "No.", "Yes", "Yes"]
    labels = ["yes", "no", "no", "no", "yes", "no"]
    splits = ["random", "random", "popular", "popular", "adversarial", "adversarial"]
    s = pope_scores(answers, labels, splits)
    assert s["random"]["accuracy"] == 1.0 and s["random"]["f1"] == 1.0
    assert s["popular"]["accuracy"] == 0.5 and s["popular"]["yes_ratio"] == 0.5
    assert s["adversarial"]["precision"] == 0.5 and s["adversarial"]["recall"] == 1.0
    assert s["mean"]["accuracy"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert s["mean"]["n"] == 6


def test_mme_parser_and_scores():
    assert parse_mme_answer("Yes.") == "yes"
    assert parse_mme_answer("no") == "no"
    assert parse_mme_answer("Not sure") == "no"  # official: "no" within the first 4 characters
    assert parse_mme_answer("The answer is yes") == "other"
    assert parse_mme_answer(None) == "other"
    # existence: img1 both right, img2 one right -> acc 3/4, acc+ 1/2 -> 75 + 50 = 125
    # code_reasoning: img3 both wrong -> 0
    answers = ["Yes", "No", "Yes", "Yes", "No", "Yes"]
    labels = ["yes", "no", "yes", "no", "yes", "no"]
    tasks = ["existence"] * 4 + ["code_reasoning"] * 2
    images = ["e/1", "e/1", "e/2", "e/2", "c/3", "c/3"]
    s = mme_scores(answers, labels, tasks, images)
    assert s["subtasks"]["existence"]["score"] == pytest.approx(125.0)
    assert s["subtasks"]["code_reasoning"]["score"] == 0.0
    assert s["perception"] == pytest.approx(125.0) and s["cognition"] == 0.0
    assert s["total"] == pytest.approx(125.0)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("B", "B"),
        ("(C)", "C"),
        ("The answer is D.", "D"),
        ("A", "A"),
        ("A cat sits on the mat", "A"),  # "A" is an article here; the option text "cat" decides
        ("a dog", "B"),  # option text
        ("B or C", None),  # two letters: ambiguous
        ("", None),
        (None, None),
        ("I cannot tell", None),
    ],
)
def test_extract_option(text, expected):
    options = {"A": "cat", "B": "dog", "C": "bird", "D": "fish"}
    assert extract_option(text, options) == expected


def test_circular_accuracy_needs_every_rotation():
    groups = ["1", "1", "1", "2", "2", "3"]
    correct = [True, True, False, True, True, True]
    cats = ["x", "x", "x", "y", "y", "y"]
    s = circular_accuracy(groups, correct, cats)
    assert s["accuracy"] == pytest.approx(200 / 3)
    assert s["n_questions"] == 3 and s["n_rows"] == 6
    assert s["categories"] == {"x": 0.0, "y": 100.0}


def test_choice_accuracy():
    s = choice_accuracy(["A", None, "c", "D"], ["A", "B", "C", "d"], ["t1", "t1", "t2", "t2"])
    assert s["accuracy"] == 50.0  # predictions are letters as extracted: "c" is not "C"
    assert s["categories"] == {"t1": 50.0, "t2": 50.0}  # gold letters are upper-cased


@pytest.mark.parametrize(
    "text, mode, expected",
    [
        ("[0.1, 0.2, 0.5, 0.6]", "strict", (0.1, 0.2, 0.5, 0.6)),
        ("[0.1,0.2,0.5,0.6].", "strict", (0.1, 0.2, 0.5, 0.6)),
        ("The box is [0.1, 0.2, 0.5, 0.6]", "strict", None),
        ("The box is [0.1, 0.2, 0.5, 0.6]", "lenient", (0.1, 0.2, 0.5, 0.6)),
        ("The box is [0.1, 0.2, 0.5, 0.6]", "lmms-eval", (0.1, 0.2, 0.5, 0.6)),
        ("(0.5, 0.6, 0.1, 0.2)", "lenient", (0.1, 0.2, 0.5, 0.6)),  # corners reordered
        ("(0.5, 0.6, 0.1, 0.2)", "lmms-eval", None),  # square brackets only
        ("[0.5, 0.6, 0.1, 0.2]", "strict", None),
        ("[0.5, 0.6, 0.1, 0.2]", "lmms-eval", (0.5, 0.6, 0.1, 0.2)),  # as written
        ("x1=0.1 y1=0.2 x2=0.3 y2=0.4", "lenient", None),  # bare numbers are never read
        ("[12, 30, 200, 180]", "lenient", None),  # pixels are not guessed
        ("[12, 30, 200, 180]", "lmms-eval", (12.0, 30.0, 200.0, 180.0)),
        ("[0.1, 0.2, 0.5]", "lenient", None),
        ("no box here", "lmms-eval", None),
        ("", "strict", None),
        (None, "lenient", None),
    ],
)
def test_parse_box(text, mode, expected):
    got = parse_box(text, mode=mode)
    assert got == (pytest.approx(expected) if expected else None)


def test_iou_cases():
    assert iou((0, 0, 2, 2), (1, 1, 3, 3)) == pytest.approx(1 / 7)
    assert iou((0, 0, 1, 1), (0, 0, 1, 1)) == 1.0
    assert iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    assert iou((1, 1, 1, 1), (1, 1, 1, 1)) == 0.0  # degenerate boxes have no area
    assert iou((0, 0, 0, 1), (0, 0, 1, 1)) == 0.0
    assert rec_accuracy([0.5, 0.49, None, 0.9]) == 0.5
    assert rec_accuracy([]) == 0.0


def test_frame_conversions():
    w, h = 200, 100  # landscape: pad adds 50 px above and below (S = 200)
    px = (20.0, 10.0, 120.0, 90.0)
    naive = from_pixels(px, "naive", w, h)
    assert naive == pytest.approx((0.1, 0.1, 0.6, 0.9))
    pad = from_pixels(px, "pad", w, h)
    assert pad == pytest.approx((0.1, 0.3, 0.6, 0.7))
    crop = from_pixels(px, "crop", w, h)  # centred 100x100 square starting at x = 50
    assert crop == pytest.approx((-0.3, 0.1, 0.7, 0.9))
    for frame in ("naive", "pad"):
        assert to_pixels(from_pixels(px, frame, w, h), frame, w, h) == pytest.approx(px)
    # the same normalised box means different pixels in different frames
    assert to_pixels((0.1, 0.3, 0.6, 0.7), "pad", w, h) == pytest.approx(px)
    assert to_pixels((0.0, 0.0, 1.0, 0.2), "pad", w, h) == pytest.approx(
        (0, 0, 200, 0)
    )  # clipped to the image
    with pytest.raises(ValueError, match="unknown box frame"):
        to_pixels((0, 0, 1, 1), "letterbox", w, h)
    with pytest.raises(ValueError, match="positive"):
        to_pixels((0, 0, 1, 1), "pad", 0, h)
