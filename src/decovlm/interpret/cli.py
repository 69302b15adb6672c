"""`decovlm explain`: relevance maps of one answer about one image, as PNGs, .npz and a JSON summary.

    decovlm explain --model runs/deco --image cat.png --prompt "What colour is the cat?" --out out/

writes `word_XX_<word>.png` (Text-to-Query and Text-to-Patch of each word), `query_to_patch.png`
(the grid of per-query Query-to-Patch maps), `maps.npz` (every map, per token and per word) and
`summary.json` (prompt, answer, tokens, words with their token ranges, each word's Query-to-Patch
mass, kept share and reliability flag with its reason per method, shapes). A Q-Former / resampler
gets the attention-rollout maps beside its GAE ones; `--methods all` adds gradient x input too,
all on the same scale. A map flagged unreliable is drawn greyed and hatched with its reason.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from decovlm.cli_args import add_chat_template_argument, add_loading_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="a saved decovlm model folder (with its processor)"
    )
    parser.add_argument("--image", required=True, help="image file")
    parser.add_argument(
        "--prompt",
        required=True,
        help="the question; wrapped in the chat template with '<image>' unless it has the tag",
    )
    parser.add_argument(
        "--answer", default=None, help="teacher-force this answer instead of generating"
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--start-layer", type=int, default=0, help="first LLM layer to propagate through"
    )
    parser.add_argument(
        "--end-layer", type=int, default=None, help="LLM layer to stop before (default: all)"
    )
    parser.add_argument("--max-new-tokens", type=int, default=32)
    add_loading_arguments(parser)
    parser.add_argument(
        "--raw-prompt", action="store_true", help="use the prompt as written, no chat template"
    )
    add_chat_template_argument(parser)
    parser.add_argument(
        "--batched",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="all tokens' gradients in one vectorised backward (default: on CUDA only)",
    )
    parser.add_argument(
        "--methods",
        default="none",
        help="more Query-to-Patch methods beside the projector's own, drawn on the same scale: "
        "'none', 'all' or a comma list of attention,grad-x-input",
    )
    parser.add_argument(
        "--vanish-tol",
        type=float,
        default=None,
        help="optional: also flag a word whose Query-to-Patch mass is below this (the issue-26 "
        "rule; the mass's scale depends on the model, so there is no default)",
    )
    parser.add_argument(
        "--upsampling",
        choices=["bilinear", "nearest"],
        default="bilinear",
        help="how patch maps are enlarged over the image ('nearest': patch-accurate squares)",
    )


def save_explanation(
    explanation, image, processor, out_dir: str | os.PathLike, upsampling: str = "bilinear"
) -> list[Path]:
    """Write the PNGs, maps.npz and summary.json of one explanation; returns the written files."""
    from decovlm.interpret.draw import draw_all, model_view
    from decovlm.utils.io import atomic_path, atomic_write_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = draw_all(explanation, model_view(processor, image), out_dir, upsampling)
    with atomic_path(out_dir / "maps.npz") as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **explanation.arrays())
    paths.append(out_dir / "maps.npz")
    summary = {**explanation.summary(), "files": sorted(p.name for p in paths) + ["summary.json"]}
    atomic_write_json(out_dir / "summary.json", summary)
    return [*paths, out_dir / "summary.json"]


def run(args: argparse.Namespace) -> int:
    from decovlm.errors import UserError
    from decovlm.interpret.explain import explain, read_image

    # Bad arguments and a bad image fail before the model loads.
    if not args.prompt.strip():
        raise UserError("--prompt is empty: give the question to explain the answer of")
    if args.answer is not None and not args.answer.strip():
        raise UserError("--answer is empty: leave it out to explain the generated answer")
    if args.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    if args.vanish_tol is not None and not args.vanish_tol >= 0:
        raise UserError(f"--vanish-tol must be a non-negative number, got {args.vanish_tol}")
    image = read_image(args.image)
    from decovlm.modeling.loading import check_model_folder, load_model

    folder = check_model_folder(args.model, "--model")
    _check_layers(folder, args.start_layer, args.end_layer)

    model, processor = load_model(
        args.model, args.device, args.dtype, args.use_kernels, args.allow_missing_weights
    )
    explanation = explain(
        model,
        processor,
        image,
        args.prompt,
        answer=args.answer,
        start_layer=args.start_layer,
        end_layer=args.end_layer,
        max_new_tokens=args.max_new_tokens,
        batched=args.batched,
        chat_template=args.chat_template,
        raw_prompt=args.raw_prompt,
        extra_methods="" if args.methods == "none" else args.methods,
        vanish_tol=args.vanish_tol,
    )
    paths = save_explanation(explanation, image, processor, args.out, args.upsampling)
    print(
        f"answer: {explanation.answer!r}  ({len(explanation.words)} words, Query-to-Patch: {explanation.method})"
    )
    for word, reason in zip(explanation.words, explanation.unreliable_reason):
        if reason:
            print(
                f"warning: the map of {word.text!r} is not evidence of where the model looked "
                f"({reason}); its picture is greyed and hatched"
                + ("; see the attention method's map" if explanation.method == "gae" else "")
            )
    print(f"wrote {len(paths)} files to {args.out}")
    return 0


def _check_layers(folder, start_layer: int, end_layer: int | None) -> None:
    """--start-layer / --end-layer against the saved LLM's depth, before the model loads."""
    from decovlm.errors import UserError
    from decovlm.interpret.explain import _resolve_layers
    from decovlm.utils.io import read_json

    n_layers = (read_json(folder / "config.json").get("text_config") or {}).get("num_hidden_layers")
    if not isinstance(n_layers, int):
        return  # another config layout: explain() checks after loading
    try:
        _resolve_layers(n_layers, start_layer, end_layer)
    except ValueError as err:
        raise UserError(f"--start-layer/--end-layer: {err}") from None
