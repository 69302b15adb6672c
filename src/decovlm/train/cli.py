"""`decovlm train CONFIG [key=value ...] [--resume]`: run one training stage from a YAML preset.

CONFIG is a preset name (`decovlm train --list`) or a YAML path; overrides use dotted keys, e.g.
`decovlm train vicuna7b_align model.projector=avgpool2_144 training.output_dir=runs/align`.
Multi-process: `torchrun --nproc_per_node 8 -m decovlm train CONFIG ...` (DDP), plus
`training.deepspeed=zero3` or `training.fsdp="full_shard auto_wrap" training.fsdp_config=fsdp_full_shard`.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="preset name or YAML file")
    parser.add_argument(
        "overrides", nargs="*", help="dotted overrides, e.g. training.learning_rate=1e-3"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from the newest complete checkpoint"
    )
    parser.add_argument("--list", action="store_true", help="list the presets and exit")
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config and exit"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="validate the config, resolve its engine files (DeepSpeed / FSDP) and exit",
    )


def run(args: argparse.Namespace) -> int:
    import logging

    from decovlm.errors import UserError
    from decovlm.train.config import dump_config, list_presets, load_config
    from decovlm.train.engines import EngineUnavailable, check_engine

    if args.list or not args.config:
        print("\n".join(list_presets()))
        return 0 if args.list else 2
    try:
        config = load_config(args.config, args.overrides)
        if args.print_config:
            print(dump_config(config), end="")
            return 0
        config.validate()
        if args.dry_run:
            from decovlm.train.engine_files import resolve_engine_file

            t = config.training
            print(
                f"config {args.config}: valid; stage {t.stage}; projector {config.model.projector}"
            )
            for key in ("deepspeed", "fsdp_config"):
                print(f"training.{key}: {resolve_engine_file(getattr(t, key), key)}")
            try:
                print(f"engine: {check_engine(config)}")
            except EngineUnavailable as err:
                print(f"engine: not available on this machine: {err}")
            try:
                config.check_paths()
                print("input files: present")
            except FileNotFoundError as err:
                print(f"input files: {err}")
            return 0
        check_engine(config)
        config.check_batch()
        config.check_paths()
    except (ValueError, EngineUnavailable) as err:  # the user's config, overrides or machine
        raise UserError(str(err)) from None
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from decovlm.errors import disk_full_is_a_user_error
    from decovlm.train.runner import train

    # A full disk mid-checkpoint loses nothing (the unfinished folder is never marked COMPLETE):
    # say so in one line instead of torch's `basic_ios::clear: iostream error` traceback.
    rerun = (
        "with --resume it continues from the newest complete checkpoint (an unfinished one is "
        "never used)"
    )
    with disk_full_is_a_user_error(config.training.output_dir, rerun):
        result = train(config, resume=args.resume)
    print(f"[decovlm] done: {result.global_step} steps; model in {result.model_path}")
    if result.projector_path:
        print(f"[decovlm] projector for the finetune stage: {result.projector_path}")
    return 0
