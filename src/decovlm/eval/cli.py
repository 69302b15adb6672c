"""`decovlm eval`: evaluate a saved model on one benchmark with its metric conventions.

    decovlm eval --model runs/deco --benchmark pope --data data/eval/pope --out results/pope

Answers are appended to <out>/answers.jsonl as they come (a rerun resumes), scores go to
<out>/scores.json and are printed as a table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from decovlm.cli_args import add_chat_template_argument, add_loading_arguments
from decovlm.eval.benchmarks import BENCHMARKS
from decovlm.eval.metrics import BOX_PARSERS, FRAMES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="folder of a saved decovlm model (save_pretrained)"
    )
    parser.add_argument(
        "--benchmark", required=True, choices=sorted(BENCHMARKS), help="benchmark name"
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


def run(args: argparse.Namespace) -> int:
    from decovlm.errors import MissingFileError
    from decovlm.eval.benchmarks import get_benchmark
    from decovlm.eval.generate import decovlm_generate_fn
    from decovlm.eval.runner import print_scores, run_benchmark
    from decovlm.modeling.loading import check_model_folder

    bench = get_benchmark(args.benchmark)
    # Check the inputs before the (slow) model load, so a typo fails in a second.
    if not args.data.is_dir():
        raise MissingFileError(
            f"--data: no folder {args.data} (the {bench.name} benchmark's data folder, see docs)"
        )
    check_model_folder(args.model, "--model")
    split = args.split or bench.default_split
    out = args.out or Path("eval_results") / Path(args.model).name / (
        bench.name + (f"-{split}" if split else "")
    )
    from decovlm.modeling.loading import load_model

    model, processor = load_model(Path(args.model), args.device, args.dtype, args.use_kernels)
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
        options=benchmark_options(args),
        model_name=str(args.model),
        progress=not args.quiet,
    )
    print_scores(result)
    print(f"answers: {out / 'answers.jsonl'}\nscores:  {out / 'scores.json'}")
    return 0
