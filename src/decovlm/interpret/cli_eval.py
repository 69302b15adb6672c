"""`decovlm explain-eval`: localisation and concentration scores of relevance maps, per projector.

    decovlm explain-eval --model runs/linear --model runs/deco --model runs/qformer \\
        --cases world/eval/relevance_cases.jsonl --out results/relevance

writes `relevance_scores.md` (one row per model and Query-to-Patch method: the projector's own,
plus raw attention rollout and gradient x input where they apply), `relevance_scores.json`
(summaries per method with the share of vanished maps, per-case scores, skipped cases). Image and
mask paths in the cases are relative to `--root`, by default the cases file's folder's parent (the
world's root when the file is `DIR/eval/relevance_cases.jsonl`).

    decovlm explain-eval --sanity --out results/sanity

trains tiny models on the single-patch task (`decovlm.interpret.sanity`; `--sanity-image` /
`--sanity-patch` set its geometry, `--sanity-seeds` trains one model per seed) and writes each
method's hits, misses and how many of each the reliability flag marks, per projector, to
`single_patch_sanity.json` / `.md` (no model or cases needed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from decovlm.cli_args import add_chat_template_argument, add_loading_arguments
from decovlm.errors import MissingFileError, UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", action="append", default=None, help="saved model folder (repeatable)"
    )
    parser.add_argument("--cases", default=None, help="relevance cases jsonl")
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
    add_chat_template_argument(parser)
    parser.add_argument(
        "--methods",
        default="all",
        help="Query-to-Patch methods besides the projector's own: 'all', 'none' or a comma list "
        "of attention,grad-x-input",
    )
    parser.add_argument(
        "--vanish-tol",
        type=float,
        default=None,
        help="optional: also flag a map whose Query-to-Patch mass is below this (the issue-26 rule; "
        "the mass's scale depends on the model, so no default)",
    )
    parser.add_argument(
        "--sanity",
        action="store_true",
        help="run the single-patch sanity benchmark (tiny trained models) instead",
    )
    parser.add_argument("--sanity-steps", type=int, default=600, help="training steps per model")
    parser.add_argument("--sanity-lr", type=float, default=1e-3, help="learning rate (AdamW)")
    parser.add_argument("--sanity-cases", type=int, default=20, help="cases per projector and seed")
    parser.add_argument("--sanity-image", type=int, default=32, help="image side in px")
    parser.add_argument("--sanity-patch", type=int, default=8, help="patch side in px")
    parser.add_argument(
        "--sanity-seeds", default="0", help="comma-separated seeds, one trained model per seed"
    )
    parser.add_argument(
        "--sanity-projectors",
        default="linear,mlp2x_gelu,avgpool2_4,qformer2_4",
        help="comma-separated projector specs for --sanity",
    )
    add_loading_arguments(parser)


def run_sanity(args: argparse.Namespace) -> int:
    from decovlm.interpret import sanity
    from decovlm.utils.io import atomic_write_json, atomic_write_text

    projectors = [p.strip() for p in args.sanity_projectors.split(",") if p.strip()]
    if not projectors:
        raise UserError("--sanity-projectors is empty; give e.g. linear,avgpool2_4,qformer2_4")
    try:
        seeds = [int(s) for s in args.sanity_seeds.split(",") if s.strip()]
    except ValueError:
        raise UserError(
            f"--sanity-seeds must be comma-separated integers, got {args.sanity_seeds!r}"
        ) from None
    sanity.check_geometry(args.sanity_image, args.sanity_patch)
    result = sanity.single_patch_benchmark(
        projectors=projectors,
        steps=args.sanity_steps,
        cases=args.sanity_cases,
        image_size=args.sanity_image,
        patch_size=args.sanity_patch,
        seeds=seeds,
        lr=args.sanity_lr,
    )
    out = Path(args.out)
    table = sanity.markdown(result)
    atomic_write_json(out / "single_patch_sanity.json", result)
    atomic_write_text(out / "single_patch_sanity.md", table)
    print(table)
    return 0


def run(args: argparse.Namespace) -> int:
    from decovlm.interpret.cases import load_cases, markdown_table, score_cases
    from decovlm.modeling.loading import load_model
    from decovlm.utils.io import atomic_write_json, atomic_write_text

    if args.vanish_tol is not None and not args.vanish_tol >= 0:
        raise UserError(f"--vanish-tol must be a non-negative number, got {args.vanish_tol}")
    if args.sanity:
        return run_sanity(args)
    if not args.model or not args.cases:
        raise UserError("explain-eval needs --model (one or more) and --cases, or --sanity")
    methods = "" if args.methods == "none" else args.methods
    cases, root = load_cases(args.cases, args.root)
    if args.limit is not None:
        if args.limit < 1:
            raise UserError(f"--limit must be positive, got {args.limit}")
        cases = cases[: args.limit]
    for path in args.model:
        if not Path(path).is_dir():
            raise MissingFileError(f"model folder not found: {path}")
    results = []
    for path in args.model:
        model, processor = load_model(
            path, args.device, args.dtype, args.use_kernels, args.allow_missing_weights
        )
        result = score_cases(
            model,
            processor,
            cases,
            root,
            chat=not args.raw_prompt,
            chat_template=args.chat_template,
            start_layer=args.start_layer,
            end_layer=args.end_layer,
            extra_methods=methods,
            vanish_tol=args.vanish_tol,
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
