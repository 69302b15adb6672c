"""Model benchmark: decovlm vs transformers' LlavaForConditionalGeneration, and prefill vs visual tokens.

1. Training step (forward + backward) and greedy generation time of decovlm with `mlp2x_gelu` against
   the same weights in `LlavaForConditionalGeneration` (decovlm is made with `decovlm.convert.from_llava`,
   so both run identical numbers). Target: ratio <= 1.05.
2. Prefill latency of one 336 px image (576 patches) + 64 text tokens as the projector's visual token
   count goes 576 (mlp2x_gelu) -> 144 (avgpool2_144) -> 64 (avgpool2_64).

    python benchmarks/model.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

from common import machine, markdown_table, median_time, write_section
from decovlm import DecoVLMForConditionalGeneration
from decovlm.convert import from_llava

IMAGE_TOKEN = 999
VISION = dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
              image_size=336, patch_size=14)  # fmt: skip
TEXT = dict(vocab_size=1000, hidden_size=512, intermediate_size=1376, num_hidden_layers=4,
            num_attention_heads=8, num_key_value_heads=8, pad_token_id=0, bos_token_id=1, eos_token_id=2)  # fmt: skip


def make_llava() -> LlavaForConditionalGeneration:
    torch.manual_seed(0)
    config = LlavaConfig(vision_config=CLIPVisionConfig(**VISION), text_config=LlamaConfig(**TEXT),
                         image_token_id=IMAGE_TOKEN)  # fmt: skip
    return LlavaForConditionalGeneration(config)


def inputs(num_image_tokens: int, batch: int = 1, text: int = 64):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 900, (batch, text), generator=g)
    ids = torch.cat(
        [ids[:, :1], torch.full((batch, num_image_tokens), IMAGE_TOKEN), ids[:, 1:]], dim=1
    )
    return ids, torch.randn(batch, 3, 336, 336, generator=g)


def train_step(model, ids, pixels):
    model.zero_grad(set_to_none=True)
    model(
        input_ids=ids, pixel_values=pixels, labels=ids.masked_fill(ids == IMAGE_TOKEN, -100)
    ).loss.backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--wall",
        action="store_true",
        help="wall time with all threads (default: CPU time, 1 thread)",
    )
    args = parser.parse_args()
    timer = median_time
    if not args.wall:  # CPU time of one thread: not inflated by other jobs on a shared machine
        torch.set_num_threads(1)
        timer = partial(median_time, clock=time.process_time)

    llava = make_llava().train()
    ours = from_llava(llava).train()
    ids, pixels = inputs(576, batch=2)
    rows = []
    t_llava = timer(lambda: train_step(llava, ids, pixels), args.repeats)
    t_ours = timer(lambda: train_step(ours, ids, pixels), args.repeats)
    rows.append(["training step (batch 2, 576 + 64 tokens)", f"{t_llava * 1e3:.0f}", f"{t_ours * 1e3:.0f}",
                 f"{t_ours / t_llava:.3f}"])  # fmt: skip
    llava.eval()
    ours.eval()
    ids1, pixels1 = inputs(576)
    gen = dict(max_new_tokens=32, min_new_tokens=32, do_sample=False)
    with torch.no_grad():
        t_llava = timer(
            lambda: llava.generate(input_ids=ids1, pixel_values=pixels1, **gen), args.repeats
        )
        t_ours = timer(
            lambda: ours.generate(input_ids=ids1, pixel_values=pixels1, **gen), args.repeats
        )
    rows.append(["greedy generation (1 image, 32 new tokens)", f"{t_llava * 1e3:.0f}", f"{t_ours * 1e3:.0f}",
                 f"{t_ours / t_llava:.3f}"])  # fmt: skip

    prefill = []
    base = None
    for spec in ("mlp2x_gelu", "avgpool2_144", "avgpool2_64"):
        torch.manual_seed(0)
        model = DecoVLMForConditionalGeneration.from_components(
            ours.vision_tower, ours.language_model, projector=spec, image_token_id=IMAGE_TOKEN
        ).eval()
        ids_m, pixels_m = inputs(model.num_image_tokens)
        with torch.no_grad():
            t = timer(lambda: model(input_ids=ids_m, pixel_values=pixels_m), args.repeats)  # noqa: B023
        base = base or t
        prefill.append(
            [spec, model.num_image_tokens, ids_m.shape[1], f"{t * 1e3:.1f}", f"{base / t:.2f}x"]
        )

    body = "\n".join([
        "## Model: decovlm vs transformers LLaVA, and prefill vs visual tokens (`benchmarks/model.py`)",
        "",
        f"Machine: {machine()}. Config: CLIP-shaped vision tower (336 px, patch 14, 576 patches, width 256, "
        "4 layers) + Llama-shaped LLM (width 512, 4 layers); float32; median of "
        f"{args.repeats} runs; "
        + ("wall time." if args.wall else "process CPU time with 1 thread (robust to other jobs on the machine)."),
        "",
        markdown_table(["what", "LLaVA (ms)", "decovlm mlp2x_gelu (ms)", "ratio"], rows),
        "",
        "Prefill of one image + 64 text tokens (vision tower included):",
        "",
        markdown_table(["projector", "visual tokens", "sequence", "prefill (ms)", "speed-up vs 576"], prefill),
    ])  # fmt: skip
    write_section("model", body)
    print(body)


if __name__ == "__main__":
    main()
