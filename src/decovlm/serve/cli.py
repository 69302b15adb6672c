"""`decovlm serve`: the interactive relevance explorer in the browser (Gradio).

    decovlm serve --model runs/deco [--compare runs/qformer] [--examples world/] [--port 7860]

Binds to 127.0.0.1 unless `--host` says otherwise (the page runs a model on request: do not
expose it without meaning to). Uploads are limited by `--max-file-size`; requests are queued,
`--concurrency` at a time per model panel.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys

from decovlm.cli_args import add_chat_template_argument, add_loading_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="a saved decovlm model folder (with its processor)"
    )
    parser.add_argument("--compare", default=None, help="a second model folder, shown side by side")
    parser.add_argument(
        "--examples",
        default=None,
        help="a synthetic-world folder (images/, eval/questions.jsonl) to offer examples from "
        "(default: look in the model folders)",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=int, default=7860)
    add_chat_template_argument(parser)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument(
        "--start-layer", type=int, default=0, help="first LLM layer to propagate relevance through"
    )
    parser.add_argument(
        "--end-layer", type=int, default=None, help="LLM layer to stop before (default: all)"
    )
    add_loading_arguments(parser)
    parser.add_argument(
        "--max-file-size", default="10mb", help="largest upload accepted (e.g. 10mb)"
    )
    parser.add_argument("--concurrency", type=int, default=2, help="requests run at once per event")
    parser.add_argument("--queue-size", type=int, default=32, help="requests allowed to wait")


def _check(args: argparse.Namespace) -> None:
    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be in 1..65535, got {args.port}")
    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if args.concurrency < 1 or args.queue_size < 1:
        raise ValueError("--concurrency and --queue-size must be >= 1")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    from decovlm.errors import UserError
    from decovlm.serve.app import build_app, launch
    from decovlm.serve.engine import load_explorer
    from decovlm.serve.examples import find_examples

    try:
        _check(args)
        common = dict(
            device=args.device,
            dtype=args.dtype,
            allow_missing_weights=args.allow_missing_weights,
            template=args.chat_template,
            max_new_tokens=args.max_new_tokens,
            start_layer=args.start_layer,
            end_layer=args.end_layer,
        )
        paths = [args.model] + ([args.compare] if args.compare else [])
        explorers = [load_explorer(p, **common) for p in paths]
    except (FileNotFoundError, ValueError) as err:  # a bad --model / --compare / setting
        raise UserError(str(err)) from None
    if len(explorers) == 2 and explorers[0].name == explorers[1].name:
        explorers[0].name, explorers[1].name = "A: " + explorers[0].name, "B: " + explorers[1].name
    examples = find_examples([args.examples] if args.examples else paths)
    if not _is_loopback(args.host):
        print(
            f"warning: serving on {args.host}: anyone who can reach this address can run the model",
            file=sys.stderr,
        )
    demo = build_app(explorers, examples)
    print(f"models: {', '.join(e.title for e in explorers)}; {len(examples)} examples")
    try:
        launch(
            demo,
            host=args.host,
            port=args.port,
            max_file_size=args.max_file_size,
            concurrency=args.concurrency,
            queue_size=args.queue_size,
        )
    except OSError as err:  # e.g. the port is taken
        raise UserError(f"cannot start the server on {args.host}:{args.port}: {err}") from None
    return 0
