"""Load a saved decovlm model and its processor by folder, on a device, in a dtype.

The matching `--device` / `--dtype` arguments are in `decovlm.cli_args`.
"""

from __future__ import annotations

import os

from decovlm.utils.device import resolve_device


def load_model(
    path: str | os.PathLike,
    device: str | None = "auto",
    dtype: str | None = None,
    use_kernels: bool | None = None,
):
    """(model in eval mode, processor) from a folder written by `save_pretrained`.

    `use_kernels`: hub kernels (None: the DECOVLM_USE_KERNELS environment variable, default off;
    see `decovlm.modeling.kernels`)."""
    from pathlib import Path

    import torch

    from decovlm.modeling.modeling import DecoVLMForConditionalGeneration
    from decovlm.modeling.processing import DecoVLMProcessor

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path} is not a folder with a saved decovlm model (no config.json)"
        )
    kwargs = {}
    if dtype not in (None, "", "auto"):
        if not isinstance(getattr(torch, str(dtype), None), torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r} (use float32, bfloat16 or float16)")
        kwargs["dtype"] = getattr(torch, str(dtype))
    model = DecoVLMForConditionalGeneration.from_pretrained(path, use_kernels=use_kernels, **kwargs)
    processor = DecoVLMProcessor.from_pretrained(path)
    return model.to(resolve_device(device)).eval(), processor
