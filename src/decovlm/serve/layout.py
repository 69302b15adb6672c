"""The relevance explorer page (Gradio): the layout and its wiring to `decovlm.serve.handlers`.

Layout (LLaVA's demo convention): the image and question on the left; one panel per model on the
right (two side by side with `--compare`). A panel streams the answer, then lists its words;
clicking a word shows its Text-to-Patch map over the image - in every panel at once, on one
shared colour scale, with each panel's numbers (peak, concentration, Query-to-Patch mass, kept
share and, for a map that is not evidence, why) under its map; a Q-Former / resampler shows GAE and
the attention rollout side by side - the Query-to-Patch maps of the visual tokens it relies on most (the
gallery shows what a Q-Former query mixes together; for DeCo's pooling it shows the windows), and
offers the PNGs and every map as .npz for download.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import partial
from pathlib import Path

from decovlm.serve import render
from decovlm.serve.engine import Explorer
from decovlm.serve.examples import Example
from decovlm.serve.handlers import PANEL_KEYS, SELECT_KEYS, ask, select_compare

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
    from decovlm.serve.uploads import on_upload

    image, message = on_upload(path)
    _warn(message)
    return image, image, message


def _gr_example(examples, label):
    import gradio as gr

    from decovlm.serve.uploads import on_example

    image, question, message = on_example(label, examples)
    _warn(message)
    return image, image, gr.skip() if question is None else question, message


def _gr_ask(explorer: Explorer, out_root: Path, image, question):
    for out in ask(explorer, image, question, out_root):
        yield _gr_outputs(out, PANEL_KEYS)


def _gr_select(source: int, evt, *results):
    """One click in column `source`: outputs for every column (SELECT_KEYS each, in order)."""
    outs = select_compare(list(results), source, getattr(evt, "index", None))
    return tuple(v for out in outs for v in _gr_outputs(out, SELECT_KEYS))


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

    def select_fn_for(source: int):
        def select_fn(evt, *results):
            return _gr_select(source, evt, *results)

        # Gradio injects the click (index of the span) into a parameter annotated with SelectData.
        select_fn.__annotations__ = {"evt": gr.SelectData}
        return select_fn

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
                        stats = gr.Markdown(
                            "", elem_id=f"stats-{i}", elem_classes=["decovlm-status"]
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
                        (explorer, answer, words, relevance, gallery, files, result, panel_status,
                         stats)
                    )  # fmt: skip

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
        results = [panel[6] for panel in panels]
        # A click in any column updates every column (the same word, one shared scale).
        select_outputs = [
            c for p in panels for c in (p[2], p[3], p[4], p[5], p[8], p[7])
        ]  # words, map, gallery, files, stats, status: SELECT_KEYS
        for i, (explorer, answer, words, relevance, gallery, files, result, panel_status, stats) in (
            enumerate(panels)
        ):  # fmt: skip
            gr.on(
                triggers=[ask_button.click, question.submit],
                fn=partial(_gr_ask, explorer, out_root),
                inputs=[image_state, question],
                outputs=[answer, words, relevance, gallery, files, result, stats, panel_status],
                concurrency_id=f"model-{i}",
                api_name=f"ask_{i}",
                show_progress="minimal",
            )
            words.select(
                select_fn_for(i),
                inputs=results,
                outputs=select_outputs,
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
