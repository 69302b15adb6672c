"""`decovlm explain` and `decovlm explain-eval` on a saved tiny model: files written, scores sane."""

import json

import numpy as np
import pytest
from PIL import Image

from decovlm.cli import main
from decovlm.errors import UserError
from decovlm.interpret import load_cases, score_cases
from decovlm.testing import tiny_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("interpret")
    paths = {}
    for spec in ("avgpool2_4", "qformer2_4"):
        model, processor = tiny_model(spec)
        path = root / spec
        model.save_pretrained(path)
        processor.save_pretrained(path)
        paths[spec] = path
    # a tiny "world": one image, one mask, two cases (one with a box instead of a mask)
    world = root / "world"
    (world / "images").mkdir(parents=True)
    (world / "eval" / "masks").mkdir(parents=True)
    img = np.full((32, 32, 3), 128, dtype=np.uint8)
    img[8:16, 8:16] = (220, 20, 20)
    Image.fromarray(img).save(world / "images" / "eval_0.png")
    mask = np.zeros((32, 32), dtype=np.uint8)
    mask[8:16, 8:16] = 255
    Image.fromarray(mask).save(world / "eval" / "masks" / "eval_0_r0.png")
    cases = [
        {"case_id": "c0", "image": "images/eval_0.png", "prompt": "what colour is the square ?", "answer": "red",
         "target_word": "red", "mask": "eval/masks/eval_0_r0.png"},
        {"case_id": "c1", "image": "images/eval_0.png", "prompt": "what colour is the square ?", "answer": "red square",
         "target_word": "square", "box": [8, 8, 16, 16]},
        {"case_id": "c2", "image": "images/eval_0.png", "prompt": "what colour is the square ?", "answer": "red",
         "target_word": "blue", "box": [8, 8, 16, 16]},
    ]  # fmt: skip
    (world / "eval" / "relevance_cases.jsonl").write_text(
        "".join(json.dumps(c) + "\n" for c in cases)
    )
    return paths, world


def test_explain_cli_writes_pngs_npz_json(saved, tmp_path, capsys):
    paths, world = saved
    out = tmp_path / "out"
    rc = main(["explain", "--model", str(paths["qformer2_4"]), "--image", str(world / "images" / "eval_0.png"),
               "--prompt", "what colour is the square ?", "--answer", "red square", "--out", str(out)])  # fmt: skip
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [w["text"] for w in summary["words"]] == ["red", "square"]
    assert summary["query_to_patch_method"] == "gae"
    assert summary["prompt"].startswith("USER: <image>")  # the chat template was applied
    for name in ("word_00_red.png", "word_01_square.png", "query_to_patch.png", "maps.npz"):
        assert (out / name).stat().st_size > 0
    assert Image.open(out / "word_00_red.png").format == "PNG"
    maps = np.load(out / "maps.npz")
    assert maps["word_text_to_patch"].shape == (2, 4, 4)
    assert maps["query_to_patch"].shape == (2, 4, 16)
    assert summary["shapes"]["text_to_query"] == [2, 4]
    # GAE comes with the attention rollout it is checked against; every word has a verdict
    assert set(summary["words"][0]["unreliable"]) == {"gae", "attention"}
    assert "vanished_words" in summary and "unreliable_words" in summary
    assert summary["vanish_tol"] is None and "reference" in summary["reliability"]
    # with every method, a huge tolerance: each word is flagged, in the JSON and on the console
    out2 = tmp_path / "out2"
    rc = main(["explain", "--model", str(paths["qformer2_4"]), "--image", str(world / "images" / "eval_0.png"),
               "--prompt", "what colour is the square ?", "--answer", "red square", "--out", str(out2),
               "--methods", "all", "--vanish-tol", "1e9", "--upsampling", "nearest"])  # fmt: skip
    assert rc == 0
    summary = json.loads((out2 / "summary.json").read_text())
    assert summary["vanished_words"] == summary["unreliable_words"] == ["red", "square"]
    reason = summary["words"][0]["unreliable_reason"]["gae"]
    assert reason and ("--vanish-tol" in reason or "attention map peaks" in reason)
    assert "not evidence" in capsys.readouterr().out
    assert summary["query_to_patch_methods"] == ["gae", "attention", "grad-x-input"]
    assert np.load(out2 / "maps.npz")["attention__word_text_to_patch"].shape == (2, 4, 4)


def test_explain_cli_bad_image(saved, tmp_path, capsys):
    paths, _ = saved
    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    argv = ["explain", "--model", str(paths["avgpool2_4"]), "--image", str(bad), "--prompt", "hi"]
    assert main([*argv, "--out", str(tmp_path)]) == 2
    assert "cannot read image" in capsys.readouterr().err


def test_score_cases_and_eval_cli(saved, tmp_path):
    paths, world = saved
    cases, root = load_cases(world / "eval" / "relevance_cases.jsonl")
    assert root == world.resolve()
    from decovlm.modeling.loading import load_model

    model, processor = load_model(paths["avgpool2_4"], "cpu")
    result = score_cases(model, processor, cases, root, progress=False)
    assert [r["case_id"] for r in result["cases"]] == ["c0", "c1"]
    assert (
        result["skipped"][0]["case_id"] == "c2"
        and "not in the answer" in result["skipped"][0]["reason"]
    )
    for row in result["cases"]:
        assert row["pointing"] in (0.0, 1.0) and 0.0 <= row["energy"] <= 1.0
        assert row["mask_area"] == pytest.approx(
            1 / 16
        )  # the 8x8 px square is exactly patch (1, 1)
        assert 1 <= row["k50"] <= row["k90"] <= 16

    out = tmp_path / "eval"
    rc = main(["explain-eval", "--model", str(paths["avgpool2_4"]), "--model", str(paths["qformer2_4"]),
               "--cases", str(world / "eval" / "relevance_cases.jsonl"), "--out", str(out)])  # fmt: skip
    assert rc == 0
    table = (out / "relevance_scores.md").read_text()
    # every Query-to-Patch method is scored, the projector's own marked
    for row in ("| avgpool2_4 | avgpool2_4 | fixed (own) | 2 |", "| qformer2_4 | qformer2_4 | gae (own) | 2 |",
                "| qformer2_4 | qformer2_4 | attention | 2 |", "| qformer2_4 | qformer2_4 | grad-x-input | 2 |"):  # fmt: skip
        assert row in table
    assert "unreliable" in table.splitlines()[0]
    data = json.loads((out / "relevance_scores.json").read_text())
    assert [m["projector"] for m in data["models"]] == ["avgpool2_4", "qformer2_4"]
    qformer = data["models"][1]
    assert set(qformer["methods"]) == {"gae", "attention", "grad-x-input"}
    assert qformer["summary"] == qformer["methods"]["gae"]
    gae = qformer["methods"]["gae"]
    assert (
        0.0 <= gae["unreliable_share"] <= 1.0 and gae["vanished_share"] == gae["unreliable_share"]
    )
    case = qformer["cases"][0]
    assert isinstance(case["unreliable"], bool) and case["q2p_mass"] >= 0
    assert case["vanished"] == case["unreliable"] and 0 <= case["kept_share"] <= 1
    assert set(case["methods"]) == set(qformer["methods"])
    # --methods none: only the projector's own
    rc = main(["explain-eval", "--model", str(paths["qformer2_4"]), "--methods", "none",
               "--cases", str(world / "eval" / "relevance_cases.jsonl"), "--out", str(out / "own")])  # fmt: skip
    data = json.loads((out / "own" / "relevance_scores.json").read_text())
    assert list(data["models"][0]["methods"]) == ["gae", "attention"]  # GAE's reference stays
    with pytest.raises(UserError, match="--model"):
        main(["explain-eval", "--out", str(out), "--debug"])


def test_load_cases_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="cases file not found"):
        load_cases(tmp_path / "none.jsonl")
    bad = tmp_path / "cases.jsonl"
    bad.write_text(json.dumps({"case_id": "x", "image": "a.png"}) + "\n")
    with pytest.raises(ValueError, match=r"case 1 \(x\) lacks"):
        load_cases(bad)
