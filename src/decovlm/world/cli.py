"""`decovlm world`: write the synthetic world's data set (and optionally its backbones) to disk;
`decovlm world pretrain`: make the world's pretrained backbones (what the package ships)."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        nargs="?",
        choices=["write", "pretrain"],
        default="write",
        help="write (default): the world's images, conversations and eval questions; pretrain: train "
        "the tokenizer, CLIP vision encoder and Llama LM once, as the package ships them "
        "(`decovlm world pretrain --out src/decovlm/world/weights` remakes the shipped copy)",
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--train", type=int, default=2000, help="training scenes (default 2000)")
    parser.add_argument("--eval", type=int, default=200, help="held-out eval scenes (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    parser.add_argument("--image-size", type=int, default=64, help="image side in px, 16-128")
    parser.add_argument(
        "--position-grid",
        type=int,
        default=8,
        help="object centres on an N x N lattice (default 8, the patch grid: the world the shipped "
        "backbones were trained on); 0: objects anywhere",
    )
    parser.add_argument(
        "--box-grid",
        type=int,
        default=8,
        help="boxes on an N x N lattice (default 8, the patch lattice, as the shipped backbones' world); "
        "0: boxes to the pixel",
    )
    parser.add_argument(
        "--pope-pairs", type=int, default=1, help="yes+no pairs per POPE split per eval scene"
    )
    parser.add_argument(
        "--backbones",
        choices=["none", "quick", "default", "ship", "tiny"],
        default="none",
        help="write: also train the small tokenizer / vision encoder / LLM into OUT/backbones; "
        "pretrain: the budget (default ship, about half an hour on 2 CPU cores; tiny for tests)",
    )
    parser.add_argument("--device", default="auto", help="device for training (auto, cpu, cuda)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads for training")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _world_config(args: argparse.Namespace):
    from decovlm.errors import UserError
    from decovlm.world.scene import WorldConfig

    try:
        return WorldConfig(image_size=args.image_size, position_grid=args.position_grid,
                           box_grid=args.box_grid)  # fmt: skip
    except ValueError as err:
        flag = next((f"--{name.replace('_', '-')}" for name in ("position_grid", "box_grid")
                     if name in str(err)), "--image-size")  # fmt: skip
        raise UserError(f"{flag}: {err}") from None


def run(args: argparse.Namespace) -> int:
    from decovlm.errors import UserError

    config = _world_config(args)
    if args.action == "pretrain":
        return run_pretrain(args, config)
    from decovlm.world.writer import generate_world

    if args.train < 1 or args.eval < 1:
        raise UserError(f"--train and --eval must be >= 1, got {args.train} and {args.eval}")
    if args.backbones in ("ship", "tiny"):
        raise UserError(
            f"--backbones {args.backbones} is a pretrain budget: use `decovlm world pretrain "
            f"--backbones {args.backbones}`, or quick/default here"
        )
    files = generate_world(
        args.out,
        train=args.train,
        eval=args.eval,
        seed=args.seed,
        config=config,
        pope_pairs=args.pope_pairs,
        progress=not args.no_progress,
    )
    meta = json.loads(files.world_json.read_text())
    print(f"wrote the world to {files.root}: {json.dumps(meta['counts'])}")
    if args.backbones != "none":
        from decovlm.world.backbones import prepare_backbones

        paths = prepare_backbones(
            files.root, budget=args.backbones, seed=args.seed, device=args.device,
            threads=args.threads, progress=not args.no_progress,
        )  # fmt: skip
        print(f"backbones in {paths.root}: {json.dumps(paths.metrics)}")
    return 0


def run_pretrain(args: argparse.Namespace, config) -> int:
    from decovlm.errors import UserError
    from decovlm.world.pretrain import WORLD_SIZES, pretrain

    budget = "ship" if args.backbones == "none" else args.backbones
    if budget not in WORLD_SIZES:
        raise UserError(
            f"--backbones {budget}: pretrain budgets are {', '.join(WORLD_SIZES)} (quick/default train "
            "a written world's backbones: `decovlm world --backbones ...`)"
        )
    out = pretrain(args.out, budget=budget, seed=args.seed, config=config, device=args.device,
                   threads=args.threads, progress=not args.no_progress)  # fmt: skip
    print(f"pretrained backbones in {out} (card: {out / 'README.md'})")
    return 0
