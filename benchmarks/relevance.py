"""Time and peak memory of explaining a 10-word answer (R-GAE, `decovlm.interpret.explain`) per projector.

    python benchmarks/relevance.py [--repeats 3] [--sizes tiny mid] [--threads 1]

Each (size, projector, mode) runs in its own subprocess so memory is measured in isolation: the
worker builds a random model (frozen), records `ru_maxrss`, runs one warm-up and `repeats` timed
`explain` calls with a fixed 10-token answer, and reports the median time and the growth of the
peak RSS over the build (activations, attention maps and their gradients; not the weights). On a
GPU the peak is `torch.cuda.max_memory_allocated` minus the weights instead.

Modes: `batched` = all 10 tokens' gradients in one vectorised backward
(`torch.autograd.grad(..., is_grads_batched=True)`); `per-token` = one backward per token.
Sizes: `tiny` = `decovlm.testing.tiny_model` (32 px, 4x4 patches, 2-layer Llama 48 wide);
`mid` = CLIP-like 336 px / 14 (24x24 = 576 patches, 4 layers x 256) + a Llama of 8 layers x 512
(8 heads); the Q-Former then has hidden size 512 (= llm_dim, the DeCo default) and 8 heads.
The table goes between the `<!-- relevance:start -->` / `<!-- relevance:end -->` markers of
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

ANSWER = (
    "red circle is left of a blue square in image"  # 10 words = 10 tokens (word-level tokenizer)
)
PROMPT = "USER: <image>\nwhat objects are there ? ASSISTANT:"
SPECS = {
    "tiny": ["linear", "avgpool2_4", "qformer2_4", "cabstractor_4"],
    "mid": ["linear", "avgpool2_64", "qformer2_64", "cabstractor_64"],
}


NOTES = """\
- Batched gradients (`is_grads_batched`, vmap over the 10 logits) pay off only on short sequences
  (2-3x at tiny size, <= 10% at 81 tokens, at 2-3x the memory); with 576 visual tokens on CPU the
  per-token loop was faster (4.5 s vs 5.9 s) with 1/3.5 of the memory, so `explain` defaults to
  per-token (`batched=True` / `decovlm explain --batched` to switch). Not measured on a GPU.
- Cost follows the LLM sequence: the compressive projectors (64 tokens) explain ~10x faster than
  the linear one (576 tokens). The gradient x input fallback (C-Abstractor and other learned
  projectors without attention maps) adds M = 64 batched backward passes through the projector.
- Before the maps were reduced under `no_grad`, every explained token kept its attention products
  in the autograd graph (2.7 GiB instead of 0.5 GiB for the mid linear model, growing per token).
"""


def build(size: str, spec: str):
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from decovlm.modeling import DecoVLMForConditionalGeneration, DecoVLMProcessor
    from decovlm.testing import tiny_model, tiny_tokenizer

    if size == "tiny":
        return tiny_model(spec)
    torch.manual_seed(0)
    tok = tiny_tokenizer()
    vision = CLIPVisionModel(CLIPVisionConfig(hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                                              num_attention_heads=4, image_size=336, patch_size=14))  # fmt: skip
    llm = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=512, intermediate_size=1376,
                                       num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=8,
                                       pad_token_id=1, bos_token_id=2, eos_token_id=3))  # fmt: skip
    model = DecoVLMForConditionalGeneration.from_components(
        vision, llm, projector=spec, image_token_id=tok.convert_tokens_to_ids("<image>")
    )
    ip = CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    return model.eval(), DecoVLMProcessor.from_model(model, ip, tok)


def worker(size: str, spec: str, mode: str, repeats: int, threads: int) -> dict:
    import numpy as np
    import torch
    from PIL import Image

    from decovlm.interpret import explain

    torch.set_num_threads(threads)
    model, processor = build(size, spec)
    for p in model.parameters():
        p.requires_grad_(False)
    cuda = torch.cuda.is_available()
    if cuda:
        model.cuda()
    side = processor.image_size[0]
    image = Image.fromarray((np.random.RandomState(0).rand(side, side, 3) * 255).astype("uint8"))
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()

    def call():
        return explain(model, processor, image, PROMPT, answer=ANSWER, batched=mode == "batched")

    expl = call()
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        call()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak = (
        (torch.cuda.max_memory_allocated() - base_cuda) / 2**20
        if cuda
        else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024
    )
    seq = int(processor(text=[PROMPT], images=[image])["input_ids"].shape[1]) + len(expl.token_ids)
    return {
        "size": size, "spec": spec, "mode": mode, "tokens": len(expl.token_ids), "M": expl.text_to_query.shape[1],
        "N": expl.patch_grid[0] * expl.patch_grid[1], "seq": seq, "q2p": expl.method,
        "time_s": statistics.median(times), "min_s": min(times), "peak_mib": peak,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "mid"], choices=list(SPECS))
    parser.add_argument(
        "--modes", nargs="+", default=["batched", "per-token"], choices=["batched", "per-token"]
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--worker", nargs=3, metavar=("SIZE", "SPEC", "MODE"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print the table, leave RESULTS.md alone"
    )
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.repeats, args.threads)))
        return

    from common import machine, markdown_table, write_section

    rows = []
    for size in args.sizes:
        for spec in SPECS[size]:
            for mode in args.modes:
                cmd = [sys.executable, __file__, "--worker", size, spec, mode, "--repeats", str(args.repeats),
                       "--threads", str(args.threads)]  # fmt: skip
                out = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if out.returncode != 0:
                    raise RuntimeError(f"worker {size} {spec} {mode} failed:\n{out.stderr[-3000:]}")
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(r, flush=True)
                rows.append([r["size"], r["spec"], r["q2p"], f"{r['M']} / {r['N']}", r["seq"], r["mode"],
                             f"{r['time_s'] * 1000:.0f}", f"{r['peak_mib']:.0f}"])  # fmt: skip

    table = markdown_table(
        [
            "size",
            "projector",
            "Query-to-Patch",
            "M / N",
            "sequence",
            "gradients",
            "time (ms)",
            "peak (MiB)",
        ],
        rows,
    )
    body = (
        "## Relevance maps (R-GAE): explaining a 10-word answer\n\n"
        f"`python benchmarks/relevance.py --repeats {args.repeats} --threads {args.threads}`: one teacher-forced "
        "eager pass + the gradients of 10 answer logits, median of the timed runs; peak = growth of the "
        f"process's peak RSS over the built model (CPU) or peak allocated minus weights (GPU). Machine: {machine()}"
        f"; workers use {args.threads} thread(s).\n\n{table}\n\n{NOTES}"
    )
    print(body)
    if not args.no_write:
        write_section("relevance", body)


if __name__ == "__main__":
    main()
