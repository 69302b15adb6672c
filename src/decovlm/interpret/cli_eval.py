"""`decovlm explain-eval`: localisation and concentration scores of relevance maps, per projector.

    decovlm explain-eval --model runs/linear --model runs/deco --model runs/qformer \\
        --cases world/eval/relevance_cases.jsonl --out results/relevance

writes `relevance_scores.md` (one row per model), `relevance_scores.json` (summaries, per-case
scores, skipped cases). Image and mask paths in the cases are relative to `--root`, by default the
cases file's folder's parent (the world's root when the file is `DIR/eval/relevance_cases.jsonl`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from decovlm.cli_args import add_loading_arguments
from decovlm.modeling.chat_template import TEMPLATE_CHOICES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", action="append", required=True, help="saved model folder (repeatable)"
    )
    parser.add_argument("--cases", required=True, help="relevance cases jsonl")
    parser.add_argument(
        "--root", default=None, help="folder the case paths are relative to (default: cases/..)"
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N cases")
    parser.add_argument("--start-layer", type=int, default=0)
    parser.add_argument("--end-layer", type=int, default=None)
    parser.add_argument(
        "--raw-prompt", action="store_true", help="'<image>\\n' + prompt, no chat template"
    )
    parser.add_argument(
        "--chat-template",
        default="auto",
        choices=TEMPLATE_CHOICES,
        help="how the questions are prompted (auto: the template saved with each model)",
    )
    add_loading_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from decovlm.interpret.cases import load_cases, markdown_table, score_cases
    from decovlm.modeling.loading import load_model
    from decovlm.utils.io import atomic_write_json, atomic_write_text

    cases, root = load_cases(args.cases, args.root)
    if args.limit is not None:
        if args.limit < 1:
            raise ValueError(f"--limit must be positive, got {args.limit}")
        cases = cases[: args.limit]
    for path in args.model:
        if not Path(path).is_dir():
            raise FileNotFoundError(f"model folder not found: {path}")
    results = []
    for path in args.model:
        model, processor = load_model(path, args.device, args.dtype, args.use_kernels)
        result = score_cases(
            model,
            processor,
            cases,
            root,
            chat=not args.raw_prompt,
            chat_template=args.chat_template,
            start_layer=args.start_layer,
            end_layer=args.end_layer,
        )
        results.append({"model": Path(path).name, **result})
        del model
    out = Path(args.out)
    table = markdown_table(results)
    atomic_write_text(out / "relevance_scores.md", table)
    atomic_write_json(
        out / "relevance_scores.json",
        {"cases_file": str(args.cases), "root": str(root), "models": results},
    )
    print(table)
    return 0
