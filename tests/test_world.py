"""The synthetic world: determinism, pixel-exact masks and boxes, correct answers, disjoint splits,
and the on-disk formats the data pipeline and the evaluation read."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from decovlm.errors import UserError
from decovlm.world import (
    COLOURS,
    WorldConfig,
    all_questions,
    generate_world,
    load_world_meta,
    mask_box,
    patch_labels,
    render_scene,
    sample_scene,
)
from decovlm.world.render import object_mask
from decovlm.world.scene import CLOSE_COLOURS, PLURALS, SHAPES, composition_key
from decovlm.world.tasks import LETTERS, LOCALIZATION, MC_ANSWER, SHORT_ANSWER, SIDE_MARGIN

CATEGORIES = {"vqa", "count", "localization", "yesno", "multiple_choice"}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(out, train=30, eval=10, seed=3, progress=False)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_same_bytes_different_seed_differs(world, tmp_path):
    generate_world(tmp_path / "again", train=30, eval=10, seed=3, progress=False)
    assert _files(world) == _files(tmp_path / "again")
    generate_world(tmp_path / "other", train=30, eval=10, seed=4, progress=False)
    other = _files(tmp_path / "other")
    assert other["align.json"] != _files(world)["align.json"]
    assert other["images/train_000000.png"] != _files(world)["images/train_000000.png"]


def test_scene_does_not_depend_on_how_many_were_drawn():
    assert sample_scene(7, "train", 5) == sample_scene(7, "train", 5)
    assert sample_scene(7, "train", 5) != sample_scene(7, "train", 6)
    assert sample_scene(7, "eval", 5) != sample_scene(7, "train", 5)


def test_masks_and_boxes_agree_with_pixels():
    config = WorldConfig()
    for i in range(40):
        r = render_scene(sample_scene(1, "train", i, config))
        pixels = np.asarray(r.image).astype(int)
        assert 2 <= len(r.scene.objects) <= 6
        union = np.zeros_like(r.masks[0], dtype=int)
        for obj, mask, box in zip(r.scene.objects, r.masks, r.boxes):
            full = object_mask(obj, config.image_size)
            assert mask.any() and not (mask & ~full).any()  # visible part of its own shape
            assert mask.sum() / full.sum() >= config.min_visible
            assert box == mask_box(mask)
            x0, y0, x1, y1 = box
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
            assert mask[y0, :].any() and mask[y1 - 1, :].any()  # tight box
            assert mask[:, x0].any() and mask[:, x1 - 1].any()
            assert (pixels[mask] == COLOURS[obj.colour]).all()
            union += mask
        assert union.max() == 1  # visible masks never overlap
        # Background never looks like an object colour.
        bg = pixels[union == 0]
        for rgb in COLOURS.values():
            assert np.abs(bg - np.asarray(rgb)).sum(-1).min() > 60


def test_larger_images_and_bad_config():
    r = render_scene(sample_scene(0, "train", 0, WorldConfig(image_size=128)))
    assert r.image.size == (128, 128)
    with pytest.raises(ValueError, match="image_size"):
        WorldConfig(image_size=500)
    with pytest.raises(ValueError, match="split"):
        sample_scene(0, "test", 0)


def test_position_grid_puts_centres_on_the_lattice():
    config = WorldConfig(position_grid=8, position_jitter=1.0)
    cell = config.image_size / 8
    for i in range(20):
        scene = sample_scene(0, "train", i, config)
        assert len(scene.objects) >= config.min_objects
        for obj in scene.objects:
            for c in (obj.cx, obj.cy):
                # Within the jitter of a cell centre, and never off the image.
                assert abs(c - cell * (np.floor(c / cell) + 0.5)) <= 1.0 + 1e-6
                assert obj.radius <= c <= config.image_size - obj.radius
        assert render_scene(scene).image.size == (64, 64)
    # Off by default: free placement puts centres between cell centres too.
    free = [o.cx for i in range(20) for o in sample_scene(0, "train", i).objects]
    assert max(abs(c - cell * (np.floor(c / cell) + 0.5)) for c in free) > 2.0


def test_position_grid_errors_name_the_field(tmp_path):
    from decovlm.cli import main

    with pytest.raises(ValueError, match="position_grid"):
        WorldConfig(position_grid=-1)
    with pytest.raises(ValueError, match="position_jitter"):
        WorldConfig(position_grid=8, position_jitter=-0.5)
    with pytest.raises(UserError, match="--position-grid"):
        main(
            ["world", "--out", str(tmp_path), "--position-grid", "500", "--no-progress", "--debug"]
        )
    args = ["world", "--out", str(tmp_path), "--train", "2", "--eval", "1", "--no-progress"]
    assert main([*args, "--position-grid", "8"]) == 0
    assert load_world_meta(tmp_path)["config"]["position_grid"] == 8


def test_patch_labels_majority_owner():
    labels = np.full((16, 16), -1, dtype=np.int16)
    labels[0:8, 0:8] = 0  # patch (0, 0) fully object 0
    labels[8:10, 8:16] = 1  # 16 of 64 pixels of patch (1, 1): exactly the 25 % threshold
    labels[0:1, 8:16] = 1  # 8 of 64 pixels: below it
    assert patch_labels(labels, 8).tolist() == [[0, -1], [-1, 1]]
    with pytest.raises(ValueError, match="image size 16 is not a multiple of the patch size 5"):
        patch_labels(labels, 5)


def test_train_and_eval_compositions_are_disjoint():
    train = {composition_key(sample_scene(0, "train", i).objects) for i in range(300)}
    held = {composition_key(sample_scene(0, "eval", i).objects) for i in range(100)}
    assert not train & held
    assert len(held) > 90  # varied, not one repeated scene


# --- every answer recomputed from the scene -------------------------------------------------


def _objs(scene, **attrs):
    return [o for o in scene.objects if all(getattr(o, k) == v for k, v in attrs.items())]


def _by_name(scene, name: str):
    words = name.split()
    attrs = {"shape": words[-1]}
    if len(words) >= 2:
        attrs["colour"] = words[-2]
    if len(words) == 3:
        attrs["size"] = words[0]
    return _objs(scene, **attrs)


def _check(qa, r):
    scene = r.scene
    q = qa.question
    if qa.category == "caption":
        phrases = qa.answer.rstrip(".").replace(" and ", ", ").split(", ")
        ordered = sorted(scene.objects, key=lambda o: (o.cx, o.cy))
        assert phrases == [f"a {o.size} {o.colour} {o.shape}" for o in ordered]
        return
    if qa.category in ("vqa", "count", "yesno"):
        assert qa.prompt == f"{q}\n{SHORT_ANSWER}"
    if m := re.fullmatch(r"What colour is the (\w+)\?", q):
        if qa.category == "vqa":
            (obj,) = _objs(scene, shape=m[1])
            assert qa.answer == obj.colour == qa.target_word
    elif m := re.fullmatch(r"What shape is the (\w+) object\?", q):
        if qa.category == "vqa":
            (obj,) = _objs(scene, colour=m[1])
            assert qa.answer == obj.shape
    elif m := re.fullmatch(r"What size is the (\w+) (\w+)\?", q):
        (obj,) = _objs(scene, colour=m[1], shape=m[2])
        assert qa.answer == obj.size
    elif m := re.fullmatch(r"What is (left|right) of the ([\w ]+)\?", q):
        (ref,) = _by_name(scene, m[2])
        margin = SIDE_MARGIN * scene.image_size
        sign = -1 if m[1] == "left" else 1
        others = [o for o in scene.objects if o is not ref]
        assert all(abs(o.cx - ref.cx) > margin for o in others)
        (hit,) = [o for o in others if sign * (o.cx - ref.cx) > margin]
        assert qa.answer == hit.name  # the full name: one token of the world LM, as in captions
    elif m := re.fullmatch(r"How many (\w+) objects are there\?", q):
        assert qa.answer == str(len(_objs(scene, colour=m[1])))
    elif m := re.fullmatch(r"How many (\w+) are there\?", q):
        shape = {v: k for k, v in PLURALS.items()}[m[1]]
        assert qa.answer == str(len(_objs(scene, shape=shape)))
    elif q.startswith(LOCALIZATION):
        (obj,) = _by_name(scene, q[len(LOCALIZATION) :].removeprefix("the ").rstrip("."))
        i = scene.objects.index(obj)
        x0, y0, x1, y1 = mask_box(r.masks[i])
        s = scene.image_size
        assert qa.answer == f"[{x0 / s:.2f}, {y0 / s:.2f}, {x1 / s:.2f}, {y1 / s:.2f}]"
    elif m := re.fullmatch(r"Is there an? (\w+) (\w+) in the image\?", q):
        present = bool(_objs(scene, colour=m[1], shape=m[2]))
        assert qa.answer == ("yes" if present else "no")
        if qa.pope_split == "adversarial" and not present:  # an attribute swap
            assert _objs(scene, colour=m[1]) or _objs(scene, shape=m[2])
            assert m[1] in {o.colour for o in scene.objects} | {
                c for o in scene.objects for c in CLOSE_COLOURS[o.colour]
            } or m[2] in {o.shape for o in scene.objects}
    else:
        raise AssertionError(f"unexpected question {q!r}")
    if qa.category == "multiple_choice":
        assert len(qa.options) == 4 == len(set(qa.options))
        assert qa.prompt.endswith(MC_ANSWER)
        picked = qa.options[LETTERS.index(qa.answer)]
        if m := re.fullmatch(r"What colour is the (\w+)\?", q):
            assert picked == _objs(scene, shape=m[1])[0].colour
        else:
            assert picked in SHAPES
            assert (
                picked == _objs(scene, colour=re.match(r"What shape is the (\w+)", q)[1])[0].shape
            )


def test_every_answer_is_correct_for_its_scene():
    seen = Counter()
    for i in range(60):
        r = render_scene(sample_scene(2, "train" if i % 2 else "eval", i))
        for category, qas in all_questions(r, np.random.default_rng(i)).items():
            for qa in qas:
                assert qa.category == category
                assert qa.answer in qa.answers or category == "multiple_choice"
                _check(qa, r)
                seen[
                    (category, qa.kind, qa.pope_split, qa.answer if category == "yesno" else "")
                ] += 1
    kinds = {k[1] for k in seen}
    assert {"colour", "shape", "size", "left", "right", "count_colour", "count_shape"} <= kinds
    for split in ("random", "popular", "adversarial"):
        assert (
            seen[("yesno", "pope", split, "yes")] > 0 and seen[("yesno", "pope", split, "no")] > 0
        )


def test_count_questions_are_balanced_between_present_and_absent():
    # Zero must be as likely as not, or "1" wins from the question's words alone (VQA v2's lesson).
    for i in range(20):
        r = render_scene(sample_scene(3, "train", i))
        counts = all_questions(r, np.random.default_rng(i))["count"]
        for kind, vocabulary in (("count_colour", COLOURS), ("count_shape", SHAPES)):
            answers = [qa.answer for qa in counts if qa.kind == kind]
            present = len(answers) - answers.count("0")
            # As many absent names as present ones, unless the vocabulary runs out.
            assert answers.count("0") == min(present, len(vocabulary) - present), (kind, answers)


def test_finetune_turns_draw_boxes_less_often():
    from decovlm.world.writer import TURN_WEIGHTS, finetune_record

    turns = Counter()
    for i in range(150):
        r = render_scene(sample_scene(4, "train", i))
        rec = finetune_record(r, "img.png", seed=4)
        for c in rec["conversations"][::2]:
            turns["box" if "bounding box" in c["value"] else "other"] += 1
    share = turns["box"] / sum(turns.values())
    expected = TURN_WEIGHTS["localization"] / sum(TURN_WEIGHTS.values())
    assert abs(share - expected) < 0.04, (share, expected)


# --- files on disk ---------------------------------------------------------------------------


def test_align_and_finetune_are_llava_conversations(world):
    align = json.loads((world / "align.json").read_text())
    finetune = json.loads((world / "finetune.json").read_text())
    assert len(align) == len(finetune) == 30
    for rec in align:
        assert set(rec) == {"id", "image", "conversations"}
        assert (world / rec["image"]).exists()
        human, gpt = rec["conversations"]
        assert human == {"from": "human", "value": "<image>\nDescribe the image briefly."}
        assert gpt["from"] == "gpt" and gpt["value"].endswith(".")
    for rec in finetune:
        convs = rec["conversations"]
        assert len(convs) >= 2 and len(convs) % 2 == 0
        assert [c["from"] for c in convs] == ["human", "gpt"] * (len(convs) // 2)
        assert convs[0]["value"].startswith("<image>\n")
        assert sum(c["value"].count("<image>") for c in convs) == 1
        # Captions are the align stage's data; finetune turns are the short-answer tasks.
        assert not any("Describe the image" in c["value"] for c in convs[::2])
    assert {r["image"] for r in align} == {r["image"] for r in finetune}


def test_grounding_records_are_single_box_questions(world):
    from decovlm.eval.metrics import parse_box

    grounding = json.loads((world / "grounding.json").read_text())
    assert 0 < len(grounding) <= 30
    for rec in grounding:
        human, gpt = rec["conversations"]
        assert human["value"].startswith("<image>\n") and "bounding box" in human["value"]
        assert parse_box(gpt["value"]) is not None and (world / rec["image"]).exists()


def test_eval_questions_format(world):
    lines = (world / "eval" / "questions.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len({r["question_id"] for r in records}) == len(records)
    assert {r["category"] for r in records} == CATEGORIES
    train_images = {r["image"] for r in json.loads((world / "align.json").read_text())}
    for r in records:
        assert {"question_id", "image", "text", "category", "answer"} <= set(r)
        assert (world / r["image"]).exists() and r["image"] not in train_images
        assert r["answer"] in r["answers"]
        if r["category"] == "yesno":
            assert r["pope_split"] in {"random", "popular", "adversarial"}
            assert r["answer"] in {"yes", "no"}
        if r["category"] == "multiple_choice":
            assert r["answer"] in "ABCD" and len(r["options"]) == 4
            for letter, option in zip("ABCD", r["options"]):
                assert f"\n{letter}. {option}\n" in r["text"]
        if r["category"] == "localization":
            values = json.loads(r["answer"])
            assert len(values) == 4 and all(0 <= v <= 1 for v in values)


def test_eval_questions_are_balanced_across_categories(tmp_path):
    """One question per category per scene (the task groups equally precise); yes/no cycles through
    POPE split x answer from scene to scene."""
    from collections import Counter

    root = generate_world(tmp_path / "w", train=2, eval=36, seed=5, progress=False).root
    records = [json.loads(x) for x in (root / "eval" / "questions.jsonl").read_text().splitlines()]
    per_scene = Counter((r["scene_id"], r["category"]) for r in records)
    assert set(per_scene.values()) == {1}
    counts = Counter(r["category"] for r in records)
    assert counts["yesno"] == 36 and max(counts.values()) - min(counts.values()) <= 3
    yesno = Counter((r["pope_split"], r["answer"]) for r in records if r["category"] == "yesno")
    assert len(yesno) == 6 and max(yesno.values()) - min(yesno.values()) <= 2


def test_relevance_cases_and_masks(world):
    cases = [
        json.loads(x)
        for x in (world / "eval" / "relevance_cases.jsonl").read_text().split("\n")
        if x
    ]
    assert len(cases) >= 10
    for case in cases:
        mask = np.asarray(Image.open(world / case["mask"]))
        assert mask.shape == (64, 64) and set(np.unique(mask)) <= {0, 255}
        assert case["target_word"] == case["answer"]
        scene = sample_scene(3, "eval", int(case["image"].split("_")[-1].split(".")[0]))
        r = render_scene(scene)
        (i,) = [k for k, o in enumerate(scene.objects) if (o.shape, o.colour, o.size) == (
            case["object"]["shape"], case["object"]["colour"], case["object"]["size"])]  # fmt: skip
        assert ((mask > 0) == r.masks[i]).all()
        image = np.asarray(Image.open(world / case["image"]))
        assert (image[mask > 0] == COLOURS[case["object"]["colour"]]).all()


def test_world_json_and_errors(world, tmp_path):
    meta = load_world_meta(world)
    assert meta["seed"] == 3 and meta["image_size"] == 64
    assert len(meta["vocab"]["shapes"]) >= 5 and len(meta["vocab"]["colours"]) >= 8
    assert meta["counts"]["train_scenes"] == 30 and meta["counts"]["eval_scenes"] == 10
    with pytest.raises(FileNotFoundError, match="decovlm world"):
        load_world_meta(tmp_path)
    (tmp_path / "world.json").write_text("{not json")
    with pytest.raises(ValueError, match="world.json"):
        load_world_meta(tmp_path)


def test_cli_writes_a_world(tmp_path, capsys):
    from decovlm.cli import main

    assert (
        main(["world", "--out", str(tmp_path), "--train", "3", "--eval", "2", "--no-progress"]) == 0
    )
    assert "wrote the world" in capsys.readouterr().out
    assert len(list((tmp_path / "images").glob("*.png"))) == 5
    # A smaller rerun leaves no stale images behind.
    assert (
        main(["world", "--out", str(tmp_path), "--train", "2", "--eval", "1", "--no-progress"]) == 0
    )
    assert len(list((tmp_path / "images").glob("*.png"))) == 3


def test_boxes_on_the_patch_lattice():
    """box_grid=8: every box edge on the 8x8 lattice, at least one cell, and the nearest lattice box
    to the object's pixel box (each edge within half a cell)."""
    from decovlm.world.tasks import localization_questions, snap_box

    config = WorldConfig(position_grid=8, box_grid=8)
    seen = 0
    for i in range(20):
        rendered = render_scene(sample_scene(2, "train", i, config))
        for qa in localization_questions(rendered):
            box = json.loads(qa.answer)
            assert all(abs(v * 8 - round(v * 8)) < 0.05 for v in box)  # 2-decimal lattice values
            assert box[2] - box[0] >= 0.12 and box[3] - box[1] >= 0.12
            exact = rendered.normalized_box(qa.object)
            assert all(abs(a - b) <= 1 / 16 + 1e-9 for a, b in zip(snap_box(exact, 8), exact))
            seen += 1
    assert seen > 10
    assert snap_box((0.0, 0.0, 0.04, 0.04), 8) == (0.0, 0.0, 0.125, 0.125)  # never empty
    assert snap_box((0.96, 0.5, 1.0, 0.6), 8) == (0.875, 0.5, 1.0, 0.625)
