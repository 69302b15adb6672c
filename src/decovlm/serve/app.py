"""The relevance explorer (Gradio): image loading here, the rest in two modules.

- `decovlm.serve.handlers`: answering (`ask`) and clicked words (`select_word`, and
  `select_compare`, which shows a word in every column on one shared scale);
- `decovlm.serve.layout`: the page (`build_app`) and the server (`launch`).

Everything is re-exported here, so `decovlm.serve.app.build_app` etc. keep working. The upload
handlers stay in this module: they are where the image-loading rules live.
"""

from __future__ import annotations

from PIL import Image

from decovlm.serve import render
from decovlm.serve.examples import Example
from decovlm.serve.handlers import (  # noqa: F401  (re-exported)
    HINT,
    KEEP_RESULTS,
    PANEL_KEYS,
    SELECT_KEYS,
    Result,
    _error,
    _prune,
    ask,
    select_compare,
    select_word,
)


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


def build_app(*args, **kwargs):
    """The gr.Blocks page for one model, or two side by side (see `decovlm.serve.layout`)."""
    from decovlm.serve.layout import build_app as build

    return build(*args, **kwargs)


def launch(*args, **kwargs):
    """Queue and start the server (see `decovlm.serve.layout.launch`)."""
    from decovlm.serve.layout import launch as start

    return start(*args, **kwargs)
