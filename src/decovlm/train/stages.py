"""What each training stage trains, and the align stage's projector artefact.

- `align`: the projector only (vision tower and LLM frozen), LLaVA's stage 1.
- `finetune`: projector + LLM (or LoRA adapters on the LLM), starting from the align stage's
  projector loaded from an explicit `projector.safetensors` path.
- `no-align`: DeCo's one-stage run: as `finetune`, from a freshly initialised projector (a
  `no-align+SPEC` projector, the DeCo fork's spelling, selects it: `train.config.apply_stage_prefix`).
The vision tower is always frozen and kept in eval mode.

The projector is loaded into the plain model before the Trainer wraps it (DDP/FSDP/ZeRO), which
is the fix for LLaVA's most common ZeRO-3 failure (loading into already-partitioned parameters).
"""

from __future__ import annotations

import json
import logging
import types
from pathlib import Path
from typing import Any

import torch
from torch import nn

from decovlm.errors import UserError
from decovlm.utils.io import atomic_path, atomic_write_json

logger = logging.getLogger(__name__)
PROJECTOR_WEIGHTS = "projector.safetensors"
PROJECTOR_CONFIG = "projector_config.json"


def keep_in_eval_mode(module: nn.Module) -> None:
    """Make `module.train()` a no-op so the Trainer's `model.train()` leaves it in eval mode.

    torch has no public switch for "frozen in eval mode"; this relies on `nn.Module.train(mode)`
    calling `train(mode)` on each child, read from torch 2.13.0 (the pinned version, also the one
    `make test-lowest` runs); tests/test_train_stages.py checks the tower stays in eval mode.
    """
    module.eval()

    def _train(self: nn.Module, mode: bool = True) -> nn.Module:
        return self

    for sub in module.modules():
        sub.train = types.MethodType(_train, sub)


def configure_stage(model: nn.Module, stage: str, lora: Any = None) -> nn.Module:
    """Set `requires_grad` for `stage`; returns the model (the LLM may be wrapped by peft)."""
    model.requires_grad_(False)
    keep_in_eval_mode(model.vision_tower)
    model.projector.requires_grad_(True)
    if stage == "align":
        return model
    if stage not in ("finetune", "no-align"):
        raise ValueError(f"unknown stage {stage!r}; known: align, finetune, no-align")
    if lora is not None and lora.enabled:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=list(lora.target_modules),
            bias="none",
        )
        model.language_model = get_peft_model(model.language_model, config)
    else:
        model.language_model.requires_grad_(True)
    return model


def trainable_summary(model: nn.Module) -> list[dict[str, Any]]:
    """Trainable / total parameter counts per top-level module (logged at the start of a run)."""
    rows = []
    for name, child in model.named_children():
        total = sum(p.numel() for p in child.parameters())
        trainable = sum(p.numel() for p in child.parameters() if p.requires_grad)
        rows.append({"module": name, "trainable": trainable, "total": total})
    return rows


def format_summary(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'module':<16}{'trainable':>16}{'total':>16}  state"]
    for r in rows:
        state = (
            "trainable"
            if r["trainable"] == r["total"] and r["total"]
            else "partly trainable"
            if r["trainable"]
            else "frozen"
        )
        lines.append(f"{r['module']:<16}{r['trainable']:>16,}{r['total']:>16,}  {state}")
    total = sum(r["total"] for r in rows)
    trainable = sum(r["trainable"] for r in rows)
    lines.append(
        f"{'all':<16}{trainable:>16,}{total:>16,}  ({100 * trainable / max(total, 1):.2f}% trainable)"
    )
    return "\n".join(lines)


def save_projector(
    model: nn.Module, folder: str | Path, model_dir: str | Path | None = None
) -> Path:
    """Write `projector.safetensors` and `projector_config.json` (atomically) into `folder`.

    With `model_dir` (a saved decovlm model) the weights are read from its safetensors files:
    those were gathered by the Trainer under FSDP / ZeRO-3, where `model.projector` holds shards.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    if model_dir is not None:
        state = _projector_from_saved(Path(model_dir))
    else:
        state = {k: v.detach().cpu().contiguous() for k, v in model.projector.state_dict().items()}
    path = folder / PROJECTOR_WEIGHTS
    with atomic_path(path) as tmp:
        save_file(
            state, str(tmp), metadata={"format": "pt", "projector": str(model.config.projector)}
        )
    cfg = model.config
    atomic_write_json(
        folder / PROJECTOR_CONFIG,
        {
            "projector": cfg.projector,
            "projector_kwargs": dict(cfg.projector_kwargs or {}),
            "vision_dim": cfg.vision_config.hidden_size,
            "llm_dim": cfg.text_config.hidden_size,
            "patch_grid": list(model.patch_grid),
            "num_image_tokens": model.num_image_tokens,
        },
    )
    return path


def _projector_from_saved(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        files = sorted({f for k, f in weight_map.items() if k.startswith("projector.")})
    else:
        files = ["model.safetensors"]
    state = {}
    for name in files:
        with safe_open(str(model_dir / name), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                if key.startswith("projector."):
                    state[key[len("projector.") :]] = f.get_tensor(key).contiguous()
    if not state:
        raise ValueError(f"{model_dir}: the saved model holds no projector.* weights")
    return state


def load_projector(model: nn.Module, path: str | Path) -> None:
    """Load an align-stage projector into `model.projector`, checking spec and shapes first."""
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        path = path / PROJECTOR_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"projector weights not found: {path} (training.projector_path)")
    cfg_path = path.parent / PROJECTOR_CONFIG
    if cfg_path.is_file():
        from decovlm.utils.io import read_json

        saved = read_json(cfg_path)
        if not isinstance(saved, dict):
            raise UserError(f"{cfg_path}: expected a JSON object (the projector's config)")
        if not _same_projector(saved.get("projector"), model.config.projector_spec):
            raise UserError(
                f"{path}: the projector was trained as {saved.get('projector')!r} but this run builds "
                f"{model.config.projector!r} (model.projector)"
            )
    try:
        state = load_file(str(path))
    except Exception as err:  # safetensors raises its own error type for a broken header
        raise UserError(f"{path}: not a readable safetensors file ({err})") from None
    own = model.projector.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or bad:
        raise UserError(
            f"{path} does not fit this projector: missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"shape mismatch {[(k, tuple(state[k].shape), tuple(own[k].shape)) for k in bad[:5]]}"
        )
    with torch.no_grad():
        model.projector.load_state_dict(state, strict=True)
    logger.info("loaded the align-stage projector from %s", path)


def _same_projector(saved: object, spec) -> bool:
    """Whether a saved spec string (from any decovlm version's spelling) names `spec`."""
    from decovlm.projectors.registry import ProjectorSpec

    try:
        return ProjectorSpec.parse(saved) == spec
    except ValueError:
        return False
