"""The model card (README.md) every saved decovlm model gets: what it is, how it was made, how to load it.

`write_model_card(folder, ...)` reads what was saved in the folder (config.json, processor_config.json,
chat_template.jinja), so the card describes the files next to it, and adds what only the writer
knows: backbone names, stages, data, hyper-parameters and the metrics the run recorded. Training
(`train.runner`), `convert-llava` and the demo (through training) all call it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from decovlm.chat_template import template_name
from decovlm.utils.io import atomic_write_text

CARD_NAME = "README.md"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _backbone(config: dict, name: str | None) -> str:
    kind = config.get("model_type", "?")
    size = config.get("hidden_size", "?")
    layers = config.get("num_hidden_layers", "?")
    what = f"{kind}, hidden {size}, {layers} layers"
    if "image_size" in config:
        what += f", {config['image_size']} px / patch {config.get('patch_size', '?')}"
    return f"`{name}` ({what})" if name else what


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return f"`{v}`" if isinstance(v, str | int | bool) or v is None else f"`{json.dumps(v)}`"


def _table(rows: dict[str, Any]) -> list[str]:
    lines = ["| | |", "|---|---|"]
    lines += [f"| {k} | {_value(v)} |" for k, v in rows.items()]
    return lines


def model_card(
    folder: str | os.PathLike,
    title: str | None = None,
    vision: str | None = None,
    llm: str | None = None,
    stages: list[str] | None = None,
    data: dict[str, Any] | None = None,
    hyperparameters: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    notes: str | None = None,
) -> str:
    """The card's Markdown for the model saved in `folder`."""
    folder = Path(folder)
    config = _read_json(folder / "config.json")
    proc = _read_json(folder / "processor_config.json")
    template_path = folder / "chat_template.jinja"
    template = template_path.read_text(encoding="utf-8") if template_path.is_file() else None

    name = proc.get("chat_template_name") or (template_name(template) if template else "none saved")
    projector = config.get("projector", "?")
    lines = [
        "---",
        "library_name: decovlm",
        "pipeline_tag: image-text-to-text",
        "tags: [decovlm, deco, multimodal]",
        "---",
        "",
        f"# {title or folder.resolve().name}",
        "",
        "A decovlm model: a vision tower, a projector that compresses its "
        "patches into visual tokens, and a language model (DeCo).",
        "",
        "## Model",
        "",
        *_table(
            {
                "projector": projector,
                "projector arguments": config.get("projector_kwargs") or {},
                "visual tokens per image": proc.get("num_image_tokens", "?"),
                "vision feature layer": config.get("vision_feature_layer", "?"),
                "image resize mode": config.get("image_resize_mode", "?"),
                "dtype": config.get("dtype", "?"),
            }
        ),
        "",
        f"- vision backbone: {_backbone(config.get('vision_config', {}), vision)}",
        f"- language model: {_backbone(config.get('text_config', {}), llm)}",
    ]
    if stages:
        lines += ["", "## Training", "", *[f"- {s}" for s in stages]]
    if data:
        lines += ["", "### Data", "", *_table(data)]
    if hyperparameters:
        lines += ["", "### Hyper-parameters", "", *_table(hyperparameters)]
    lines += ["", "### Metrics recorded", ""]
    lines += _table(metrics) if metrics else ["None were recorded for this model."]
    lines += [
        "",
        "## Prompt format",
        "",
        f"Chat template: **{name}** (saved as `chat_template.jinja`). Every decovlm command "
        "(`chat`, `predict`, `eval`, `explain`, `serve`) prompts the model with it unless "
        "`--chat-template` names another.",
    ]
    if template:
        lines += ["", "```jinja", template.strip(), "```"]
    if notes:
        lines += ["", notes.strip()]
    lines += [
        "",
        "## How to load",
        "",
        "```python",
        "import decovlm  # registers the model with the transformers Auto classes",
        "from decovlm.modeling.loading import load_model",
        "",
        f'model, processor = load_model("{folder}")',
        'prompt = processor.format_question("What is in the image?")',
        'inputs = processor(text=[prompt], images=[image], return_tensors="pt")',
        "answer = processor.batch_decode(model.generate(**inputs, max_new_tokens=64),",
        "                                skip_special_tokens=True)",
        "```",
        "",
        "or from the command line:",
        "",
        "```bash",
        f"decovlm chat --model {folder} --image photo.jpg",
        f"decovlm predict --model {folder} --input questions.jsonl --out answers.jsonl",
        "```",
        "",
    ]
    return "\n".join(lines)


def write_model_card(folder: str | os.PathLike, **kwargs: Any) -> Path:
    """Write `folder/README.md` (see `model_card` for the arguments); returns its path."""
    path = Path(folder) / CARD_NAME
    atomic_write_text(path, model_card(folder, **kwargs))
    return path
