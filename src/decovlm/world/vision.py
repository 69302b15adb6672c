"""The world's small vision encoder: an HF `CLIPVisionModel` pretrained on rendered scenes.

Objective (direct and fast on a CPU): from each patch feature of the last two layers
(`hidden_states[-2]`, which the MLLM reads with vision_feature_layer=-2, and `[-1]`), linear heads
predict the colour, shape and size of the object covering that patch (or "background"); a head on
the pooled CLS feature predicts which (colour, shape) pairs are in the image. The heads are thrown
away; the encoder is saved and then frozen. `probe` checks the claim that matters downstream: a
fresh linear probe recovers the colour (and shape) of the object under a patch from its
penultimate-layer feature on held-out scenes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from decovlm.world.optim import pretrain
from decovlm.world.render import patch_blocks, patch_labels, render_scene
from decovlm.world.scene import COLOURS, SHAPES, SIZES, WorldConfig, sample_scene

IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)


@dataclass
class VisionSpec:
    """Size and training budget of the encoder."""

    patch_size: int = 8
    hidden_size: int = 96
    num_layers: int = 3
    num_heads: int = 4
    intermediate_size: int = 256
    scenes: int = 1500
    steps: int = 250
    batch_size: int = 64
    lr: float = 2e-3
    probe_scenes: int = 200
    # Weight of the per-patch shape heads' loss: shape is the hard attribute (colour is read off
    # one pixel), and most questions need it, so it gets a larger share of the gradient.
    shape_weight: float = 1.0
    # Weight of the per-patch geometry heads' loss (0 = off): the share of its object's area a
    # patch holds (it sums to 1 over an object, so the mean over patches counts objects) and the
    # object's normalised box (so a box can be read off any patch of the object).
    geometry_weight: float = 0.0


def clip_config(spec: VisionSpec, image_size: int):
    from transformers import CLIPVisionConfig

    if image_size % spec.patch_size:
        raise ValueError(f"image size {image_size} is not a multiple of patch {spec.patch_size}")
    return CLIPVisionConfig(
        image_size=image_size,
        patch_size=spec.patch_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        projection_dim=spec.hidden_size,
        num_channels=3,
        hidden_act="gelu",  # cheaper than CLIP's quick_gelu on a CPU, same role
    )


def image_processor(image_size: int):
    """The matching HF image processor, saved beside the encoder (plain resize + normalise)."""
    try:  # the PIL backend needs no torchvision (and says so instead of warning)
        from transformers import CLIPImageProcessorPil as CLIPImageProcessor
    except ImportError:
        from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=list(IMAGE_MEAN),
        image_std=list(IMAGE_STD),
    )


def to_pixels(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> normalised (N, 3, H, W), identical to `image_processor` at size."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@dataclass
class PatchData:
    pixels: torch.Tensor  # (N, 3, S, S)
    colour: torch.Tensor  # (N, g*g) colour index, len(COLOURS) = background
    shape: torch.Tensor  # (N, g*g)
    size: torch.Tensor  # (N, g*g)
    present: torch.Tensor  # (N, colours * shapes) multi-hot
    geometry: torch.Tensor  # (N, g*g, 5) share of the owner's area, owner's box; 0 on background


def _patch_targets(objs, owner: np.ndarray, attr: str, names) -> np.ndarray:
    """Per-patch class of `attr` for the owning object; len(names) marks background patches."""
    ids = [list(names).index(getattr(o, attr)) for o in objs] + [len(names)]
    return np.asarray(ids)[owner]  # owner -1 picks the trailing background id


def _patch_geometry(rendered, owner: np.ndarray, patch: int) -> np.ndarray:
    """(g*g, 5): each patch's share of its owner object's area, and the owner's box.

    The share is normalised over the patches the object owns, so an object's shares sum to 1.
    """
    blocks = patch_blocks(rendered.labels, patch).reshape(len(owner), -1)
    out = np.zeros((len(owner), 5), dtype=np.float32)
    owned = np.flatnonzero(owner >= 0)
    if not len(owned):
        return out
    ids = owner[owned]
    pixels = (blocks[owned] == ids[:, None]).sum(1).astype(np.float32)
    totals = np.bincount(ids, weights=pixels)
    boxes = np.array([rendered.normalized_box(i) for i in range(len(rendered.boxes))])
    out[owned, 0] = pixels / totals[ids]
    out[owned, 1:] = boxes[ids]
    return out


def render_patch_data(
    seed: int, split: str, start: int, count: int, config: WorldConfig, patch: int
) -> PatchData:
    images, colour, shape, size, present, geometry = [], [], [], [], [], []
    for i in range(start, start + count):
        rendered = render_scene(sample_scene(seed, split, i, config))
        objs = rendered.scene.objects
        owner = patch_labels(rendered.labels, patch).reshape(-1)  # -1 = background
        colour.append(_patch_targets(objs, owner, "colour", COLOURS))
        shape.append(_patch_targets(objs, owner, "shape", SHAPES))
        size.append(_patch_targets(objs, owner, "size", SIZES))
        geometry.append(_patch_geometry(rendered, owner, patch))
        hot = np.zeros(len(COLOURS) * len(SHAPES), dtype=np.float32)
        for o in objs:
            hot[list(COLOURS).index(o.colour) * len(SHAPES) + SHAPES.index(o.shape)] = 1.0
        present.append(hot)
        images.append(np.asarray(rendered.image))

    def as_long(xs):
        return torch.from_numpy(np.stack(xs)).long()

    return PatchData(
        to_pixels(np.stack(images)),
        as_long(colour),
        as_long(shape),
        as_long(size),
        torch.from_numpy(np.stack(present)),
        torch.from_numpy(np.stack(geometry)),
    )


class _Heads(nn.Module):
    """Throw-away training heads on the last two layers' patch features and the pooled CLS."""

    def __init__(self, hidden: int, geometry: bool = False):
        super().__init__()
        self.patch = nn.ModuleList(
            nn.ModuleDict({
                "colour": nn.Linear(hidden, len(COLOURS) + 1),
                "shape": nn.Linear(hidden, len(SHAPES) + 1),
                "size": nn.Linear(hidden, len(SIZES) + 1),
                **({"geometry": nn.Linear(hidden, 5)} if geometry else {}),
            })
            for _ in range(2)
        )  # fmt: skip
        self.present = nn.Linear(hidden, len(COLOURS) * len(SHAPES))

    def loss(
        self,
        out,
        data: PatchData,
        idx: torch.Tensor,
        shape_weight: float = 1.0,
        geometry_weight: float = 0.0,
    ) -> torch.Tensor:
        ce = nn.functional.cross_entropy
        total = nn.functional.binary_cross_entropy_with_logits(
            self.present(out.pooler_output), data.present[idx].to(out.pooler_output.device)
        )
        for heads, feats in zip(self.patch, (out.hidden_states[-2], out.hidden_states[-1])):
            feats = feats[:, 1:]  # drop CLS: one feature per patch, row-major
            for name, head in heads.items():
                target = getattr(data, name)[idx].to(feats.device)
                if name == "geometry":  # object patches only: background has no box
                    on = data.colour[idx].to(feats.device) < len(COLOURS)
                    err = (head(feats) - target).pow(2).mean(-1)
                    total = total + geometry_weight * err[on].mean() * 100  # ~unit scale
                    continue
                weight = shape_weight if name == "shape" else 1.0
                total = total + weight * ce(head(feats).flatten(0, 1), target.flatten())
        return total


def train_vision(
    spec: VisionSpec,
    config: WorldConfig,
    seed: int,
    device: str = "cpu",
    progress: bool = True,
):
    """Pretrain the encoder on `spec.scenes` training scenes; returns (model, final loss)."""
    from transformers import CLIPVisionModel

    if spec.geometry_weight < 0:
        raise ValueError(f"VisionSpec.geometry_weight must be >= 0, got {spec.geometry_weight}")
    torch.manual_seed(seed)
    data = render_patch_data(seed, "train", 0, spec.scenes, config, spec.patch_size)
    model = CLIPVisionModel(clip_config(spec, config.image_size)).to(device)
    heads = _Heads(spec.hidden_size, spec.geometry_weight > 0).to(device)
    params = list(model.parameters()) + list(heads.parameters())
    gen = torch.Generator().manual_seed(seed)

    def step_loss() -> torch.Tensor:
        idx = torch.randint(0, spec.scenes, (spec.batch_size,), generator=gen)
        out = model(pixel_values=data.pixels[idx].to(device), output_hidden_states=True)
        return heads.loss(out, data, idx, spec.shape_weight, spec.geometry_weight)

    model.train()
    loss_value = pretrain(params, step_loss, spec.steps, spec.lr, "vision encoder", progress)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, loss_value


@torch.no_grad()
def _patch_features(model, pixels: torch.Tensor, layer: int, device: str) -> torch.Tensor:
    feats = []
    for chunk in pixels.split(256):
        out = model(pixel_values=chunk.to(device), output_hidden_states=True)
        feats.append(out.hidden_states[layer][:, 1:].float().cpu())
    return torch.cat(feats)  # (N, g*g, D)


def _fit_probe(x: torch.Tensor, y: torch.Tensor, classes: int, steps: int = 300) -> nn.Linear:
    probe = nn.Linear(x.shape[1], classes)
    opt = torch.optim.Adam(probe.parameters(), lr=0.05)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(probe(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return probe


def probe(
    model, spec: VisionSpec, config: WorldConfig, seed: int, layer: int = -2, device: str = "cpu"
) -> dict:
    """Linear-probe accuracy of colour and shape of the object under a patch, held-out scenes.

    The probe trains on patches of fresh training scenes (not those the encoder saw) and is
    scored on eval scenes (held-out compositions); only patches covered by an object count.
    """
    torch.manual_seed(seed)
    train = render_patch_data(
        seed, "train", spec.scenes, spec.probe_scenes, config, spec.patch_size
    )
    test = render_patch_data(seed, "eval", 0, spec.probe_scenes, config, spec.patch_size)
    f_train = _patch_features(model, train.pixels, layer, device).flatten(0, 1)
    f_test = _patch_features(model, test.pixels, layer, device).flatten(0, 1)
    mean, std = f_train.mean(0), f_train.std(0) + 1e-6
    f_train, f_test = (f_train - mean) / std, (f_test - mean) / std
    result = {"layer": layer}
    for name, n_classes in (("colour", len(COLOURS)), ("shape", len(SHAPES))):
        y_train, y_test = getattr(train, name).flatten(), getattr(test, name).flatten()
        keep_train, keep_test = y_train < n_classes, y_test < n_classes  # object patches only
        clf = _fit_probe(f_train[keep_train], y_train[keep_train], n_classes)
        with torch.no_grad():
            pred = clf(f_test[keep_test]).argmax(-1)
        y = y_test[keep_test]
        result[f"{name}_accuracy"] = round(float((pred == y).float().mean()), 4)
        result[f"{name}_chance"] = round(1.0 / n_classes, 4)
        result[f"{name}_majority"] = round(float(torch.bincount(y).max()) / max(len(y), 1), 4)
        result[f"{name}_test_patches"] = int(len(y))
    # Geometry: a least-squares linear read-out of the owner's box and the patch's area share,
    # scored as mean absolute error against predicting the training mean (the no-feature baseline).
    on_train, on_test = train.colour.flatten() < len(COLOURS), test.colour.flatten() < len(COLOURS)
    g_train, g_test = train.geometry.flatten(0, 1)[on_train], test.geometry.flatten(0, 1)[on_test]
    x_train = torch.cat([f_train[on_train], torch.ones(int(on_train.sum()), 1)], 1)
    x_test = torch.cat([f_test[on_test], torch.ones(int(on_test.sum()), 1)], 1)
    w = torch.linalg.lstsq(x_train, g_train).solution
    err = (x_test @ w - g_test).abs()
    base = (g_train.mean(0) - g_test).abs()
    result["box_mae"] = round(float(err[:, 1:].mean()), 4)
    result["box_mae_baseline"] = round(float(base[:, 1:].mean()), 4)
    result["share_mae"] = round(float(err[:, 0].mean()), 4)
    result["share_mae_baseline"] = round(float(base[:, 0].mean()), 4)
    return result
