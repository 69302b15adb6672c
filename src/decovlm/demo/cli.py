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
                         seeds=args.seeds, device=args.device, threads=args.threads)  # fmt: skip
        for spec in cfg.projectors:
            parse_spec(spec)
    except ValueError as err:
        raise SystemExit(f"decovlm demo: {err}") from None
    report = run_demo(cfg)
    print_report(report)
    print(f"\nreport: {args.out}/REPORT.md")
    return 0
