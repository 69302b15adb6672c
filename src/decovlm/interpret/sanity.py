"""Single-patch sanity benchmark: does each Query-to-Patch method find the one patch the answer uses?

The task: a grey 32 x 32 image (4 x 4 patches of 8 px) with exactly one patch painted in one of
four colours; the question is "what colour ?" and the answer that colour's word. A tiny model
(2-layer Llama 48 wide, `decovlm.testing`) is trained for a few hundred steps per projector, with
its vision tower replaced by a fixed random **per-patch** encoder (each patch's pixels -> a
feature, no mixing between patches), so the answer can only come from the painted patch.

For each case the target word's Text-to-Patch map is computed with every Query-to-Patch method
that applies (the projector's own - "fixed" or "gae" - plus "attention" rollout and
"grad-x-input") and counted as a **hit** when a maximal patch is the painted one (pointing game;
ties count, so for 2 x 2 average pooling a hit means the painted patch's pooled cell). Chance is
the share of patches a map's maximum ties over: 1/16 for a per-patch map, 4/16 for a 2 x 2 cell.
Each method also gets its mean energy on the patch and the share of maps whose relevance
vanished (`Explanation.vanished`).

    from decovlm.interpret.sanity import single_patch_benchmark
    result = single_patch_benchmark()   # {"projectors": {spec: {"methods": {name: {...}}}}, ...}

`decovlm explain-eval --sanity --out DIR` writes the result to DIR/single_patch_sanity.json.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from PIL import Image

from decovlm.interpret.scores import energy_pointing_game, pointing_game

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 180, 40),
    "blue": (30, 60, 220),
    "yellow": (230, 210, 30),
}
PROMPT = "USER: <image>\nwhat colour ? ASSISTANT:"
DEFAULT_PROJECTORS = ("linear", "mlp2x_gelu", "avgpool2_4", "qformer2_4")
IMAGE, PATCH = 32, 8
BACKGROUND = 128


def scene(patch: int, colour: str, grid: int = IMAGE // PATCH) -> Image.Image:
    """The grey image with patch `patch` (row-major) painted `colour`."""
    arr = np.full((IMAGE, IMAGE, 3), BACKGROUND, np.uint8)
    r, c = divmod(patch, grid)
    arr[r * PATCH : (r + 1) * PATCH, c * PATCH : (c + 1) * PATCH] = COLOURS[colour]
    return Image.fromarray(arr)


class PatchEncoder(torch.nn.Module):
    """A fixed random per-patch encoder standing in for the ViT: pixels of a patch -> a feature."""

    def __init__(self, dim: int, patch: int = PATCH, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.patch = patch
        self.proj = torch.nn.Linear(3 * patch * patch, dim)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(dim, 3 * patch * patch, generator=gen) * 0.15)
            self.proj.bias.zero_()
        self.requires_grad_(False)

    def forward(self, pixel_values: torch.Tensor):
        p = self.patch
        b, ch, h, w = pixel_values.shape
        x = pixel_values.float().reshape(b, ch, h // p, p, w // p, p)
        x = x.permute(0, 2, 4, 1, 3, 5).reshape(b, (h // p) * (w // p), ch * p * p)
        return torch.nn.functional.gelu(self.proj(x)), (h // p, w // p)


def build_model(spec: str, seed: int = 0, projector_kwargs: dict | None = None):
    """A tiny (model, processor) whose `encode_patches` is the per-patch encoder."""
    from decovlm.modeling.tiny import tiny_model

    model, processor = tiny_model(
        spec, image_size=IMAGE, patch_size=PATCH, seed=seed, projector_kwargs=projector_kwargs
    )
    encoder = PatchEncoder(model.config.vision_config.hidden_size, seed=seed)
    # A plain function in the instance's __dict__ shadows the method (an nn.Module assigned here
    # would be registered as a submodule and the class method would still be found first).
    model.encode_patches = lambda pixel_values: encoder(pixel_values)
    return model, processor


def _batch(processor, images: list[Image.Image], answers: list[str]):
    batch = processor(text=[PROMPT] * len(images), images=images, return_tensors="pt")
    ans = torch.tensor(
        [processor.tokenizer(a, add_special_tokens=False)["input_ids"] for a in answers]
    )
    ids = torch.cat([batch["input_ids"], ans], dim=1)
    labels = torch.full_like(ids, -100)
    labels[:, -ans.shape[1] :] = ans
    return ids, batch["pixel_values"], labels


def train(model, processor, steps: int, batch_size: int = 16, lr: float = 3e-3, seed: int = 0):
    """Teach the model the task (every combination of patch and colour is a training image)."""
    n = model.patch_grid[0] * model.patch_grid[1]
    combos = [(p, c) for p in range(n) for c in COLOURS]
    ids, pixels, labels = _batch(
        processor, [scene(p, c) for p, c in combos], [c for _, c in combos]
    )
    gen = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.train()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        pick = torch.randint(len(combos), (batch_size,), generator=gen)
        loss = model(input_ids=ids[pick], pixel_values=pixels[pick], labels=labels[pick]).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss = loss.detach()
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=ids, pixel_values=pixels).logits[:, -2]
        accuracy = float((logits.argmax(-1) == ids[:, -1]).float().mean())
    return float(loss), accuracy


def evaluate(model, processor, cases: list[tuple[int, str]]) -> dict:
    """Hit rate, energy, mass and vanished share of every Query-to-Patch method over the cases."""
    from decovlm.interpret.explain import explain

    per: dict[str, dict[str, list]] = {}
    for patch, colour in cases:
        expl = explain(
            model, processor, scene(patch, colour), PROMPT, answer=colour, extra_methods="all"
        )
        mask = np.zeros(expl.patch_grid, np.float64)
        mask.flat[patch] = 1.0
        for method in expl.methods:
            rel = expl.word_map(0, method)
            row = per.setdefault(method, {"hit": [], "energy": [], "mass": [], "vanished": []})
            row["hit"].append(pointing_game(rel, mask))
            energy = energy_pointing_game(rel, mask)
            row["energy"].append(0.0 if np.isnan(energy) else energy)
            row["mass"].append(float(expl.method_word_mass(method)[0]))
            row["vanished"].append(expl.method_vanished(method)[0])
    return {
        method: {
            "hits": int(sum(r["hit"])),
            "cases": len(r["hit"]),
            "hit_rate": float(np.mean(r["hit"])),
            "energy": float(np.mean(r["energy"])),
            "median_q2p_mass": float(np.median(r["mass"])),
            "vanished_share": float(np.mean(r["vanished"])),
            # Of the misses, how many had vanished relevance: the method's misses, not the model's.
            "misses_vanished": _share_vanished(r),
        }
        for method, r in per.items()
    }


def _share_vanished(r: dict) -> float | None:
    misses = [v for h, v in zip(r["hit"], r["vanished"]) if not h]
    return float(np.mean(misses)) if misses else None


def chance_level(model) -> float:
    """Hit rate of a map that picks the cell its maximum ties over at random."""
    n = model.patch_grid[0] * model.patch_grid[1]
    mapping = model.projector.patch_mapping(*model.patch_grid)
    if mapping is None:
        return 1.0 / n
    cell = float((mapping > 0).sum(-1).float().mean())  # patches per visual token
    return min(1.0, cell / n)


def single_patch_benchmark(
    projectors=DEFAULT_PROJECTORS,
    steps: int = 300,
    cases: int = 20,
    seed: int = 0,
    threads: int = 1,
) -> dict:
    """Train a tiny model per projector on the single-patch task and score every method on it.

    `threads`: torch threads while it runs (restored after). The models are so small that more
    threads only add overhead, and on a loaded machine they made a step 30x slower.
    """
    if steps < 1 or cases < 1:
        raise ValueError(f"steps and cases must be positive, got steps={steps}, cases={cases}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run(projectors, steps, cases, seed)
    finally:
        torch.set_num_threads(previous)


def _run(projectors, steps: int, cases: int, seed: int) -> dict:
    out = {
        "task": "grey 32x32 image, one of 16 patches painted red/green/blue/yellow; "
        "Q: what colour ? A: the colour",
        "steps": steps,
        "seed": seed,
        "projectors": {},
    }
    rng = np.random.RandomState(seed)
    for spec in projectors:
        started = time.perf_counter()
        model, processor = build_model(spec, seed)
        n = model.patch_grid[0] * model.patch_grid[1]
        picks = rng.choice(n * len(COLOURS), size=cases, replace=cases > n * len(COLOURS))
        chosen = [(int(i) // len(COLOURS), list(COLOURS)[int(i) % len(COLOURS)]) for i in picks]
        loss, accuracy = train(model, processor, steps, seed=seed)
        out["projectors"][spec] = {
            "train_loss": loss,
            "train_accuracy": accuracy,
            "chance": chance_level(model),
            "methods": evaluate(model, processor, chosen),
            "seconds": time.perf_counter() - started,
        }
    return out


def markdown(result: dict) -> str:
    """One row per (projector, method): hits, hit rate, chance, energy, mass, vanished share."""
    lines = [
        "| projector | train acc. | method | hits | hit rate | chance | energy on patch | "
        "median Q2P mass | vanished | misses vanished |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for spec, p in result["projectors"].items():
        for method, m in p["methods"].items():
            lines.append(
                f"| {spec} | {p['train_accuracy']:.2f} | {method} | {m['hits']}/{m['cases']} | "
                f"{m['hit_rate']:.2f} | {p['chance']:.2f} | {m['energy']:.3f} | "
                f"{m['median_q2p_mass']:.2e} | {m['vanished_share']:.0%} | "
                + ("-" if m["misses_vanished"] is None else f"{m['misses_vanished']:.0%}")
                + " |"
            )
    return "\n".join(lines) + "\n"
