"""Hub kernels are a choice: the `use_kernels` setting every `from_pretrained` in decovlm receives.

Newer transformers (>= 5.2x) turn hub kernels on by default in `from_pretrained`: without the
`kernels` package loading then fails ("Kernels are not available"), and with it `model.train()`
fetches kernels such as `kernels-community/rotary` from the hub, which fails on an offline GPU
machine. decovlm therefore passes `use_kernels=False` unless asked otherwise:

    kernel_kwargs(None)   # {"use_kernels": False}, or {"use_kernels": True} if DECOVLM_USE_KERNELS=1
    kernel_kwargs(True)   # {"use_kernels": True}, or a clear error without `kernels` / offline

"""

from __future__ import annotations

import importlib.util
import os

ENV = "DECOVLM_USE_KERNELS"  # the setting for every CLI that loads a model (1/true/yes = on)


def resolve_use_kernels(value: bool | None) -> bool:
    """The explicit value, else the environment variable DECOVLM_USE_KERNELS, else off."""
    if value is not None:
        return bool(value)
    raw = os.environ.get(ENV, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{ENV}={raw!r}: use 1/true/yes/on or 0/false/no/off")


def check_kernels_usable() -> None:
    """Raise one clear error when hub kernels cannot work here (no package, no hub)."""
    if importlib.util.find_spec("kernels") is None:
        raise RuntimeError(
            "use_kernels is on but the `kernels` package is not installed: `pip install kernels`, "
            f"or turn it off (model.use_kernels=false, {ENV}=0)"
        )
    from huggingface_hub.constants import is_offline_mode

    if is_offline_mode():
        raise RuntimeError(
            "use_kernels is on but the Hugging Face hub is offline (HF_HUB_OFFLINE=1): hub kernels are "
            f"fetched from the hub when the model is kernelized; turn use_kernels off ({ENV}=0) offline"
        )


def kernel_kwargs(use_kernels: bool | None = None) -> dict:
    """The keyword arguments for a `from_pretrained` call (every supported transformers, >= 5.20,
    reads `use_kernels`)."""
    on = resolve_use_kernels(use_kernels)
    if on:
        check_kernels_usable()
    return {"use_kernels": on}
