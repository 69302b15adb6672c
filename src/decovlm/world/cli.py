"""`decovlm world`: write the synthetic world's data set (and optionally its backbones) to disk."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--train", type=int, default=2000, help="training scenes (default 2000)")
    parser.add_argument("--eval", type=int, default=200, help="held-out eval scenes (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    parser.add_argument("--image-size", type=int, default=64, help="image side in px, 16-128")
    parser.add_argument(
        "--position-grid",
        type=int,
        default=0,
        help="0: objects anywhere (default); N: object centres on an N x N lattice (8 = patch grid)",
    )
    parser.add_argument(
        "--pope-pairs", type=int, default=1, help="yes+no pairs per POPE split per eval scene"
    )
    parser.add_argument(
        "--backbones",
        choices=["none", "quick", "default"],
        default="none",
        help="also train the small tokenizer / vision encoder / LLM into OUT/backbones",
    )
    parser.add_argument("--device", default="cpu", help="device for --backbones (cpu, cuda, auto)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    from decovlm.errors import UserError
    from decovlm.world.scene import WorldConfig
    from decovlm.world.writer import generate_world

    if args.train < 1 or args.eval < 1:
        raise UserError(f"--train and --eval must be >= 1, got {args.train} and {args.eval}")
    try:
        config = WorldConfig(image_size=args.image_size, position_grid=args.position_grid)
    except ValueError as err:
        flag = "--position-grid" if "position_grid" in str(err) else "--image-size"
        raise UserError(f"{flag}: {err}") from None
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
            progress=not args.no_progress,
        )  # fmt: skip
        print(f"backbones in {paths.root}: {json.dumps(paths.metrics)}")
    return 0
