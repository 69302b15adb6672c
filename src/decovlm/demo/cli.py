"""`decovlm demo`: run the paper's projector comparison on the synthetic world and write REPORT.md."""

from __future__ import annotations

import argparse

from decovlm.demo.config import DemoConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", default="demo_out", help="output folder (reused as a cache on reruns)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a 2-minute run with a smaller world and budget"
    )
    parser.add_argument(
        "--tokens", type=int, default=16, help="visual tokens M of DeCo and the Q-Former (square)"
    )
    parser.add_argument(
        "--extra", nargs="*", default=[],
        help="more projectors: cabstractor, maxpool, bilinear, dabstractor, resampler, linear, or any spec",
    )  # fmt: skip
    parser.add_argument(
        "--seeds", type=int, default=1, help="train every projector with K seeds (mean ± std)"
    )
    parser.add_argument(
        "--device", default="auto", help="auto (GPU when present), cpu, cuda, cuda:1, ..."
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--budget", nargs="*", default=[], metavar="KEY=VALUE",
        help="override the budget, e.g. finetune_steps=3000 train_scenes=16000 (keys: the Budget "
             "fields in decovlm/demo/config.py)",
    )  # fmt: skip


def parse_budget(items: list[str]) -> dict:
    """["finetune_steps=3000", ...] -> {"finetune_steps": 3000}, typed like the Budget field."""
    from dataclasses import fields

    from decovlm.demo.config import Budget

    types = {f.name: f.type for f in fields(Budget)}
    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in types:
            raise ValueError(
                f"--budget {item!r}: expected KEY=VALUE with KEY one of {', '.join(types)}"
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
    from decovlm.projectors import parse_spec
    from decovlm.projectors.base import square_side

    if args.seeds < 1:
        raise SystemExit("--seeds must be >= 1")
    try:
        square_side(args.tokens, "--tokens")
        cfg = DemoConfig(out_dir=args.out, quick=args.quick, tokens=args.tokens, extra=list(args.extra),
                         seeds=args.seeds, device=args.device, threads=args.threads,
                         budget_overrides=parse_budget(args.budget))  # fmt: skip
        for spec in cfg.projectors:
            parse_spec(spec)
    except ValueError as err:
        raise SystemExit(f"decovlm demo: {err}") from None
    report = run_demo(cfg)
    print_report(report)
    print(f"\nreport: {args.out}/REPORT.md")
    return 0
