"""What every run of the demo shares: the world (rendered or reused), its backbones (the shipped
pretrained ones, or trained), and the frozen vision tower's features of the training images."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from decovlm.demo.config import DemoConfig, read_stamped, settings_hash
from decovlm.utils.io import atomic_write_json


def prepare_world(cfg: DemoConfig, out: Path, device: str, log, times: dict) -> tuple[Any, Any]:
    """The world's files (rendered here, or reused) and its backbones (shipped, or trained)."""
    from decovlm.world import generate_world
    from decovlm.world.scene import WORLD_VERSION, WorldConfig
    from decovlm.world.writer import WorldFiles

    b = cfg.budget
    world_dir = out / "world"
    config = WorldConfig(position_grid=b.position_grid, box_grid=b.box_grid)
    stamp = settings_hash(
        {
            "train": b.train_scenes,
            "eval": b.eval_scenes,
            "seed": cfg.world_seed,
            "v": 2,
            "world_version": WORLD_VERSION,
            **({"grid": b.position_grid} if b.position_grid else {}),
            **({"box_grid": b.box_grid} if b.box_grid else {}),
        }
    )
    stamp_file = world_dir / "demo_stamp.json"
    start = time.perf_counter()
    if read_stamped(stamp_file, stamp) is not None:
        log(f"world: reusing {world_dir}")
        files = WorldFiles.at(world_dir)
    else:
        log(f"world: rendering {b.train_scenes} training and {b.eval_scenes} held-out scenes")
        files = generate_world(
            world_dir, train=b.train_scenes, eval=b.eval_scenes, seed=cfg.world_seed, config=config,
        )  # fmt: skip
        atomic_write_json(stamp_file, {"stamp": stamp})
    times["world"] = time.perf_counter() - start
    start = time.perf_counter()
    backbones = resolve_backbones(cfg, out, config, device, log)
    times["backbones"] = time.perf_counter() - start
    return files, backbones


def resolve_backbones(cfg: DemoConfig, out: Path, config, device: str, log):
    """The shipped pretrained backbones when they were made for this world, else trained ones.

    `--retrain-backbones` remakes them here with the shipped recipe (`decovlm world pretrain`);
    a world whose settings differ from the shipped stamp (another lattice, image size or world
    version) trains the backbone budget named like the demo's preset on the demo's own world instead.
    """
    import torch

    from decovlm.world import prepare_backbones
    from decovlm.world.pretrain import SHIPPED, pretrain, shipped_backbones, world_hash

    # The demo has the machine to itself: the backbones use the same threads as the MLLM stages
    # (at most 4; these models are too small for more to help).
    threads = cfg.threads or min(4, torch.get_num_threads())
    name = cfg.budget.backbones
    if cfg.retrain_backbones:
        folder = out / "backbones"
        if (found := shipped_backbones(config, folder)) is not None:
            log(f"backbones: reusing the ones retrained in {folder}")
            return found
        log(
            f"backbones: retraining them with the shipped recipe into {folder} (about half an hour on 2 CPU cores)"
        )
        pretrain(folder, seed=cfg.world_seed, config=config, device=device, threads=threads)
        return shipped_backbones(config, folder)
    if name == "shipped":
        if (found := shipped_backbones(config)) is not None:
            log(f"backbones: the pretrained ones shipped with decovlm ({SHIPPED})")
            return found
        name = cfg.preset_name  # the backbone budget of the same name (quick, default, gpu)
        log(f"backbones: the shipped ones were made for another world (this one hashes to "
            f"{world_hash(config)}); training the '{name}' budget on this world instead")  # fmt: skip
    log(f"backbones: training the tokenizer, vision encoder and LM ({name} budget)")
    return prepare_backbones(out / "world", budget=name, seed=cfg.world_seed, device=device,
                             threads=threads)  # fmt: skip


def vision_features(files, backbones, log, times: dict) -> None:
    """The frozen vision tower's patch features of every training image, computed once for all runs."""
    from decovlm.train.build import build_model, vision_feature_table
    from decovlm.train.config import DataSection, ModelSection

    start = time.perf_counter()
    model, processor = build_model(
        ModelSection(vision=str(backbones.vision), llm=str(backbones.llm), projector="linear")
    )
    from decovlm.data.records import load_records

    records = load_records(files.align)
    log(f"vision features: the frozen encoder's patch features of {len(records)} training images")
    data = DataSection(path=str(files.align), vision_features="auto")
    vision_feature_table(data, model, processor, records, str(files.root))
    times["features"] = time.perf_counter() - start
