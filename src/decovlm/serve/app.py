"""The relevance explorer page (Gradio): upload or pick an image, ask, click a word of the answer.

Layout (LLaVA's demo convention): the image and question on the left; one panel per model on the
right (two side by side with `--compare`). A panel streams the answer, then lists its words;
clicking a word shows its Text-to-Patch map over the image, the Query-to-Patch maps of the visual
tokens it relies on most (the gallery shows what a Q-Former query mixes together; for DeCo's
pooling it shows the windows), and offers the PNGs and every map as .npz for download.

The handlers (`on_upload`, `on_example`, `ask`, `select_word`) are plain functions of plain values
so they are unit-tested without a browser; `build_app` only wires them to components. Every
handler turns bad input into a message in the page (and a toast), never a stack trace.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from PIL import Image

from decovlm.serve import render
from decovlm.serve.engine import Explorer
from decovlm.serve.examples import Example

log = logging.getLogger(__name__)

PANEL_KEYS = ("answer", "words", "map", "gallery", "files", "result", "status")
SELECT_KEYS = ("words", "map", "gallery", "files", "status")
KEEP_RESULTS = (
    200  # answers whose download folders are kept (a long-running server must not fill the disk)
)
HINT = "Click a word of the answer to see its Text-to-Patch map."
INTRO = """### DeCo relevance explorer
Upload an image (or pick an example), ask a question and **click any word of the answer**.
*Text-to-Patch* shows which image patches the word relies on (R-GAE through the LLM and the
projector); *Query-to-Patch* shows, for the visual tokens the word uses most, which patches each
token was made from."""
CSS = """
#words-0 .token, #words-1 .token { cursor: pointer; }
.decovlm-gallery .grid-container { padding-top: 2.2rem !important; }
.decovlm-status p { margin: 0.2em 0; }
"""


@dataclass
class Result:
    """One answered question: its explanation and where its downloads go (kept in gr.State)."""

    explanation: object
    view: Image.Image  # the image as the model saw it
    owner: list  # HighlightedText span index -> word index (None for the gaps)
    out_dir: Path
    files: list[Path] = field(default_factory=list)  # maps.npz, summary.json


def _prune(out_root: Path, keep: int = KEEP_RESULTS) -> None:
    """Delete the oldest result folders beyond `keep` (their files were already served)."""
    folders = [p for p in out_root.iterdir() if p.is_dir()]
    if len(folders) <= keep:
        return
    folders.sort(key=lambda p: p.stat().st_mtime)
    for old in folders[: len(folders) - keep]:
        shutil.rmtree(old, ignore_errors=True)


def _error(message: str) -> str:
    return f"⚠️ {message}"


def on_upload(path: str | None) -> tuple[Image.Image | None, str]:
    """Check an uploaded file: (the image, '') or (None, a message for the page)."""
    if not path:
        return None, ""
    try:
        image = render.open_image(path)
    except ValueError as err:
        return None, _error(str(err))
    return image, f"Image loaded ({image.width}×{image.height})."


def on_example(
    label: str | None, examples: list[Example]
) -> tuple[Image.Image | None, str | None, str]:
    """(image, question, status) of the example with this label."""
    for ex in examples:
        if ex.label == label:
            try:
                return render.open_image(ex.image), ex.question, f"Example {ex.image.name} loaded."
            except ValueError as err:
                return None, None, _error(str(err))
    return None, None, ""


def ask(
    explorer: Explorer, image: Image.Image | None, question: str, out_root: str | Path
) -> Iterator[dict]:
    """Stream one model's answer, then explain it. Yields dicts with some of PANEL_KEYS.

    A missing key leaves that output as it is; None clears it. A message for the page is in
    "status" (starting with ⚠️ on error, and then "error" is True).
    """
    if image is None:
        yield dict(status=_error("Upload an image or pick an example first."), error=True)
        return
    try:
        prompt = explorer.format_prompt(question)
    except ValueError as err:
        yield dict(status=_error(str(err)), error=True)
        return
    answer = ""
    if explorer.lock.locked():
        yield dict(answer="", status="Waiting for the model (another request is running)…")
    try:
        with explorer.lock:
            # a new question: clear the previous answer's words, map, gallery and files
            yield dict(
                answer="",
                words=None,
                map=None,
                gallery=None,
                files=None,
                result=None,
                status="Generating…",
            )
            ids: list[int] = []
            for item in explorer.stream_answer(image, prompt):
                if isinstance(item, str):
                    answer = item
                    yield dict(answer=answer, status="Generating…")
                else:
                    ids = item
            if not ids:
                yield dict(
                    answer=answer, status=_error("The model gave an empty answer."), error=True
                )
                return
            yield dict(answer=answer, status="Computing relevance maps…")
            explanation = explorer.explain(image, prompt, ids)
        out_dir = Path(out_root) / uuid.uuid4().hex[:12]
        files = render.write_maps(explanation, out_dir)
        _prune(Path(out_root))
    except (ValueError, FileNotFoundError) as err:
        yield dict(answer=answer, status=_error(str(err)), error=True)
        return
    except Exception as err:  # a model failure: a short message in the page, the trace in the log
        log.exception("serve: %s failed on a request", explorer.name)
        yield dict(
            answer=answer,
            status=_error(f"The model failed: {type(err).__name__}: {err}"),
            error=True,
        )
        return
    spans, owner = render.word_spans(explanation.answer, explanation.words)
    result = Result(explanation, explorer.model_view(image), owner, out_dir, files)
    n = len(explanation.words)
    status = f"{n} word{'s' * (n != 1)}; Query-to-Patch: {explanation.method}. {HINT if n else ''}"
    yield dict(
        answer=explanation.answer,
        words=spans,
        files=[str(p) for p in files],
        result=result,
        status=status,
    )


def select_word(result: Result | None, span_index: int | None) -> dict:
    """The clicked word's map, gallery and files. Returns a dict keyed by SELECT_KEYS (+ "label")."""
    if result is None:
        return {"status": _error("Ask a question first."), "error": True}
    owner = result.owner
    if span_index is None or not 0 <= span_index < len(owner) or owner[span_index] is None:
        return {"status": "That is not a word; click a highlighted word."}
    index = owner[span_index]
    exp = result.explanation
    try:
        overlay = render.overlay_image(result.view, exp.word_map(index))
        gallery = render.query_gallery(exp, index, result.view)
        word_files = render.write_word_files(exp, index, result.view, overlay, result.out_dir)
    except Exception as err:
        log.exception("serve: drawing the maps of word %s failed", index)
        return {
            "status": _error(f"Could not draw the maps: {type(err).__name__}: {err}"),
            "error": True,
        }
    word = exp.words[index].text
    spans, _ = render.word_spans(exp.answer, exp.words, selected=index)
    return {
        "words": spans,
        "map": overlay,
        "label": f"Text-to-Patch of '{word}'",
        "gallery": gallery,
        "gallery_label": render.gallery_label(exp, index),
        "files": [str(p) for p in [*word_files, *result.files]],
        "status": f"Showing '{word}' (word {index + 1} of {len(exp.words)}). Query-to-Patch: the "
        f"{len(gallery)} of {exp.text_to_query.shape[1]} visual tokens it relies on most, with their "
        "share of its Text-to-Query relevance.",
        "word": word,
    }


# -- Gradio wiring --------------------------------------------------------------------------------
def _warn(status: str | None) -> None:
    import gradio as gr

    if status and status.startswith("⚠️"):
        gr.Warning(status.removeprefix("⚠️ "))


def _gr_outputs(out: dict, keys: tuple[str, ...]) -> tuple:
    import gradio as gr

    if out.get("error"):
        _warn(out.get("status"))
    values = []
    for key in keys:
        if key not in out:
            values.append(gr.skip())
        elif key == "gallery":
            label = out.get("gallery_label", "Query-to-Patch")
            values.append(gr.update(value=out[key], label=label))
        elif key == "map":
            values.append(gr.update(value=out[key], label=out.get("label", "Text-to-Patch")))
        else:
            values.append(out[key])
    return tuple(values)


def _gr_upload(path):
    image, message = on_upload(path)
    _warn(message)
    return image, image, message


def _gr_example(examples, label):
    import gradio as gr

    image, question, message = on_example(label, examples)
    _warn(message)
    return image, image, gr.skip() if question is None else question, message


def _gr_ask(explorer: Explorer, out_root: Path, image, question):
    for out in ask(explorer, image, question, out_root):
        yield _gr_outputs(out, PANEL_KEYS)


def _gr_select(result, evt):
    return _gr_outputs(select_word(result, getattr(evt, "index", None)), SELECT_KEYS)


def build_app(
    explorers: list[Explorer],
    examples: list[Example] | None = None,
    out_root: str | Path | None = None,
):
    """The gr.Blocks page for one model, or two side by side."""
    import gradio as gr

    if not 1 <= len(explorers) <= 2:
        raise ValueError(f"the explorer shows one or two models, got {len(explorers)}")
    examples = list(examples or [])
    if out_root is None:
        out_root = Path(tempfile.mkdtemp(prefix="decovlm-serve-"))
        atexit.register(shutil.rmtree, out_root, ignore_errors=True)
    out_root = Path(out_root)

    def select_fn(result, evt):
        return _gr_select(result, evt)

    # Gradio injects the click (index of the span) into a parameter annotated with SelectData.
    select_fn.__annotations__ = {"evt": gr.SelectData}

    with gr.Blocks(
        title="DeCo relevance explorer", analytics_enabled=False, delete_cache=(3600, 7200)
    ) as demo:
        image_state = gr.State(None)
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                upload = gr.File(
                    label="Upload an image",
                    file_types=list(render.IMAGE_SUFFIXES),
                    type="filepath",
                    elem_id="upload",
                    height=120,
                )
                preview = gr.Image(
                    label="Image", type="pil", interactive=False, elem_id="preview", height=260
                )
                example_box = gr.Dropdown(
                    choices=[ex.label for ex in examples],
                    value=None,
                    label="Synthetic-world examples",
                    visible=bool(examples),
                    elem_id="examples",
                )
                question = gr.Textbox(
                    label="Question",
                    lines=2,
                    placeholder="What colour is the circle?",
                    elem_id="question",
                )
                ask_button = gr.Button("Ask", variant="primary", elem_id="ask")
                status = gr.Markdown("", elem_id="status", elem_classes=["decovlm-status"])
            with gr.Column(scale=2 * len(explorers)), gr.Row():
                panels = []
                for i, explorer in enumerate(explorers):
                    with gr.Column(min_width=320):
                        gr.Markdown(f"#### {explorer.title}", elem_id=f"title-{i}")
                        answer = gr.Textbox(
                            label="Answer", interactive=False, elem_id=f"answer-{i}"
                        )
                        words = gr.HighlightedText(
                            label="Words (click one)",
                            color_map={render.WORD: "#bfdbfe", render.SELECTED: "#fb923c"},
                            show_legend=False,
                            show_inline_category=False,
                            combine_adjacent=False,
                            elem_id=f"words-{i}",
                        )
                        panel_status = gr.Markdown(
                            "", elem_id=f"status-{i}", elem_classes=["decovlm-status"]
                        )
                        relevance = gr.Image(
                            label="Text-to-Patch",
                            type="pil",
                            interactive=False,
                            elem_id=f"map-{i}",
                            height=320,
                        )
                        gallery = gr.Gallery(
                            label="Query-to-Patch",
                            columns=3,
                            height=360,
                            object_fit="contain",
                            elem_classes=["decovlm-gallery"],
                            elem_id=f"gallery-{i}",
                        )
                        files = gr.File(
                            label="Downloads (PNG, npz)",
                            file_count="multiple",
                            interactive=False,
                            elem_id=f"files-{i}",
                        )
                        result = gr.State(None)
                    panels.append(
                        (explorer, answer, words, relevance, gallery, files, result, panel_status)
                    )

        upload.upload(
            _gr_upload, inputs=upload, outputs=[image_state, preview, status], api_name="upload"
        )
        upload.clear(
            lambda: (None, None, ""), outputs=[image_state, preview, status], api_name="clear"
        )
        example_box.input(
            partial(_gr_example, examples),
            inputs=example_box,
            outputs=[image_state, preview, question, status],
            api_name="example",
        )
        for i, (
            explorer,
            answer,
            words,
            relevance,
            gallery,
            files,
            result,
            panel_status,
        ) in enumerate(panels):
            gr.on(
                triggers=[ask_button.click, question.submit],
                fn=partial(_gr_ask, explorer, out_root),
                inputs=[image_state, question],
                outputs=[answer, words, relevance, gallery, files, result, panel_status],
                concurrency_id=f"model-{i}",
                api_name=f"ask_{i}",
                show_progress="minimal",
            )
            words.select(
                select_fn,
                inputs=result,
                outputs=[words, relevance, gallery, files, panel_status],
                api_name=f"select_{i}",
            )
    return demo


def launch(
    demo,
    host: str = "127.0.0.1",
    port: int = 7860,
    max_file_size: str | int = "10mb",
    concurrency: int = 2,
    queue_size: int = 32,
    **kwargs,
):
    """Queue (so a slow request never blocks the page) and start the server; returns Gradio's tuple."""
    import gradio as gr

    demo.queue(default_concurrency_limit=concurrency, max_size=queue_size)
    # System fonts: the page must not fetch Google fonts (offline machines, privacy).
    theme = gr.themes.Soft(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )
    return demo.launch(
        server_name=host,
        server_port=port,
        max_file_size=max_file_size,
        share=False,
        ssr_mode=False,
        show_error=False,
        theme=theme,
        css=CSS,
        footer_links=[],
        **kwargs,
    )
