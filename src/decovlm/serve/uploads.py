"""The explorer's image inputs: an uploaded file or a chosen example, checked by the image-loading
rules (`decovlm.serve.render.open_image`: pixel limit, unreadable files) into an image or a message.

Plain functions (no Gradio), used by the page (`decovlm.serve.layout`) and re-exported by
`decovlm.serve.app`.
"""

from __future__ import annotations

from PIL import Image

from decovlm.serve import render
from decovlm.serve.examples import Example
from decovlm.serve.handlers import _error


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
