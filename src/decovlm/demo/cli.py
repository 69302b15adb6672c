"""`decovlm demo`: run the paper's projector comparison on the synthetic world and write REPORT.md."""

from __future__ import annotations

import argparse

from decovlm.demo.config import DemoConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", default="demo_out", help="output folder (reused as a cache on reruns)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="check the plumbing (every stage and report section, no claim concluded): 31-34 s measured "
        "on 2 CPU cores, several minutes when other jobs load them",
    )
    parser.add_argument(
        "--tokens", type=int, default=16, help="visual tokens M of DeCo and the Q-Former (square)"
    )
    parser.add_argument(
        "--extra", nargs="*", default=[],
        help="more projectors: cabstractor, maxpool, bilinear, dabstractor, resampler, linear, or any spec",
    )  # fmt: skip
    parser.add_argument(
        "--seeds", type=int, default=None,
        help="train every projector with K seeds (mean ± std, intervals over seeds; default: the "
             "budget's, 1 on CPU, 3 for gpu)",
    )  # fmt: skip
    parser.add_argument(
        "--device", default="auto", help="auto (GPU when present), cpu, cuda, cuda:1, ..."
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--workers", type=int, default=None,
        help="trainings side by side in worker processes (default on a CPU: one per run, at most two "
             "per core; 1 on a GPU; these models are too small for a second thread to help one run)",
    )  # fmt: skip
    parser.add_argument(
        "--retrain-backbones", action="store_true",
        help="remake the world's tokenizer, vision encoder and LM with the shipped recipe (about half an "
             "hour on 2 CPU cores) instead of loading the ones shipped with decovlm",
    )  # fmt: skip
    parser.add_argument(
        "--budget", nargs="*", default=[], metavar="PRESET|KEY=VALUE",
        help="a preset (default: ~10 min on 2 CPU cores; gpu: the paper's whole comparison, 5 projectors "
             "at two M, 3 seeds; auto, the default, picks gpu when CUDA is present) and/or overrides, "
             "e.g. gpu finetune_steps=3000 (keys: the Budget fields in decovlm/demo/config.py)",
    )  # fmt: skip


def parse_budget(items: list[str]) -> dict:
    """["finetune_steps=3000", ...] -> {"finetune_steps": 3000}, typed like the Budget field."""
    from dataclasses import fields

    from decovlm.demo.config import PRESETS, Budget

    types = {f.name: f.type for f in fields(Budget) if f.name != "extra"}
    out: dict = {}
    for item in items:
        if "=" not in item and item in ("auto", *PRESETS):
            out["_preset"] = item
            continue
        key, sep, value = item.partition("=")
        if not sep or key not in types:
            raise ValueError(
                f"--budget {item!r}: expected a preset (auto, {', '.join(PRESETS)}) or KEY=VALUE "
                f"with KEY one of {', '.join(types)}"
            )
        kind = str(types[key])
        try:
            if value.lower() == "none" and "None" in kind:
                out[key] = None
            else:
                out[key] = (
                    float(value) if "float" in kind else int(value) if "int" in kind else value
                )
        except ValueError:
            raise ValueError(f"--budget {item!r}: {value!r} is not a valid {kind}") from None
    return out


def run(args: argparse.Namespace) -> int:
    from decovlm.demo.pipeline import run_demo
    from decovlm.demo.tables import print_report
    from decovlm.errors import UserError
    from decovlm.projectors.base import square_side

    if args.seeds is not None and args.seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {args.seeds}")
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    try:
        square_side(args.tokens, "--tokens")
        overrides = parse_budget(args.budget)
        cfg = DemoConfig(out_dir=args.out, quick=args.quick, tokens=args.tokens, extra=list(args.extra),
                         seeds=args.seeds, device=args.device, threads=args.threads,
                         preset=overrides.pop("_preset", "auto"), budget_overrides=overrides,
                         retrain_backbones=args.retrain_backbones, workers=args.workers)  # fmt: skip
        cfg.projectors  # noqa: B018  (parses every spec: a typo in --extra fails before any work)
    except ValueError as err:
        raise UserError(str(err)) from None
    report = run_demo(cfg)
    print_report(report)
    print(f"\nreport: {args.out}/REPORT.md")
    return 0
