"""Train (or reuse) the world's three small backbones and save them as ordinary HF checkpoints.

    DIR/backbones/tokenizer/   AutoTokenizer.from_pretrained          (byte-level BPE + chat template)
    DIR/backbones/vision/      CLIPVisionModel.from_pretrained        (+ its CLIPImageProcessor)
    DIR/backbones/llm/         AutoModelForCausalLM.from_pretrained   (Llama)
    DIR/backbones/metrics.json probe accuracy vs chance, LM losses, seconds per part

They enter the MLLM through `from_components(vision=..., llm=...)` exactly as CLIP and Vicuna do.
Each folder holds a `decovlm_stamp.json` with a hash of everything that made it (world.json,
budget, seed, sizes, upstream stamps); a rerun with the same settings reuses it. Folders are
written to a temporary name and renamed, so an interrupted run never leaves a half checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from decovlm.utils.device import resolve_device
from decovlm.utils.io import atomic_write_json
from decovlm.world.lm import LMSpec
from decovlm.world.vision import VisionSpec

BACKBONES_VERSION = "7"
STAMP = "decovlm_stamp.json"
# Measured on a shared 2-core CPU (1 torch thread, 2000-scene world): quick 10 s wall / 7 s CPU
# for all three parts (colour probe 0.96 vs chance 0.11); default 160 s wall / 110 s CPU (colour
# 0.98, shape 0.45 vs majority 0.29). Shape needs the default budget's longer training: with
# 10000 scenes, 2400 steps and shape_weight 3 the shape probe reaches 0.79 (colour 0.985) for
# ~190 s wall in all (measured: 6000 scenes / 1200 steps 0.58; larger objects did not help).
# The default LM pretrains with each scene's caption in its context (docs/world_learnability.md,
# fourth round): batch 32 x 1500 steps at lr 1e-3 reads the answer off the caption (held-out
# answers 66%); batch 16 x 2000 steps reached 50%, and the MLLM then did not learn multiple choice
# in 1200 finetune steps (23 vs 23 with another scene's image); lr 3e-3 never read the context.
BUDGETS: dict[str, dict] = {
    "quick": {
        "vocab_size": 1024,
        "vision": VisionSpec(hidden_size=64, num_layers=2, intermediate_size=128,
                             scenes=500, steps=80, batch_size=32, probe_scenes=100),
        "lm": LMSpec(hidden_size=64, num_layers=2, intermediate_size=172, steps=120,
                     batch_size=8, answer_loss=True, context="caption"),
    },
    "default": {
        "vocab_size": 1024,
        "vision": VisionSpec(hidden_size=96, num_layers=3, intermediate_size=256,
                             scenes=10000, steps=2400, batch_size=32, probe_scenes=200,
                             shape_weight=3.0),
        "lm": LMSpec(hidden_size=128, num_layers=2, intermediate_size=352, steps=1500,
                     batch_size=32, lr=1e-3, answer_loss=True, context="caption"),
    },
    # One GPU (the demo's `gpu` preset, issue 25): wider and deeper, geometry heads on (boxes need
    # position in the features, docs/world_learnability.md, third and fifth rounds). The world LM
    # ran at ~70 steps/s on an H200 vs 6.4 on 2 CPU cores; not yet timed at these sizes.
    "gpu": {
        "vocab_size": 1024,
        "vision": VisionSpec(hidden_size=128, num_layers=4, intermediate_size=384,
                             scenes=16000, steps=4000, batch_size=64, probe_scenes=400,
                             shape_weight=3.0, geometry_weight=1.0),
        "lm": LMSpec(hidden_size=256, num_layers=4, intermediate_size=704, steps=3000,
                     batch_size=64, lr=1e-3, answer_loss=True, context="caption"),
    },
    # Tests shrink further; not offered on the command line.
    "tiny": {
        "vocab_size": 512,
        "vision": VisionSpec(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                             scenes=200, steps=40, batch_size=16, probe_scenes=40),
        "lm": LMSpec(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, steps=10,
                     batch_size=4, max_position_embeddings=512, answer_loss=True,
                     context="caption"),
    },
}  # fmt: skip
# What the package ships (`decovlm world pretrain`, `world.pretrain`): the default shapes, trained
# once for longer (31 min on 2 CPU cores) and with the geometry heads on. Vision: on the lattice
# world the probes read colour 0.991, shape 0.960 and the box to 0.015 (mean box 0.186). LM: one
# token per object name (`world.tokenizer`), its embedding started from its words'
# (`lm.compose_phrase_embeddings`); 8,000 steps: 96.9% of caption-answerable held-out questions.
BUDGETS["ship"] = {
    "vocab_size": 1024,
    "vision": replace(BUDGETS["default"]["vision"], scenes=20000, steps=4000, probe_scenes=300,
                      geometry_weight=1.0),
    "lm": replace(BUDGETS["default"]["lm"], steps=8000),
}  # fmt: skip


@dataclass
class BackbonePaths:
    """Where the backbones are, their metrics, and which parts were reused from a cache."""

    root: Path
    tokenizer: Path
    vision: Path
    llm: Path
    metrics_path: Path
    metrics: dict
    reused: dict


def settings_digest(settings: dict) -> str:
    """A short stable hash of JSON settings (what made a folder; `world.pretrain` stamps with it too)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _read_stamp(folder: Path) -> dict | None:
    try:
        return json.loads((folder / STAMP).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _build(folder: Path, settings: dict, make: Callable[[Path], dict]) -> tuple[dict, bool]:
    """Reuse `folder` if its stamp matches `settings`, else run make(tmp) and swap it in."""
    digest = settings_digest(settings)
    stamp = _read_stamp(folder)
    if stamp is not None and stamp.get("hash") == digest:
        return stamp, True
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        start, cpu = time.perf_counter(), time.process_time()
        metrics = make(tmp)
        # Wall time depends on how busy the machine is; CPU time is the cost itself.
        metrics["seconds"] = round(time.perf_counter() - start, 2)
        metrics["cpu_seconds"] = round(time.process_time() - cpu, 2)
        stamp = {"hash": digest, "settings": settings, "metrics": metrics}
        atomic_write_json(tmp / STAMP, stamp)
        old = folder.with_name(f".{folder.name}.old")
        if old.exists():
            shutil.rmtree(old)
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return stamp, False


def prepare_backbones(
    world_dir: str | Path,
    budget: str = "quick",
    seed: int = 0,
    device: str = "cpu",
    threads: int | None = None,
    progress: bool = True,
    force: bool = False,
) -> BackbonePaths:
    """Train the tokenizer, vision encoder and LM for the world in `world_dir` (or reuse them).

    budget: "quick" (< 30 s on 2 CPU cores) or "default" (< 3 min); device: "cpu", "cuda[:k]"
    or "auto"; threads: torch CPU threads while training. Default 1: these models are so small
    that intra-op threads barely help, and on a shared, busy CPU they make each step ~10x slower
    (OpenMP threads wait on each other) - measured 15 ms vs 190 ms CPU per vision step.
    """
    import torch

    from decovlm.world.lm import accuracy_by_category, train_lm
    from decovlm.world.scene import WorldConfig
    from decovlm.world.tokenizer import heldout_documents, train_tokenizer, world_corpus
    from decovlm.world.vision import image_processor, probe, train_vision
    from decovlm.world.writer import load_world_meta

    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {sorted(BUDGETS)}, got {budget!r}")
    meta = load_world_meta(world_dir)
    config = WorldConfig.from_dict(meta["config"])
    spec = BUDGETS[budget]
    device = resolve_device(device)
    root = Path(world_dir) / "backbones"
    world_hash = settings_digest(meta)
    if force:
        for name in ("tokenizer", "vision", "llm"):
            (root / name / STAMP).unlink(missing_ok=True)

    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads or 1)))
    try:
        # The tokenizer learns the plain corpus; the LM its own (`LMSpec.context`).
        def make_tokenizer(tmp: Path) -> dict:
            tok = train_tokenizer(world_corpus(world_dir)[0], vocab_size=spec["vocab_size"])
            tok.save_pretrained(tmp)
            return {"vocab_size": len(tok)}

        tok_settings = {"v": BACKBONES_VERSION, "world": world_hash, "vocab": spec["vocab_size"]}
        tok_stamp, tok_reused = _build(root / "tokenizer", tok_settings, make_tokenizer)

        def make_vision(tmp: Path) -> dict:
            model, loss = train_vision(spec["vision"], config, seed, device, progress)
            model.save_pretrained(tmp)
            image_processor(config.image_size).save_pretrained(tmp)
            result = {"train_loss": round(loss, 4), "parameters": model.num_parameters()}
            result["probe"] = probe(model, spec["vision"], config, seed, -2, device)
            return result

        vis_settings = {"v": BACKBONES_VERSION, "world": world_hash, "seed": seed,
                        "spec": asdict(spec["vision"])}  # fmt: skip
        vis_stamp, vis_reused = _build(root / "vision", vis_settings, make_vision)

        def make_llm(tmp: Path) -> dict:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(root / "tokenizer")
            train_docs, heldout_docs = world_corpus(world_dir, context=spec["lm"].context)
            model, result = train_lm(spec["lm"], tok, train_docs, heldout_docs, seed, device,
                                     progress)  # fmt: skip
            by_category = heldout_documents(world_dir, context=spec["lm"].context)
            per = accuracy_by_category(model, tok, by_category, spec["lm"], device)
            result["heldout_by_category"] = per
            # Boxes are not in a caption: the LM's reading skill is the other categories' accuracy.
            counts = {k: len(v) for k, v in by_category.items() if k != "localization"}
            if counts:
                result["heldout_answer_accuracy_without_boxes"] = round(
                    sum(per[k] * n for k, n in counts.items()) / sum(counts.values()), 4
                )
            model.save_pretrained(tmp)
            # Saved beside the LM as on the hub, so `AutoTokenizer.from_pretrained(llm)` works and
            # the folder enters `from_components` / `decovlm train` exactly like Vicuna's.
            tok.save_pretrained(tmp)
            return result

        llm_settings = {"v": BACKBONES_VERSION, "world": world_hash, "seed": seed,
                        "tokenizer": tok_stamp["hash"], "spec": asdict(spec["lm"])}  # fmt: skip
        llm_stamp, llm_reused = _build(root / "llm", llm_settings, make_llm)
    finally:
        torch.set_num_threads(old_threads)

    metrics = {
        "budget": budget,
        "seed": seed,
        "device": device,
        "tokenizer": tok_stamp["metrics"],
        "vision": vis_stamp["metrics"],
        "llm": llm_stamp["metrics"],
    }
    metrics_path = root / "metrics.json"
    atomic_write_json(metrics_path, metrics)
    return BackbonePaths(
        root=root,
        tokenizer=root / "tokenizer",
        vision=root / "vision",
        llm=root / "llm",
        metrics_path=metrics_path,
        metrics=metrics,
        reused={"tokenizer": tok_reused, "vision": vis_reused, "llm": llm_reused},
    )
