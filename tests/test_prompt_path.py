"""One prompt path: a question gets the same token ids in training and in every inference path.

The model is saved the way training saves it (with the chat template it was trained with) and
reloaded, then train / eval / serve / explain / explain-eval / the lmms-eval adapter / chat /
predict are run on one question; every token-id sequence the processor produced for them must be
the prompt part of the training sample.
"""

from __future__ import annotations

import importlib.util
import io
import json

import pytest
import torch
from PIL import Image

from decovlm.chat_template import BUILTIN_TEMPLATES
from decovlm.data.dataset import ConversationDataset
from decovlm.data.records import parse_record
from decovlm.data.templates import IGNORE_INDEX
from decovlm.modeling import DecoVLMProcessor
from decovlm.modeling.loading import load_model
from decovlm.testing import tiny_model

QUESTION = "what colour is the circle ?"
ANSWER = "red"


@pytest.fixture(scope="module", params=["vicuna_v1", "plain", "tokenizer"])
def saved(request, tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp(f"prompt_{request.param}")
    model, processor = tiny_model("avgpool2_4")
    # What train.runner does: the template the labels are built with is the one saved.
    processor.set_chat_template(request.param)
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    Image.new("RGB", (32, 32), "red").save(root / "x.png")
    model, processor = load_model(root / "model", "cpu")
    return request.param, model, processor, root


def training_prompt_ids(processor, template: str, root, turns=((QUESTION, ANSWER),)) -> list[int]:
    """The ids before the last assistant turn of a training sample."""
    conversations = []
    for n, (question, answer) in enumerate(turns):
        conversations.append({"from": "human", "value": question if n else f"<image>\n{question}"})
        conversations.append({"from": "gpt", "value": answer})
    record = parse_record({"id": "r", "image": "x.png", "conversations": conversations}, 0)
    item = ConversationDataset([record], processor, template, image_root=root)[0]
    labels = item["labels"].tolist()
    supervised = [i for i, label in enumerate(labels) if label != IGNORE_INDEX]
    last = max(i for i in supervised if i - 1 not in supervised)  # start of the last answer
    return item["input_ids"][:last].tolist()


@pytest.fixture
def recorded(monkeypatch):
    """The first input_ids row of every batch the processor builds (`__call__` and
    `apply_chat_template(tokenize=True)` both end in `_batch`)."""
    calls: list[list[int]] = []
    original = DecoVLMProcessor._batch

    def spy(self, rows, *args, **kwargs):
        calls.append(list(rows[0]))
        return original(self, rows, *args, **kwargs)

    monkeypatch.setattr(DecoVLMProcessor, "_batch", spy)
    return calls


def run_every_path(model, processor, root, tmp_path, calls) -> dict[str, list[int]]:
    """The first ids the processor produced for each path (`calls`: the spy's record)."""
    from decovlm.eval.generate import decovlm_generate_fn
    from decovlm.infer.chat import ChatSession
    from decovlm.infer.predict import predict, read_questions
    from decovlm.interpret.cases import score_cases
    from decovlm.interpret.explain import explain
    from decovlm.serve.engine import Explorer

    image = Image.open(root / "x.png").convert("RGB")
    out: dict[str, list[int]] = {}

    def last(calls_before: int) -> list[int]:
        return calls[calls_before]

    n = len(calls)
    decovlm_generate_fn(model, processor, max_new_tokens=1)([(image, QUESTION)])
    out["eval"] = last(n)

    n = len(calls)
    explorer = Explorer("m", model, processor, max_new_tokens=1)
    for _ in explorer.stream_answer(image, explorer.format_prompt(QUESTION)):
        pass
    out["serve"] = last(n)

    n = len(calls)
    explain(model, processor, image, QUESTION, answer=ANSWER)
    out["explain"] = last(n)

    n = len(calls)
    case = {"case_id": "c", "image": "x.png", "prompt": QUESTION, "answer": ANSWER}
    score_cases(model, processor, [{**case, "target_word": ANSWER, "box": [0, 0, 16, 16]}], root)
    out["explain-eval"] = last(n)

    n = len(calls)
    ChatSession(model, processor, image, max_new_tokens=1, out=io.StringIO()).ask(QUESTION)
    out["chat"] = last(n)

    n = len(calls)
    (root / "q.jsonl").write_text(json.dumps({"id": 1, "image": "x.png", "question": QUESTION}))
    questions, _ = read_questions(root / "q.jsonl")
    predict(model, processor, questions, tmp_path / "answers.jsonl", max_new_tokens=1)
    out["predict"] = last(n)

    try:
        from decovlm.eval.lmms_adapter import DecoVLMLMM
    except ImportError:  # lmms-eval is optional
        return out
    n = len(calls)
    DecoVLMLMM(model=model, processor=processor)._continuation_logprob(image, QUESTION, ANSWER)
    out["lmms-eval"] = last(n)
    return out


def test_every_path_gives_the_training_prompt_ids(saved, recorded, tmp_path):
    template, model, processor, root = saved
    assert processor.chat_template_name == template
    assert processor.chat_template == BUILTIN_TEMPLATES.get(
        template, processor.tokenizer.chat_template
    )
    train_ids = training_prompt_ids(processor, template, root)
    assert train_ids.count(model.config.image_token_id) == model.num_image_tokens
    paths = run_every_path(model, processor, root, tmp_path, recorded)
    expected = {"eval", "serve", "explain", "explain-eval", "chat", "predict"}
    if importlib.util.find_spec("lmms_eval") is not None:
        expected.add("lmms-eval")
    assert set(paths) == expected
    for name, ids in paths.items():
        assert ids == train_ids, f"{name} prompts {template} differently from training"


def test_an_explicit_override_changes_the_prompt(saved):
    template, _, processor, _ = saved
    other = "plain" if template != "plain" else "vicuna_v1"
    assert processor.format_question(QUESTION, chat_template=other) != processor.format_question(
        QUESTION
    )


def test_a_chat_history_gets_the_training_ids(recorded, tmp_path):
    """Turn 2 of a chat is encoded as the same conversation is in training (turn by turn)."""
    from decovlm.infer.chat import ChatSession

    torch.set_num_threads(1)
    model, processor = tiny_model("avgpool2_4")
    processor.set_chat_template("vicuna_v1")
    Image.new("RGB", (32, 32), "red").save(tmp_path / "x.png")
    turns = ((QUESTION, "red circle"), ("how many objects ?", "two"))
    train_ids = training_prompt_ids(processor, "vicuna_v1", tmp_path, turns)
    session = ChatSession(model, processor, tmp_path / "x.png", max_new_tokens=1, out=io.StringIO())
    session.set_image(tmp_path / "x.png")
    session.messages = [
        processor.question_message(QUESTION),
        {"role": "assistant", "content": "red circle"},
    ]
    session.ask("how many objects ?")
    assert recorded[-1] == train_ids


def test_questions_are_kept_as_written_but_for_the_image_tag(saved):
    _, _, processor, _ = saved
    message = processor.question_message("  what colour ?\nA. red\nB. <image>blue ")
    assert message["content"] == "<image>\nwhat colour ?\nA. red\nB. blue"
