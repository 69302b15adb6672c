"""`decovlm eval`: evaluate a saved model on one benchmark with its metric conventions.

    decovlm eval --model runs/deco --benchmark pope --data data/eval/pope --out results/pope
    decovlm eval --rescore --out results/vqav2 --data data/eval/vqav2 --convention vqaeval-2016

Answers are appended to <out>/answers.jsonl as they come (a rerun resumes), scores go to
<out>/scores.json and are printed as a table. `--rescore` scores the saved answers again under
another convention without loading a model (scores.<convention>.json). Every argument, the
convention and the output folder are checked before the model loads.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from decovlm.cli_args import add_chat_template_argument, add_loading_arguments
from decovlm.eval.benchmarks import BENCHMARKS
from decovlm.eval.metrics import BOX_PARSERS, FRAMES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default=None, help="folder of a saved decovlm model (save_pretrained)"
    )
    parser.add_argument(
        "--benchmark",
        default=None,
        choices=sorted(BENCHMARKS),
        help="benchmark name (with --rescore: the run's own, from --out)",
    )
    parser.add_argument(
        "--data", required=True, type=Path, help="the benchmark's data folder (see docs)"
    )
    parser.add_argument(
        "--split", default=None, help="benchmark split (default: the benchmark's usual one)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=1, help="1 for reported numbers (padding changes answers)"
    )
    parser.add_argument("--limit", type=int, default=None, help="only the first K questions")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default eval_results/<model>/<bench>)",
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=None, help="default: the benchmark's (128 mostly)"
    )
    add_chat_template_argument(parser)
    add_loading_arguments(parser)
    parser.add_argument(
        "--box-frame",
        default="naive",
        choices=FRAMES,
        help="RefCOCO: frame of the model's boxes (naive = stretched input, DeCo; pad = LLaVA-1.5)",
    )
    parser.add_argument(
        "--box-parse",
        default=None,
        choices=BOX_PARSERS,
        help="RefCOCO box parsing (same as --convention; default lmms-eval)",
    )
    parser.add_argument(
        "--convention",
        default=None,
        help="scoring convention (default: the one equal to the benchmark's official scorer; "
        "see docs/evaluation.md)",
    )
    parser.add_argument(
        "--no-ocr", action="store_true", help="TextVQA: leave the OCR tokens out of the prompt"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="score the answers saved in --out again (e.g. with another --convention) without "
        "loading a model or generating; writes scores.<convention>.json beside scores.json",
    )


def benchmark_options(args: argparse.Namespace) -> dict:
    """The options that change how a benchmark is prompted or scored (recorded with the results)."""
    name = args.benchmark
    options: dict = {}
    if name.startswith("refcoco"):
        options["box_frame"] = args.box_frame
        if args.box_parse is not None:
            options["box_parse"] = args.box_parse
    if name == "textvqa":
        options["ocr"] = not args.no_ocr
    if getattr(args, "convention", None):
        options["convention"] = args.convention
    return options


def _check_arguments(args: argparse.Namespace) -> None:
    """Every argument that can be wrong without loading anything, as one-line UserErrors."""
    from decovlm.errors import MissingFileError, UserError

    if args.rescore:
        if args.out is None:
            raise UserError("--rescore needs --out, the folder of the run to score again")
    elif args.model is None or args.benchmark is None:
        missing = " and ".join(
            a for a, v in (("--model", args.model), ("--benchmark", args.benchmark)) if v is None
        )
        raise UserError(f"{missing} required (or --rescore to score a saved run again)")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.limit is not None and args.limit < 0:
        raise UserError(f"--limit must be 0 or more, got {args.limit}")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    if not args.data.is_dir():
        what = f"the {args.benchmark} benchmark's" if args.benchmark else "the benchmark's"
        raise MissingFileError(f"--data: no folder {args.data} ({what} data folder, see docs)")


def run(args: argparse.Namespace) -> int:
    from decovlm.eval.benchmarks import get_benchmark
    from decovlm.eval.runner import check_run_folder, print_scores, run_info

    _check_arguments(args)
    if args.rescore:
        return _rescore(args)
    bench = get_benchmark(args.benchmark)
    split = args.split or bench.default_split
    out = args.out or Path("eval_results") / Path(args.model).name / (
        bench.name + (f"-{split}" if split else "")
    )
    # Before the (slow) model load, so a typo fails in a second: the model folder and its
    # config, the convention and option conflicts, and answers of another run in --out.
    from decovlm.modeling.loading import check_model_folder

    check_model_folder(args.model, "--model")
    options = benchmark_options(args)
    info = run_info(bench, split, options, str(args.model))
    run_convention = check_run_folder(out, info) or info["convention"]

    from decovlm.eval.generate import decovlm_generate_fn
    from decovlm.eval.runner import run_benchmark, scores_name
    from decovlm.modeling.loading import load_model

    model, processor = load_model(
        Path(args.model),
        args.device,
        args.dtype,
        args.use_kernels,
        args.allow_missing_weights,
    )
    generate_fn = decovlm_generate_fn(
        model,
        processor,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens or bench.max_new_tokens,
        chat_template=args.chat_template,
    )
    result = run_benchmark(
        bench,
        generate_fn,
        args.data,
        out,
        split=split,
        limit=args.limit,
        batch_size=args.batch_size,
        options=options,
        model_name=str(args.model),
        progress=not args.quiet,
    )
    print_scores(result)
    name = scores_name(info["convention"], run_convention)
    print(f"answers: {out / 'answers.jsonl'}\nscores:  {out / name}")
    return 0


def _rescore(args: argparse.Namespace) -> int:
    from decovlm.eval.runner import print_scores, rescore_benchmark

    # Only the scoring options: prompts and the box frame are the run's own (run.json).
    scoring = {}
    if args.convention:
        scoring["convention"] = args.convention
    if args.box_parse is not None:
        scoring["box_parse"] = args.box_parse
    result, path = rescore_benchmark(args.out, args.data, scoring, benchmark=args.benchmark)
    print_scores(result)
    print(f"scores ({result['convention']}, {result['n_questions']} saved answers): {path}")
    return 0
