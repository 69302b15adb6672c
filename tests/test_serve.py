"""The relevance explorer's functions (no browser): answering, words, maps, compare, uploads, files."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")

from decovlm.serve import app, cli, handlers, render  # noqa: E402
from decovlm.serve.engine import Explorer, load_explorer  # noqa: E402
from decovlm.serve.examples import find_examples  # noqa: E402
from decovlm.testing import tiny_model  # noqa: E402


def _save(spec: str, folder):
    model, processor = tiny_model(spec)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve_models")
    return {spec: _save(spec, root / spec) for spec in ("avgpool2_4", "qformer2_4")}


@pytest.fixture(scope="module")
def deco(model_dirs):
    return load_explorer(model_dirs["avgpool2_4"], device="cpu", max_new_tokens=6)


@pytest.fixture(scope="module")
def qformer(model_dirs):
    return load_explorer(model_dirs["qformer2_4"], device="cpu", max_new_tokens=6)


@pytest.fixture
def picture():
    # left half red, right half blue, non-square: exercises the model-view geometry
    arr = np.zeros((30, 48, 3), np.uint8)
    arr[:, :24] = (220, 30, 30)
    arr[:, 24:] = (30, 30, 220)
    return Image.fromarray(arr)


def _run(explorer, image, question, out_root):
    return list(app.ask(explorer, image, question, out_root))


def test_ask_streams_a_growing_answer_then_words(deco, picture, tmp_path):
    steps = _run(deco, picture, "what colour", tmp_path)
    final = steps[-1]
    assert not final.get("error"), final["status"]
    streamed = [s["answer"] for s in steps if s.get("status") == "Generating…" and s.get("answer")]
    assert streamed, "no streamed text before the answer was complete"
    for a, b in zip(streamed, streamed[1:]):
        assert b.startswith(a)  # each yield extends the previous one
    result = final["result"]
    exp = result.explanation
    assert final["answer"] == exp.answer and exp.answer.strip()
    # the streamed text is the answer that was explained
    assert streamed[-1].split() == exp.answer.split()[: len(streamed[-1].split())]
    # every word is one clickable span; gaps are not words
    words = [text for text, cat in final["words"] if cat == render.WORD]
    assert words == exp.word_texts
    assert "".join(text for text, _ in final["words"]) == exp.answer
    assert [result.owner[i] for i, (_, c) in enumerate(final["words"]) if c] == list(
        range(len(words))
    )
    # maps.npz and summary.json are written for download
    npz = np.load(result.out_dir / "maps.npz")
    assert npz["text_to_patch"].shape == (len(exp.token_ids), 4, 4)
    assert json.loads((result.out_dir / "summary.json").read_text())["answer"] == exp.answer


def test_answer_matches_plain_greedy_generation(deco, picture, tmp_path):
    final = _run(deco, picture, "what colour", tmp_path)[-1]
    prompt = deco.format_prompt("what colour")
    batch = deco.processor(text=[prompt], images=[picture], return_tensors="pt")
    out = deco.model.generate(**batch, max_new_tokens=6, do_sample=False)[0].tolist()
    new = out[batch["input_ids"].shape[1] :]
    eos = deco.model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    expected = new[: next((i for i, t in enumerate(new) if t in eos), len(new))]
    assert expected and final["result"].explanation.token_ids == expected


def test_closing_the_page_mid_answer_frees_the_model(deco, picture, tmp_path):
    import threading

    steps = app.ask(deco, picture, "what colour", tmp_path)
    assert next(steps)["status"] == "Generating…"
    next(steps)  # the first streamed piece: generation is running in its thread
    steps.close()  # what Gradio does when the user leaves
    assert not deco.lock.locked()
    assert not [t for t in threading.enumerate() if t.name.startswith("generate-")]


def test_old_result_folders_are_pruned(tmp_path):
    for i in range(5):
        (tmp_path / f"old{i}").mkdir()
    handlers._prune(tmp_path, keep=3)
    assert len(list(tmp_path.iterdir())) == 3


def test_select_word_map_gallery_and_files(deco, picture, tmp_path):
    final = _run(deco, picture, "what colour", tmp_path)[-1]
    result, spans = final["result"], final["words"]
    exp = result.explanation
    span = max(i for i, (_, c) in enumerate(spans) if c)  # the last word
    word = result.owner[span]
    out = app.select_word(result, span)
    assert out["word"] == exp.words[word].text
    assert [c for _, c in out["words"]].count(render.SELECTED) == 1
    # the overlay is the word's map: rendering it again from the explanation gives the same pixels
    assert out["map"].size == (render.DISPLAY_SIZE, render.DISPLAY_SIZE)
    expected = render.overlay_image(result.view, exp.word_text_to_patch[word])
    assert np.array_equal(np.asarray(out["map"]), np.asarray(expected))
    # gallery: the visual tokens the word uses most, in decreasing Text-to-Query order
    assert len(out["gallery"]) == min(render.GALLERY_QUERIES, exp.text_to_query.shape[1])
    t2q = exp.word_text_to_query[word]
    shown = [int(c.split(":")[0][1:]) for _, c in out["gallery"]]
    assert shown == t2q.argsort(descending=True)[: len(shown)].tolist()
    assert all(c.endswith("%") for _, c in out["gallery"])
    names = sorted(p.split("/")[-1] for p in out["files"])
    assert any(n.startswith("text_to_patch_") and n.endswith(".png") for n in names)
    assert any(n.startswith("word_") for n in names) and "maps.npz" in names
    for path in out["files"]:
        if path.endswith(".png"):
            with Image.open(path) as img:
                assert img.size[0] > 0
    # a click on a gap or before any answer gives a message, not an exception
    gaps = [i for i, (_, c) in enumerate(spans) if c is None]
    if gaps:
        assert "not a word" in app.select_word(result, gaps[0])["status"]
    assert app.select_word(None, 0)["error"]


def test_overlay_is_hot_where_the_map_is_high():
    grid = np.zeros((4, 4), np.float32)
    grid[:, :2] = 1.0  # left half relevant
    img = np.asarray(
        render.overlay_image(Image.new("RGB", (32, 32), (128, 128, 128)), grid)
    ).astype(int)
    assert img.shape == (render.DISPLAY_SIZE, render.DISPLAY_SIZE, 3)
    left, right = img[:, :150], img[:, -150:]
    # viridis: high = yellow (red channel up), low = dark violet (more blue), over a grey picture
    assert left[..., 0].mean() > right[..., 0].mean()
    assert right[..., 2].mean() > left[..., 2].mean()
    # on a shared scale twice as high the same map is paler (less relevance, not re-stretched)
    half = np.asarray(
        render.overlay_image(Image.new("RGB", (32, 32), (128, 128, 128)), grid, vmax=2.0)
    ).astype(int)
    assert half[:, :150, 0].mean() < left[..., 0].mean()


def test_compare_click_shows_the_word_in_both_columns_on_one_scale(
    deco, qformer, picture, tmp_path
):
    ra = _run(deco, picture, "what colour", tmp_path)[-1]["result"]
    rb = _run(qformer, picture, "what colour", tmp_path)[-1]["result"]
    word = ra.explanation.words[0].text
    outs = app.select_compare([ra, rb], 0, ra.owner.index(0))
    assert len(outs) == 2 and outs[0]["word"] == word
    maps = [ra.explanation.word_map(0).numpy()]
    if word.lower() in [w.lower() for w in rb.explanation.word_texts]:
        other = rb.explanation.word_index(word)
        assert outs[1]["word"] == rb.explanation.words[other].text
        maps += render.shown_maps(rb.explanation, other)  # the Q-Former: GAE and attention
        assert len(maps) == 3
        # every overlay is drawn on the one scale of the largest map
        top = render.shared_scale(maps)
        expected = render.word_overlay(rb.explanation, other, rb.view, vmax=top)
        assert np.array_equal(np.asarray(outs[1]["map"]), np.asarray(expected))
        assert "shared scale" in outs[1]["label"] and "gae | attention" in outs[1]["label"]
        assert "mass" in outs[1]["stats"] and "effective patches" in outs[1]["stats"]
    else:
        assert "not a word of this model's answer" in outs[1]["status"]
    assert "peak" in outs[0]["stats"]
    # a word that only one answer has: the other column says so and keeps its picture
    rb.explanation.words[0] = type(rb.explanation.words[0])("zzz", 0, 1)
    rb.owner = render.word_spans(rb.explanation.answer, rb.explanation.words)[1]
    out = app.select_compare([ra, rb], 1, rb.owner.index(0))
    assert "not a word of this model's answer" in out[0]["status"] and "map" not in out[0]
    # no answer yet in one column, a gap click, a bad column
    assert app.select_compare([None, rb], 0, 0)[0]["error"]
    assert "map" in app.select_compare([None, rb], 1, rb.owner.index(0))[1]
    with pytest.raises(ValueError, match="column 2"):
        app.select_compare([ra, rb], 2, 0)


def test_unreliable_map_is_drawn_grey_and_striped_with_its_reason(deco, picture, tmp_path):
    result = _run(deco, picture, "what colour", tmp_path)[-1]["result"]
    exp = result.explanation
    assert "not evidence" not in render.map_numbers(exp, 0)
    plain = np.asarray(render.word_overlay(exp, 0, result.view)).astype(int)
    exp.vanish_tol = 10.0  # every mass (1 for pooling) is now below the optional tolerance
    assert exp.unreliable[0] and exp.vanished[0]
    numbers = render.map_numbers(exp, 0)
    assert "not evidence" in numbers and "--vanish-tol 10" in numbers
    flagged = np.asarray(render.word_overlay(exp, 0, result.view)).astype(int)
    # the flagged picture has no colour at all (R = G = B everywhere), the plain one has
    assert np.array_equal(flagged[..., 0], flagged[..., 1])
    assert np.array_equal(flagged[..., 1], flagged[..., 2])
    assert np.abs(plain[..., 0] - plain[..., 2]).max() > 30
    # the click's view says so in the label and the numbers
    out = app.select_word(result, result.owner.index(0))
    assert "NOT EVIDENCE" in out["label"] and "not evidence" in out["stats"]
    assert np.array_equal(np.asarray(out["map"]), flagged.astype(np.uint8))


def test_qformer_word_shows_gae_and_attention_side_by_side(qformer, picture, tmp_path):
    result = _run(qformer, picture, "what colour", tmp_path)[-1]["result"]
    exp = result.explanation
    assert render.shown_methods(exp) == ["gae", "attention"]
    sheet = render.word_overlay(exp, 0, result.view)
    single = render.overlay_image(result.view, exp.word_map(0))
    assert sheet.width > 2 * single.width and sheet.height > single.height
    numbers = render.map_numbers(exp, 0)
    assert "**gae**" in numbers and "**attention**" in numbers and "kept share" in numbers


def test_compare_two_models_side_by_side(deco, qformer, picture, tmp_path):
    a = _run(deco, picture, "what colour", tmp_path)[-1]["result"].explanation
    b = _run(qformer, picture, "what colour", tmp_path)[-1]["result"].explanation
    assert a.method == "fixed" and b.method == "gae"  # pooling windows vs the Q-Former's GAE
    assert b.per_token_mapping and b.word_query_to_patch is not None
    result = _run(qformer, picture, "what colour", tmp_path)[-1]
    out = app.select_word(result["result"], result["result"].owner.index(0))
    assert "gae" in out["gallery_label"] and "4 of 4 visual tokens" in out["status"]
    demo = app.build_app([deco, qformer], out_root=tmp_path)
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    assert {"answer-0", "answer-1", "words-0", "words-1", "map-0", "map-1"} <= ids
    titles = [
        b.value for b in demo.blocks.values() if getattr(b, "elem_id", "") in ("title-0", "title-1")
    ]
    assert any("avgpool2_4" in t for t in titles) and any("qformer2_4" in t for t in titles)
    with pytest.raises(ValueError, match="one or two models"):
        app.build_app([deco, qformer, deco])


def test_bad_uploads_give_a_message(tmp_path, picture):
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    image, message = app.on_upload(str(text))
    assert image is None and message.startswith("⚠️") and "notes.png" in message
    assert str(tmp_path) not in message  # the server's paths stay out of the page
    good = tmp_path / "ok.png"
    picture.save(good)
    broken = tmp_path / "broken.png"
    broken.write_bytes(good.read_bytes()[:60])  # a truncated PNG
    image, message = app.on_upload(str(broken))
    assert image is None and "broken.png" in message
    image, message = app.on_upload(str(good))
    assert image.size == (48, 30) and not message.startswith("⚠️")
    assert app.on_upload(None) == (None, "")


def test_ask_without_image_or_question_gives_a_message(deco, picture, tmp_path):
    out = _run(deco, None, "what colour", tmp_path)
    assert len(out) == 1 and out[0]["error"] and "image" in out[0]["status"]
    out = _run(deco, picture, "   ", tmp_path)
    assert out[0]["error"] and "question" in out[0]["status"]


def test_model_failure_is_a_message_not_a_trace(model_dirs, picture, tmp_path):
    broken = load_explorer(model_dirs["avgpool2_4"], device="cpu", max_new_tokens=2)

    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    broken.explain = explode
    final = _run(broken, picture, "what colour", tmp_path)[-1]
    assert final["error"] and "RuntimeError: boom" in final["status"]
    assert not broken.lock.locked()


def test_prompt_templates(deco):
    assert deco.format_prompt("what colour").endswith("USER: <image>\nwhat colour ASSISTANT:")
    plain = Explorer("m", deco.model, deco.processor, template="plain")
    # plain (align stage) keeps the image and drops the question, as in its training data
    assert plain.format_prompt("a <image> b") == "<image>"
    vicuna = Explorer("m", deco.model, deco.processor, template="vicuna_v1")
    # a typed tag is no second image
    assert vicuna.format_prompt("a <image> b").endswith("USER: <image>\na  b ASSISTANT:")
    chat = Explorer("m", deco.model, deco.processor, template="tokenizer")
    assert chat.format_prompt("what colour").startswith("USER: <image>")
    with pytest.raises(ValueError, match="template"):
        Explorer("m", deco.model, deco.processor, template="nope")


def test_examples_from_a_world_folder(tmp_path, picture):
    world = tmp_path / "world"
    (world / "images").mkdir(parents=True)
    (world / "eval").mkdir()
    for name in ("eval_000000", "eval_000001", "train_000000"):
        picture.save(world / "images" / f"{name}.png")
    records = [
        {
            "question_id": "q0",
            "image": "images/eval_000000.png",
            "text": "How many objects?",
            "category": "count",
        },
        {
            "question_id": "q1",
            "image": "images/eval_000000.png",
            "text": "What colour is the circle?\nAnswer briefly.",
            "category": "vqa",
        },
        {"question_id": "q2", "image": "images/missing.png", "text": "Gone?", "category": "vqa"},
    ]
    lines = [json.dumps(r) for r in records] + ["{not json"]
    (world / "eval" / "questions.jsonl").write_text("\n".join(lines) + "\n")
    # found through the model folder's world/ sub-folder too
    examples = find_examples([tmp_path])
    assert [e.image.name for e in examples] == [
        "eval_000000.png",
        "eval_000001.png",
        "train_000000.png",
    ]
    assert examples[0].question == "What colour is the circle?\nAnswer briefly."  # vqa preferred
    assert examples[0].label == "eval_000000: What colour is the circle?"
    image, question, message = app.on_example(examples[0].label, examples)
    assert image.size == (48, 30) and question == examples[0].question and "loaded" in message
    assert find_examples([tmp_path / "nothing"]) == []
    assert len(find_examples([world], limit=2)) == 2


def test_cli_defaults_and_errors(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--model", str(tmp_path / "missing")])
    assert (args.host, args.port, args.max_file_size) == ("127.0.0.1", 7860, "10mb")
    from decovlm.cli import main

    assert main(["serve", "--model", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "is not a folder with a saved decovlm model" in err and len(err.splitlines()) == 1
    assert main(["serve", "--model", str(tmp_path), "--port", "0"]) == 2
    assert "--port" in capsys.readouterr().err


class _SlowExplorer(Explorer):
    """Blocks inside generation until released, to show the page stays responsive meanwhile."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        import threading

        self.started, self.release = threading.Event(), threading.Event()

    def stream_answer(self, image, prompt):
        self.started.set()
        assert self.release.wait(timeout=120), "never released"
        yield from super().stream_answer(image, prompt)


def test_server_defaults_and_a_slow_request_does_not_block(deco, picture, tmp_path):
    import socket

    from gradio_client import Client, handle_file

    slow = _SlowExplorer("slow", deco.model, deco.processor, max_new_tokens=3)
    demo = app.build_app([slow], out_root=tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.launch(demo, port=port, max_file_size="1mb", prevent_thread_lock=True, quiet=True)
    try:
        assert demo.server_name == "127.0.0.1" and demo.max_file_size == 1024 * 1024
        assert demo._queue.default_concurrency_limit == 2
        path = tmp_path / "picture.png"
        picture.save(path)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        client.predict(handle_file(str(path)), api_name="/upload")
        job = client.submit("what colour", api_name="/ask_0")
        assert slow.started.wait(timeout=60)
        # while the model is busy, the page still answers (an upload here; a bad one at that)
        bad = tmp_path / "bad.png"
        bad.write_text("not an image")
        _, message = client.predict(handle_file(str(bad)), api_name="/upload")  # (preview, status)
        assert "not an image" in message
        assert not job.done()
        slow.release.set()
        answer, *_, status = job.result(timeout=120)
        assert answer.strip() and "Click a word" in status
    finally:
        slow.release.set()
        demo.close()
