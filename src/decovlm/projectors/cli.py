"""`decovlm projectors`: list projector specs with their output tokens and parameter counts.

    decovlm projectors                                  # every example spec, 24x24 patches, 1024 -> 4096
    decovlm projectors --grid 27x27 --vision-dim 1152 --llm-dim 2048 --spec avgpool2_144 qformer2_64
    decovlm projectors --json

Modules are built on PyTorch's `meta` device: shapes and parameter counts without allocating or
initialising any weight, so listing 500M-parameter Q-Formers is instant.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch

from decovlm.projectors.base import parse_grid
from decovlm.projectors.registry import ProjectorSpec, build_projector, example_specs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--vision-dim", type=int, default=1024, help="vision feature width Dv (default 1024)"
    )
    parser.add_argument(
        "--llm-dim", type=int, default=4096, help="LLM hidden width Dl (default 4096)"
    )
    parser.add_argument(
        "--grid", default="24x24", help="patch grid HxW (default 24x24 = 576 patches)"
    )
    parser.add_argument(
        "--spec",
        nargs="+",
        action="extend",
        metavar="SPEC",
        help="specs to list (default: every example spec of the registry)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def describe(spec: str, vision_dim: int, llm_dim: int, grid: tuple[int, int]) -> dict[str, Any]:
    """One row: family, tokens for `grid`, parameter counts; `error` says why a spec cannot run."""
    parsed = ProjectorSpec.parse(spec)  # unknown specs raise here, before anything is built
    family = parsed.family_info
    row: dict[str, Any] = {
        "spec": str(parsed),
        "family": family.name,
        "grid": f"{grid[0]}x{grid[1]}",
        "tokens": None,
        "trainable": None,
        "total": None,
        "compressive": family.module_class.compressive,
        "error": None,
    }
    try:
        with torch.device("meta"):
            proj = build_projector(parsed, vision_dim, llm_dim, input_grid=grid)
        row["tokens"] = proj.num_output_tokens(*grid)
        row["trainable"], row["total"] = proj.trainable, proj.total
    except ValueError as err:
        row["error"] = str(err)
    return row


def run(args: argparse.Namespace) -> int:
    try:
        for flag, value in (("--vision-dim", args.vision_dim), ("--llm-dim", args.llm_dim)):
            if value < 1:
                raise ValueError(f"{flag} must be a positive width, got {value}")
        grid = parse_grid(args.grid)
        rows = [
            describe(s, args.vision_dim, args.llm_dim, grid) for s in (args.spec or example_specs())
        ]
    except ValueError as err:  # a bad --grid or spec: one line from the CLI's error boundary
        from decovlm.errors import UserError

        raise UserError(str(err)) from None
    # Asking for a spec that cannot run on this grid is an error; the default listing is not.
    rc = 1 if args.spec and any(r["error"] for r in rows) else 0
    if args.json:
        print(json.dumps(rows, indent=2))
        return rc
    from rich.console import Console
    from rich.table import Table

    n = grid[0] * grid[1]
    table = Table(
        title=f"projectors: {grid[0]}x{grid[1]} = {n} patches, {args.vision_dim} -> {args.llm_dim}"
    )
    for col in ("spec", "family", "tokens", "trainable", "total", "compressive"):
        right = col in ("tokens", "trainable", "total")
        table.add_column(col, justify="right" if right else "left", no_wrap=True)
    errors = []
    for r in rows:
        if r["error"]:
            errors.append(f"[red]{r['spec']}: {r['error']}[/red]")
            table.add_row(r["spec"], r["family"], "[red]error[/red]", "-", "-", "-")
            continue
        table.add_row(
            r["spec"],
            r["family"],
            str(r["tokens"]),
            f"{r['trainable']:,}",
            f"{r['total']:,}",
            "yes" if r["compressive"] else "no",
        )
    console = Console()
    if not console.is_terminal:  # piped output: rich would fall back to 80 columns and squash it
        console = Console(width=120)
    console.print(table)
    for line in errors:
        console.print(line)
    return rc
