"""The paper's relevance figure for one fixed example: per answer word, Text-to-Patch for each projector
(and, under a Q-Former's GAE row, its attention rollout), plus the Q-Former's Query-to-Patch maps of
the queries that word relies on most. A map flagged unreliable (`Explanation.unreliable`) is drawn
grey and hatched with its reason (`decovlm.interpret.draw.overlay`)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def draw_paper_figure(
    results: list[dict], files, out_dir: Path, device: str, case_index: int = 0
) -> dict:
    from decovlm import DecoVLMForConditionalGeneration, DecoVLMProcessor
    from decovlm.interpret import explain, load_cases
    from decovlm.interpret.draw import model_view, overlay
    from decovlm.interpret.explain import read_image
    from decovlm.interpret.reliability import NET_NEGATIVE

    cases, root = load_cases(files.relevance_cases, root=files.root)
    case = cases[case_index % len(cases)]
    image = read_image(root / case["image"])
    explained = []
    for result in results:
        if result["seed"] != 0:
            continue
        model = DecoVLMForConditionalGeneration.from_pretrained(result["model_path"]).to(device)
        processor = DecoVLMProcessor.from_pretrained(result["model_path"])
        expl = explain(model, processor, image, case["prompt"], answer=case["answer"])
        explained.append((result["spec"], expl, model_view(processor, image)))
    if not explained:
        return {}
    words = explained[0][1].words
    cols = 1 + len(words)
    # (label, explanation, view, method): GAE rows get the attention rollout's row beneath them
    rows = []
    for spec, expl, view in explained:
        rows.append((f"{spec}\n({expl.text_to_query.shape[-1]} tokens)", expl, view, expl.method))
        if expl.method == "gae" and "attention" in expl.methods:
            rows.append((f"{spec}\n(attention rollout)", expl, view, "attention"))
    fig, axes = plt.subplots(
        len(rows), cols, figsize=(1.9 * cols, 2.0 * len(rows)), dpi=110, squeeze=False
    )
    for row, (label, expl, view, method) in enumerate(rows):
        axes[row, 0].imshow(view)
        axes[row, 0].set_title(label, fontsize=8)
        axes[row, 0].axis("off")
        verdicts = expl.verdicts(method)
        for col, word in enumerate(expl.words[: cols - 1], start=1):
            overlay(
                axes[row, col], view, expl.word_map(col - 1, method), title=f"'{word.text}'",
                flag=verdicts[col - 1].reason,
            )  # fmt: skip
    question = case["prompt"].splitlines()[0]  # the instruction line adds nothing to the picture
    title = f"Text-to-Patch relevance. Q: {question}  A: {case['answer']}"
    fig.suptitle("\n".join(textwrap.wrap(title, max(30, 24 * cols))), fontsize=9)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    paths = {"text_to_patch": str(out_dir / "text_to_patch.png")}
    fig.savefig(paths["text_to_patch"])
    plt.close(fig)

    for spec, expl, view in explained:
        if expl.method != "gae":  # the Q-Former: show what its queries look at
            continue
        index = (
            expl.word_index(case["target_word"]) if case["target_word"] in expl.word_texts else 0
        )
        t2q = expl.word_text_to_query[index]
        q2p = expl.word_query_map(index)
        kept = expl.query_kept(index)
        top = t2q.argsort(descending=True)[:8].tolist()
        fig, axes = plt.subplots(1, len(top), figsize=(1.9 * len(top), 2.2), dpi=110, squeeze=False)
        grid = expl.patch_grid
        for ax, q in zip(axes[0], top):
            flag = None
            if kept is not None and float(kept[q]) < NET_NEGATIVE:
                flag = f"GAE keeps {float(kept[q]):.0%} of this row's signed relevance"
            overlay(ax, view, q2p[q].reshape(grid), title=f"query {q} ({t2q[q]:.2f})", flag=flag)
        fig.suptitle(
            f"{spec}: Query-to-Patch of the queries '{expl.words[index].text}' relies on most",
            fontsize=9,
        )
        fig.tight_layout()
        paths[f"query_to_patch_{spec}"] = str(out_dir / f"query_to_patch_{spec}.png")
        fig.savefig(paths[f"query_to_patch_{spec}"])
        plt.close(fig)
    return paths
