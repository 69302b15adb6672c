"""Frozen vision-tower features, computed once and read by every stage that keeps the tower frozen.

Every stage of the recipe freezes the vision tower, so its patch features for an image never
change during training; recomputing them costs every step a full ViT forward (17% of a demo
finetune step on 2 CPU cores, plus image decoding). A feature file holds them for a list of
images, in a safetensors file read lazily (memory-mapped), with a fingerprint of everything that
decides them: the tower's config and weights, the feature layer and selection, the resize mode and
the image processor's settings. A file made by another tower, layer or preprocessing is refused.

    compute_features(model, processor, image_root, images, path)   # once
    table = FeatureTable.open(path, fingerprint=tower_fingerprint(model, processor))
    table["images/train_000001.png"]                               # (N, Dv) patch features
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from decovlm.errors import UserError

KEY = "features"
FORMAT = "decovlm-vision-features-1"


def tower_fingerprint(model, processor) -> str:
    """A short hash of what decides the features: tower config and weights, layer, select, preprocessing."""
    h = hashlib.sha256()
    cfg = model.config
    h.update(cfg.vision_config.to_json_string(use_diff=False).encode())
    h.update(
        json.dumps(
            [cfg.vision_feature_layer, cfg.vision_feature_select, cfg.image_resize_mode]
        ).encode()
    )
    h.update(processor.image_processor.to_json_string().encode())
    for name, tensor in sorted(model.vision_tower.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


@torch.no_grad()
def compute_features(
    model,
    processor,
    image_root: str | Path,
    images: Sequence[str],
    path: str | Path,
    batch_size: int = 64,
    progress: bool = True,
) -> Path:
    """Write the patch features of `images` (paths relative to `image_root`) to `path`, atomically."""
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from decovlm.utils.images import load_image
    from decovlm.utils.io import atomic_path

    names = list(dict.fromkeys(images))
    if not names:
        raise ValueError("compute_features needs at least one image")
    root = Path(image_root)
    device = next(model.vision_tower.parameters()).device
    chunks = []
    for start in tqdm(
        range(0, len(names), batch_size), desc="vision features", disable=not progress, leave=False
    ):
        batch = [load_image(root / name) for name in names[start : start + batch_size]]
        pixels = processor.preprocess_images(batch).to(device)
        features, _ = model.encode_patches(pixels)
        chunks.append(features.cpu())
    metadata = {
        "format": FORMAT,
        "fingerprint": tower_fingerprint(model, processor),
        "images": json.dumps(names),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({KEY: torch.cat(chunks).contiguous()}, str(tmp), metadata=metadata)
    return path


class FeatureTable:
    """Patch features by image path, read lazily from a file made by `compute_features`."""

    def __init__(self, path: Path, handle, images: list[str], fingerprint: str):
        self.path = path
        self._handle = handle
        self._rows = {name: k for k, name in enumerate(images)}
        self.fingerprint = fingerprint

    @classmethod
    def open(cls, path: str | Path, fingerprint: str | None = None) -> FeatureTable:
        """Open `path`; with `fingerprint`, refuse a file made by another tower or preprocessing."""
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise UserError(
                f"data.vision_features: {path} not found (make it with compute_features)"
            )
        try:
            handle = safe_open(str(path), framework="pt")
            meta = handle.metadata() or {}
            images = json.loads(meta.get("images", "null"))
        except (OSError, ValueError, SafetensorError) as err:
            raise UserError(f"data.vision_features: {path} is not a feature file ({err})") from None
        if meta.get("format") != FORMAT or not isinstance(images, list):
            raise UserError(f"data.vision_features: {path} is not a decovlm feature file")
        if fingerprint is not None and meta.get("fingerprint") != fingerprint:
            raise UserError(
                f"data.vision_features: {path} was computed by another vision tower or preprocessing "
                f"(fingerprint {meta.get('fingerprint')}, this model {fingerprint}); delete it to recompute"
            )
        return cls(path, handle, images, meta.get("fingerprint", ""))

    @property
    def images(self) -> list[str]:
        return list(self._rows)

    def __contains__(self, image: str) -> bool:
        return image in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, image: str) -> torch.Tensor:
        row = self._rows[image]
        return self._handle.get_slice(KEY)[row : row + 1][0]

    def __getstate__(self) -> dict:
        # DataLoader workers pickle the dataset: reopen the file there instead of pickling the handle.
        return {"path": self.path, "fingerprint": self.fingerprint}

    def __setstate__(self, state: dict) -> None:
        fresh = FeatureTable.open(state["path"], state["fingerprint"])
        self.__dict__.update(fresh.__dict__)
