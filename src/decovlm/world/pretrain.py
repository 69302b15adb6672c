"""The world's pretrained backbones: made once by `decovlm world pretrain`, shipped with the package.

The paper's models start from CLIP and Vicuna, which nobody retrains per experiment; the world's
do the same. `pretrain()` writes a text-only pretraining world (no images: the vision encoder
renders its scenes in memory), trains the tokenizer, CLIP vision encoder and Llama LM on it
(`world.backbones`), and writes

    OUT/vision/      CLIPVisionModel + CLIPImageProcessor   (model.safetensors)
    OUT/llm/         LlamaForCausalLM + its tokenizer        (model.safetensors, tokenizer.json)
    OUT/stamp.json   what made them: the world's settings (and their hash), the budget, the seed,
                     every file's sha256, the probe and LM scores, versions and seconds
    OUT/README.md    the card: how they were made, what they score, the command that remakes them

The package ships one such folder, `decovlm/world/weights/` (remade with
`decovlm world pretrain --out src/decovlm/world/weights`). `shipped_backbones(config)` returns it
when the world's settings match its stamp, so `decovlm demo` loads it exactly as it would load
CLIP and Vicuna (`from_components` on the folders) and trains backbones only when asked or when
the world no longer matches.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

from decovlm.utils.io import atomic_write_json, atomic_write_text
from decovlm.world.scene import WORLD_VERSION, WorldConfig, vocabulary
from decovlm.world.tasks import PROMPTS

SHIPPED = Path(__file__).parent / "weights"
STAMP = "stamp.json"
CARD = "README.md"
REMAKE = "decovlm world pretrain --out src/decovlm/world/weights"
# The shipped backbones' world: the lattice world (object centres on the 8x8 patch grid, boxes given
# on the patch lattice), where a box follows from the patches that hold the object
# (docs/world_learnability.md, sixth and ninth rounds).
DEFAULT_WORLD = WorldConfig(position_grid=8, box_grid=8)
# How big the pretraining world is, per budget (scenes rendered for the LM's text; the vision
# encoder draws its own, `VisionSpec.scenes`). `ship` is what the package ships; `tiny` is for tests.
WORLD_SIZES = {"ship": {"train": 20000, "eval": 400}, "tiny": {"train": 40, "eval": 8}}


def world_settings(config: WorldConfig) -> dict:
    """What decides the scenes and the text the backbones learn: a change retrains them."""
    return {"version": WORLD_VERSION, "config": config.to_dict(), "vocab": vocabulary(),
            "prompts": PROMPTS}  # fmt: skip


def world_hash(config: WorldConfig) -> str:
    from decovlm.world.backbones import settings_digest

    return settings_digest(world_settings(config))


def file_hashes(folder: Path) -> dict[str, dict]:
    """sha256 and size of every file under `folder` but the stamp and card, by relative path."""
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel in (STAMP, CARD) or "/." in f"/{rel}":
            continue
        out[rel] = {
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "bytes": path.stat().st_size,
        }
    return out


def read_stamp(folder: Path) -> dict | None:
    try:
        return json.loads((Path(folder) / STAMP).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def verify(folder: Path = SHIPPED) -> list[str]:
    """What in `folder` disagrees with its stamp (missing, changed or unlisted files); [] when all match."""
    stamp = read_stamp(folder)
    if stamp is None:
        return [f"{folder / STAMP} is missing or not JSON"]
    want, have = stamp.get("files", {}), file_hashes(Path(folder))
    problems = [f"{name}: missing" for name in want if name not in have]
    problems += [f"{name}: not in the stamp" for name in have if name not in want]
    problems += [f"{name}: sha256 differs from the stamp" for name in want
                 if name in have and have[name]["sha256"] != want[name]["sha256"]]  # fmt: skip
    return problems


def shipped_backbones(config: WorldConfig, folder: Path = SHIPPED):
    """The shipped backbones as `BackbonePaths` when they were made for this world, else None."""
    from decovlm.world.backbones import BackbonePaths

    stamp = read_stamp(folder)
    if stamp is None or stamp.get("world_hash") != world_hash(config):
        return None
    metrics = {**stamp.get("metrics", {}), "shipped": str(folder), "made": stamp.get("made", {})}
    return BackbonePaths(root=Path(folder), tokenizer=Path(folder) / "llm", vision=Path(folder) / "vision",
                         llm=Path(folder) / "llm", metrics_path=Path(folder) / STAMP, metrics=metrics,
                         reused={"tokenizer": True, "vision": True, "llm": True})  # fmt: skip


def pretrain(
    out_dir: str | Path,
    budget: str = "ship",
    seed: int = 0,
    config: WorldConfig | None = None,
    device: str = "auto",
    threads: int | None = None,
    progress: bool = True,
) -> Path:
    """Make the backbones for `config` (the shipped world by default) into `out_dir`; returns it."""
    import torch
    import transformers

    from decovlm.world.backbones import BUDGETS, prepare_backbones
    from decovlm.world.writer import generate_world

    if budget not in WORLD_SIZES:
        raise ValueError(f"budget must be one of {sorted(WORLD_SIZES)}, got {budget!r}")
    config = config or DEFAULT_WORLD
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    work = out / ".pretrain_world"  # text only, removed at the end
    start = time.perf_counter()
    sizes = WORLD_SIZES[budget]
    generate_world(work, train=sizes["train"], eval=sizes["eval"], seed=seed, config=config,
                   progress=progress, images=False)  # fmt: skip
    paths = prepare_backbones(work, budget=budget, seed=seed, device=device, threads=threads,
                              progress=progress)  # fmt: skip
    for name, src in (("vision", paths.vision), ("llm", paths.llm)):
        target = out / name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(src, target, ignore=shutil.ignore_patterns("decovlm_stamp.json", ".*"))
    shutil.rmtree(work, ignore_errors=True)
    spec = BUDGETS[budget]
    stamp = {
        "world_hash": world_hash(config),
        "world": world_settings(config),
        "budget": budget,
        "seed": seed,
        "pretraining_world": sizes,
        "specs": {
            "vocab_size": spec["vocab_size"],
            "vision": asdict(spec["vision"]),
            "lm": asdict(spec["lm"]),
        },  # fmt: skip
        "metrics": {k: paths.metrics[k] for k in ("tokenizer", "vision", "llm")},
        "made": {
            "command": f"decovlm world pretrain --out {out_dir} --budget {budget} --seed {seed}",
            "date": time.strftime("%Y-%m-%d"),
            "seconds": round(time.perf_counter() - start, 1),
            "device": paths.metrics.get("device"),
            "machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "files": file_hashes(out),
    }
    atomic_write_json(out / STAMP, stamp)
    atomic_write_text(out / CARD, card(stamp))
    return out


def _mb(stamp: dict, prefix: str) -> float:
    return sum(f["bytes"] for name, f in stamp["files"].items() if name.startswith(prefix)) / 2**20


def card(stamp: dict) -> str:
    """The backbones' README.md: how they were made and what they score."""
    m, s = stamp["metrics"], stamp["specs"]
    v, lm, probe = s["vision"], s["lm"], m["vision"].get("probe", {})
    llm = m["llm"]
    per_cat = llm.get("heldout_by_category", {})
    cats = ", ".join(f"{k} {100 * acc:.1f}%" for k, acc in per_cat.items())
    made = stamp["made"]
    return f"""# The synthetic world's pretrained backbones

The world's own "CLIP" and "Vicuna": a CLIP vision encoder and a Llama LM (with its byte-level BPE
tokenizer) trained once on the world's scenes and text, so that every `decovlm demo` starts from
the same pretrained backbones, as the paper's runs start from CLIP ViT-L/14 and Vicuna-7B. Load them
like any HF checkpoint (`CLIPVisionModel.from_pretrained("vision")`,
`AutoModelForCausalLM.from_pretrained("llm")`) or as an MLLM's components
(`DecoVLMForConditionalGeneration.from_components("vision", "llm", projector="avgpool2_16")`).

| part | shape | parameters | file size |
|---|---|---|---|
| vision (`vision/`) | CLIP ViT, {v["num_layers"]} layers, width {v["hidden_size"]}, patch {v["patch_size"]} on {stamp["world"]["config"]["image_size"]} px | {m["vision"].get("parameters", 0):,} | {_mb(stamp, "vision/"):.1f} MB |
| LM (`llm/`) | Llama, {lm["num_layers"]} layers, width {lm["hidden_size"]}, {lm["num_heads"]} heads, vocabulary {m["tokenizer"].get("vocab_size", s["vocab_size"])} | {llm.get("parameters", 0):,} | {_mb(stamp, "llm/"):.1f} MB |

## How they were made

`{made["command"]}` (vision encoder {m["vision"].get("seconds", 0) / 60:.0f} min, LM {llm.get("seconds", 0) / 60:.0f} min on {made["device"]}, {made["machine"]}, torch
{made["torch"]}, transformers {made["transformers"]}, {made["date"]}); remake the shipped copy with
`{REMAKE}`. World: version {stamp["world"]["version"]}, `{json.dumps(stamp["world"]["config"])}`
(world hash `{stamp["world_hash"]}`: `decovlm demo` uses these backbones only for a world with the same
hash, and trains its own otherwise).

- Vision: {v["scenes"]:,} rendered training scenes, {v["steps"]:,} steps of {v["batch_size"]}, lr {v["lr"]}; per-patch
  heads for the colour, shape and size of the object under each patch (shape weight {v["shape_weight"]}),
  its box and its share of the object's area (weight {v["geometry_weight"]}), and the (colour, shape) pairs
  present; the heads are thrown away.
- LM: {llm.get("train_docs", 0):,} conversations about {stamp["pretraining_world"]["train"]:,} training scenes with the
  scene in words where the image will be (`{lm["context"]}`), {lm["steps"]:,} steps of {lm["batch_size"]}, lr {lm["lr"]},
  loss on the answers only.

## What they score (held-out scenes)

- Vision, linear probes on the penultimate layer's patch features (what the MLLM reads):
  colour {probe.get("colour_accuracy", float("nan")):.3f} (chance {probe.get("colour_chance", float("nan")):.3f}),
  shape {probe.get("shape_accuracy", float("nan")):.3f} (chance {probe.get("shape_chance", float("nan")):.3f}),
  box mean absolute error {probe.get("box_mae", float("nan")):.3f} against {probe.get("box_mae_baseline", float("nan")):.3f} for the mean box.
- LM, answers read off the scene's description in its context (teacher-forced, every answer token
  right): {100 * llm.get("heldout_answer_accuracy_without_boxes", float("nan")):.1f}% of the held-out questions whose answer the
  description holds (all but boxes); {100 * llm.get("heldout_answer_accuracy", float("nan")):.1f}% of all {llm.get("heldout_docs", 0)}. By task: {cats}.
  The description names each object's colour, shape and size, left to right, not its box: boxes are
  learned from the image, in the MLLM's grounding stage.
"""
