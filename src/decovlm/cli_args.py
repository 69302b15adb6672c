"""Command-line arguments shared by several `decovlm` sub-commands (argparse only, imports nothing heavy)."""

from __future__ import annotations

import argparse

DTYPES = ("auto", "float32", "bfloat16", "float16")


def add_loading_arguments(parser: argparse.ArgumentParser) -> None:
    """`--device`, `--dtype`, `--use-kernels` and `--allow-missing-weights`, the same for every
    command that loads a saved model (`decovlm.modeling.loading.load_model(path, args.device,
    args.dtype, args.use_kernels, args.allow_missing_weights)`)."""
    parser.add_argument(
        "--device", default="auto", help="auto (GPU when present), cpu, cuda, cuda:1, mps ..."
    )
    parser.add_argument(
        "--dtype", default="auto", choices=DTYPES, help="weights dtype (auto: as saved)"
    )
    parser.add_argument(
        "--use-kernels",
        action="store_const",
        const=True,
        default=None,
        help="use transformers' hub kernels (needs the `kernels` package and the hub; default off, "
        "or the DECOVLM_USE_KERNELS environment variable)",
    )
    parser.add_argument(
        "--allow-missing-weights",
        action="store_const",
        const=True,
        default=None,
        help="load a model whose weights file lacks weights its config.json needs (they start "
        "random; experiments only; or DECOVLM_ALLOW_MISSING_WEIGHTS=1). Default: refuse, naming them",
    )


def add_chat_template_argument(parser: argparse.ArgumentParser) -> None:
    """`--chat-template`: how questions are prompted; `auto` is the template saved with the model
    (the one it was trained with), so only an explicit name changes the prompt."""
    from decovlm.chat_template import TEMPLATE_CHOICES

    parser.add_argument(
        "--chat-template",
        default="auto",
        choices=TEMPLATE_CHOICES,
        help="how questions are prompted (auto: the template saved with the model)",
    )
