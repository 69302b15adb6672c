"""Records: validation with skip-and-count or strict failure, lazy images, truncation, batching."""

from __future__ import annotations

import json

import pytest
import torch

from decovlm.data import DataCollator, SkipLog, load_records
from decovlm.data.dataset import ConversationDataset
from decovlm.data.records import IMAGE_TAG, parse_record
from decovlm.data.sampler import GroupedSampler
from decovlm.data.templates import IGNORE_INDEX
from decovlm.data.toy import write_toy_dataset
from decovlm.testing import tiny_model


@pytest.fixture(scope="module")
def processor():
    return tiny_model("avgpool2_4")[1]


@pytest.fixture(scope="module")
def bad_data(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("bad"), n=6, kind="chat", bad=True)


def test_structural_problems_are_skipped_and_counted(bad_data):
    log = SkipLog()
    records = load_records(bad_data, skip_log=log)
    assert len(records) == 8  # 6 good + missing/corrupt image (found lazily)
    assert log.total == 4
    assert log.counts == {"image tags": 2, "empty conversation": 1, "roles out of order": 1}
    assert log.first_ids == ["bad-two-tags", "bad-empty", "bad-roles", "bad-tag-no-image"]


def test_strict_mode_fails_naming_the_record(bad_data, processor):
    with pytest.raises(ValueError, match="bad-two-tags.*2 <image> tags"):
        load_records(bad_data, strict=True)
    records = [r for r in load_records(bad_data) if r.id == "bad-corrupt-image"]
    ds = ConversationDataset(
        records, processor, "vicuna_v1", image_root=bad_data.parent, strict=True
    )
    with pytest.raises(ValueError, match="bad-corrupt-image.*corrupt image"):
        ds[0]


def test_bad_images_are_skipped_lazily_and_logged(bad_data, processor, tmp_path):
    log = SkipLog(path=tmp_path / "skipped.jsonl")
    records = load_records(bad_data)
    ds = ConversationDataset(
        records, processor, "vicuna_v1", image_root=bad_data.parent, skip_log=log
    )
    ids = [r.id for r in records]
    item = ds[ids.index("bad-missing-image")]  # replaced by the next loadable record
    assert item["pixel_values"].shape == (3, 32, 32)
    assert log.counts == {"missing image": 1, "corrupt image": 1}
    lines = [json.loads(x) for x in (tmp_path / "skipped.jsonl").read_text().splitlines()]
    assert [x["id"] for x in lines] == ["bad-missing-image", "bad-corrupt-image"]


def test_image_tag_placement():
    # an image key without a tag: LLaVA's choice, the tag goes first in the first human turn
    rec = parse_record(
        {
            "id": "a",
            "image": "x.png",
            "conversations": [{"from": "human", "value": "what"}, {"from": "gpt", "value": "red"}],
        },
        0,
    )
    assert rec.turns[0].text == f"{IMAGE_TAG}\nwhat"
    # a tag at the end moves to the front
    rec = parse_record(
        {
            "id": "b",
            "image": "x.png",
            "conversations": [
                {"from": "human", "value": "what <image>"},
                {"from": "gpt", "value": "red"},
            ],
        },
        0,
    )
    assert rec.turns[0].text == f"{IMAGE_TAG}\nwhat"
    with pytest.raises(ValueError, match="ends with a user turn"):
        parse_record({"id": "c", "conversations": [{"from": "human", "value": "hi"}]}, 0)


def test_truncation_keeps_image_tokens(processor):
    long_answer = " ".join(["red"] * 50)
    rec = parse_record(
        {
            "id": "long",
            "image": "0.png",
            "conversations": [
                {"from": "human", "value": "<image>\nwhat"},
                {"from": "gpt", "value": long_answer},
            ],
        },
        0,
    )
    ds = ConversationDataset([rec], processor, "plain", image_root="unused", max_length=10)
    ds.load_image = lambda record: torch.zeros(3, 32, 32)
    item = ds[0]
    assert len(item["input_ids"]) == 10
    assert int((item["input_ids"] == ds.image_token_id).sum()) == 4  # all M image tokens kept
    # image tokens alone exceed max_length: skipped (strict: an error naming the record)
    ds_short = ConversationDataset(
        [rec], processor, "plain", image_root="unused", max_length=3, strict=True
    )
    with pytest.raises(ValueError, match="long.*too long"):
        ds_short[0]


def test_collator_right_pads_and_stacks_present_images():
    samples = [
        {
            "input_ids": torch.tensor([5, 6, 7]),
            "labels": torch.tensor([-100, 6, 7]),
            "pixel_values": torch.ones(3, 2, 2),
        },
        {"input_ids": torch.tensor([8]), "labels": torch.tensor([8]), "pixel_values": None},
    ]
    batch = DataCollator(pad_token_id=1)(samples)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 1, 1]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["pixel_values"].shape == (1, 3, 2, 2)
    assert "pixel_values" not in DataCollator(1)(samples[1:])


def test_modality_sampler_is_a_seeded_permutation_with_pure_batches():
    lengths = list(range(1, 41))
    has_image = [i % 3 != 0 for i in range(40)]
    sampler = GroupedSampler(lengths, batch_size=4, seed=3, has_image=has_image)
    order = list(sampler)
    assert sorted(order) == list(range(40))
    assert order == list(GroupedSampler(lengths, 4, seed=3, has_image=has_image))  # deterministic
    mixed = sum(len({has_image[i] for i in order[k : k + 4]}) > 1 for k in range(0, 40, 4))
    assert mixed <= 2  # only the tail batches of each modality may mix
    sampler.set_epoch(1)
    assert list(sampler) != order
