"""Load a saved decovlm model and its processor by folder, on a device, in a dtype.

A folder is what its config.json says, or it is refused with one line: the projector spec is
checked before any weight is read, and a weights file that lacks weights the config's model has
(or holds weights it has not) is refused by `load_model`, naming them, rather than run with a
randomly initialised projector or LLM. `allow_missing_weights=True` (CLI
`--allow-missing-weights`, or DECOVLM_ALLOW_MISSING_WEIGHTS=1) loads it anyway, for experiments.

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
    config = read_json(path / "config.json")
    if not isinstance(config, dict):
        raise UserError(f"{what}: {path / 'config.json'} is not a JSON object")
    _check_projector_entry(config, path / "config.json", what)
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise MissingFileError(
            f"{what}: {path} has no weights file (expected one of {', '.join(WEIGHT_FILES)})"
        )
    return path


def _check_projector_entry(config: dict, file, what: str) -> None:
    """The config's projector spec and kwargs parse (a UserError naming the file otherwise)."""
    from decovlm.errors import UserError

    if config.get("model_type", "decovlm") != "decovlm" or "projector" not in config:
        return
    from decovlm.projectors.registry import make_config

    spec, kwargs = config.get("projector"), config.get("projector_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise UserError(f"{what}: {file}: projector_kwargs must be a JSON object, got {kwargs!r}")
    kwargs = {k: v for k, v in kwargs.items() if k not in ("vision_dim", "llm_dim")}
    try:
        # Stand-in widths: only the spec and its kwargs are checked here, before any weights.
        make_config(spec, 64, 64, **kwargs)
    except (ValueError, TypeError) as err:
        raise UserError(f"{what}: {file}: projector {spec!r} cannot be built: {err}") from None


_GROUPS = (("projector.", "projector"), ("language_model.", "LLM"), ("vision_tower.", "vision"))


def _describe_keys(keys) -> str:
    """'51 projector (projector.a, projector.b, ...), 2 LLM (...)': keys grouped by module."""
    by_group: dict[str, list[str]] = {}
    for key in sorted(keys):
        group = next((name for prefix, name in _GROUPS if key.startswith(prefix)), "other")
        by_group.setdefault(group, []).append(key)
    parts = []
    for group, names in by_group.items():
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        parts.append(f"{len(names)} {group} ({shown})")
    return "; ".join(parts)


def weights_report(path, info: dict) -> str | None:
    """One line on what the weights file of `path` lacks or has in excess, or None when it fits."""
    missing = set(info.get("missing_keys") or ())
    unexpected = set(info.get("unexpected_keys") or ())
    mismatched = {k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys") or ()}
    if not (missing or unexpected or mismatched):
        return None
    parts = []
    if missing:
        parts.append(f"missing weights: {_describe_keys(missing)}")
    if unexpected:
        parts.append(f"weights the model has no place for: {_describe_keys(unexpected)}")
    if mismatched:
        parts.append(f"weights of another shape: {_describe_keys(mismatched)}")
    return f"{path}: the weights file does not match config.json: " + "; ".join(parts)


def _allow_missing_from_env() -> bool:
    value = os.environ.get("DECOVLM_ALLOW_MISSING_WEIGHTS", "").strip().lower()
    return value not in ("", "0", "false", "no")


def load_model(
    path: str | os.PathLike,
    device: str | None = "auto",
    dtype: str | None = None,
    use_kernels: bool | None = None,
    allow_missing_weights: bool | None = None,
):
    """(model in eval mode, processor) from a folder written by `save_pretrained`.

    `use_kernels`: hub kernels (None: the DECOVLM_USE_KERNELS environment variable, default off;
    see `decovlm.modeling.kernels`). A weights file that does not fit the config (weights missing,
    unexpected or of another shape, e.g. config.json naming another projector than the one
    trained) is a UserError naming them, unless `allow_missing_weights` (None: the
    DECOVLM_ALLOW_MISSING_WEIGHTS environment variable) lets the missing ones start random."""

    import torch

    from decovlm.modeling.modeling import DecoVLMForConditionalGeneration
    from decovlm.modeling.processing import DecoVLMProcessor

    path = check_model_folder(path, "--model")
    kwargs = {}
    if dtype not in (None, "", "auto"):
        if not isinstance(getattr(torch, str(dtype), None), torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r} (use float32, bfloat16 or float16)")
        kwargs["dtype"] = getattr(torch, str(dtype))
    if allow_missing_weights is None:
        allow_missing_weights = _allow_missing_from_env()
    model = _from_pretrained_checked(
        DecoVLMForConditionalGeneration, path, use_kernels, allow_missing_weights, kwargs
    )
    processor = DecoVLMProcessor.from_pretrained(path)
    return model.to(resolve_device(device)).eval(), processor


def _from_pretrained_checked(cls, path, use_kernels, allow_missing: bool, kwargs: dict):
    """`cls.from_pretrained` with transformers' load report replaced by our one-line verdict."""
    import logging
    import sys

    from decovlm.errors import UserError

    cause = "the folder's config.json names another model than its weights were saved from"
    opt_out = (
        "or pass --allow-missing-weights to run with the missing ones randomly initialised "
        "(experiments only)"
    )
    report_logger = logging.getLogger("transformers.modeling_utils")
    level = report_logger.level
    report_logger.setLevel(logging.ERROR)  # its multi-line table; ours says it in one line
    try:
        model, info = cls.from_pretrained(
            path, use_kernels=use_kernels, output_loading_info=True, **kwargs
        )
    except RuntimeError as err:
        if "size mismatch" in str(err) or "ignore_mismatched_sizes" in str(err):
            raise UserError(
                f"{path}: the weights file does not match config.json (weights of another "
                f"shape): {cause}; fix config.json"
            ) from None
        raise
    finally:
        report_logger.setLevel(level)
    report = weights_report(path, info)
    if report and not allow_missing:
        raise UserError(f"{report}. Probably {cause}: fix config.json, {opt_out}")
    if report:
        print(f"warning: {report} (loaded anyway: --allow-missing-weights)", file=sys.stderr)
    return model
