"""The relevance explorer (Gradio), in three modules re-exported here:

- `decovlm.serve.handlers`: answering (`ask`) and clicked words (`select_word`, and
  `select_compare`, which shows a word in every column on one shared scale);
- `decovlm.serve.uploads`: the image inputs (`on_upload`, `on_example`), where the image-loading
  rules live;
- `decovlm.serve.layout`: the page (`build_app`) and the server (`launch`), loaded on first use
  (it imports Gradio).
"""

from __future__ import annotations

from decovlm.serve.handlers import (
    HINT,
    KEEP_RESULTS,
    PANEL_KEYS,
    SELECT_KEYS,
    Result,
    ask,
    select_compare,
    select_word,
)
from decovlm.serve.uploads import on_example, on_upload

__all__ = [
    "HINT",
    "KEEP_RESULTS",
    "PANEL_KEYS",
    "SELECT_KEYS",
    "Result",
    "ask",
    "build_app",
    "launch",
    "on_example",
    "on_upload",
    "select_compare",
    "select_word",
]


def build_app(*args, **kwargs):
    """The gr.Blocks page for one model, or two side by side (see `decovlm.serve.layout`)."""
    from decovlm.serve.layout import build_app as build

    return build(*args, **kwargs)


def launch(*args, **kwargs):
    """Queue and start the server (see `decovlm.serve.layout.launch`)."""
    from decovlm.serve.layout import launch as start

    return start(*args, **kwargs)
