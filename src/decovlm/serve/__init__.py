"""The interactive relevance explorer (`decovlm serve`): a Gradio page to ask a model about an
image and click the words of its answer to see their Text-to-Patch and Query-to-Patch maps.

    from decovlm.serve import build_app, launch, load_explorer
    demo = build_app([load_explorer("runs/deco"), load_explorer("runs/qformer")])
    launch(demo, host="127.0.0.1", port=7860)

Gradio is imported only when the page is built, so importing this package stays cheap.
"""

from decovlm.serve.app import ask, build_app, launch, on_upload, select_word
from decovlm.serve.engine import Explorer, load_explorer
from decovlm.serve.examples import Example, find_examples

__all__ = [
    "Example",
    "Explorer",
    "ask",
    "build_app",
    "find_examples",
    "launch",
    "load_explorer",
    "on_upload",
    "select_word",
]
