"""The `decovlm` command line: one sub-command per job, each implemented in its own module.

Every sub-command module exposes `add_arguments(parser)` and `run(args) -> int`; this file only
maps names to modules, so importing the CLI stays cheap (torch and transformers are imported by
the sub-command that needs them, not here).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from decovlm.errors import debug_enabled, is_user_error, one_line

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "decovlm.demo.cli",
        "reproduce the paper's projector comparison on the synthetic world",
    ),
    "projectors": (
        "decovlm.projectors.cli",
        "list every projector spec with tokens and parameters",
    ),
    "train": (
        "decovlm.train.cli",
        "train a model from a YAML preset (align / finetune / no-align)",
    ),
    "eval": ("decovlm.eval.cli", "evaluate a model on a benchmark with its metric conventions"),
    "explain": (
        "decovlm.interpret.cli",
        "relevance maps (Text-to-Patch, Query-to-Patch) for one image",
    ),
    "explain-eval": ("decovlm.interpret.cli_eval", "score relevance maps against object masks"),
    "convert-llava": ("decovlm.convert", "convert a LLaVA-1.5 checkpoint to a decovlm model"),
    "world": ("decovlm.world.cli", "write the synthetic world's data set to disk"),
    "serve": ("decovlm.serve.cli", "interactive relevance explorer in the browser (Gradio)"),
    "chat": ("decovlm.infer.chat", "talk to a saved model about an image (streaming, multi-turn)"),
    "predict": ("decovlm.infer.predict", "answer a JSONL file of questions (batched, resumable)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decovlm",
        description="DeCo: decouple token compression (projector) from semantic abstraction (LLM).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        # Names and help lines only: `decovlm --help` imports no sub-command module (no torch);
        # main() adds a sub-command's own arguments when it is named.
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command; a `UserError` (bad file, argument, spec, config or data) becomes one
    line on stderr and exit code 2, other errors keep their traceback (they are bugs).

    `--debug` (anywhere on the line) or `DECOVLM_DEBUG=1` shows the traceback of user errors too.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or debug_enabled()
    argv = [a for a in argv if a != "--debug"]
    name = argv[0] if argv and argv[0] in COMMANDS else None
    try:
        return _dispatch(argv)
    except Exception as err:
        if debug or not is_user_error(err):
            raise
        prog = f"decovlm {name}" if name else "decovlm"
        print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
        return 2


def _dispatch(argv: list[str]) -> int:
    # Build only the requested sub-parser when we can: importing every module is slower.
    if argv and argv[0] in COMMANDS:
        name = argv[0]
        module_name, help_text = COMMANDS[name]
        parser = argparse.ArgumentParser(prog=f"decovlm {name}", description=help_text)
        module = importlib.import_module(module_name)
        module.add_arguments(parser)
        _add_debug(parser)
        args = parser.parse_args(argv[1:])
        return int(module.run(args) or 0)
    parser = build_parser()
    _add_debug(parser)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return int(importlib.import_module(args._module).run(args) or 0)


def _add_debug(parser: argparse.ArgumentParser) -> None:
    # Only for --help: main() takes --debug off the line before parsing.
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the Python traceback of input errors (or set DECOVLM_DEBUG=1)",
    )


if __name__ == "__main__":
    sys.exit(main())
