"""Load a saved decovlm model and its processor by folder, on a device, in a dtype.

The matching `--device` / `--dtype` arguments are in `decovlm.cli_args`.
"""

from __future__ import annotations

import os

from decovlm.utils.device import resolve_device

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def check_model_folder(path: str | os.PathLike, what: str):
    """`path` as a Path if it holds a saved model (config.json that parses, a weights file), else
    a UserError naming `what` (the argument or config key) and the file that is missing or broken."""
    from pathlib import Path

    from decovlm.errors import MissingFileError, UserError
    from decovlm.utils.io import read_json

    path = Path(path)
    hint = "save_pretrained writes config.json, model.safetensors and the processor files"
    if not path.is_dir():
        raise MissingFileError(
            f"{what}: {path} is not a folder with a saved decovlm model (no such folder; {hint})"
        )
    if not (path / "config.json").is_file():
        raise MissingFileError(
            f"{what}: {path} is not a folder with a saved decovlm model (no config.json; {hint})"
        )
    if not isinstance(read_json(path / "config.json"), dict):
        raise UserError(f"{what}: {path / 'config.json'} is not a JSON object")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise MissingFileError(
            f"{what}: {path} has no weights file (expected one of {', '.join(WEIGHT_FILES)})"
        )
    return path


def load_model(
    path: str | os.PathLike,
    device: str | None = "auto",
    dtype: str | None = None,
    use_kernels: bool | None = None,
):
    """(model in eval mode, processor) from a folder written by `save_pretrained`.

    `use_kernels`: hub kernels (None: the DECOVLM_USE_KERNELS environment variable, default off;
    see `decovlm.modeling.kernels`)."""

    import torch

    from decovlm.modeling.modeling import DecoVLMForConditionalGeneration
    from decovlm.modeling.processing import DecoVLMProcessor

    path = check_model_folder(path, "--model")
    kwargs = {}
    if dtype not in (None, "", "auto"):
        if not isinstance(getattr(torch, str(dtype), None), torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r} (use float32, bfloat16 or float16)")
        kwargs["dtype"] = getattr(torch, str(dtype))
    model = DecoVLMForConditionalGeneration.from_pretrained(path, use_kernels=use_kernels, **kwargs)
    processor = DecoVLMProcessor.from_pretrained(path)
    return model.to(resolve_device(device)).eval(), processor
