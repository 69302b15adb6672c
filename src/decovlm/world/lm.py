"""The world's small causal LM: an HF `LlamaForCausalLM` pretrained on the world's text.

It reads the world's question/answer dialogues in the chat template with the scene's caption
where the image will be (`LMSpec.context`), so before the MLLM stages it knows the vocabulary,
the USER/ASSISTANT format and how to answer from its context, the way Vicuna does for LLaVA.
Reports the final training loss, and the loss and answer accuracy on held-out eval questions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from decovlm.world.optim import pretrain


@dataclass
class LMSpec:
    """Size and training budget of the LM."""

    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 352
    max_position_embeddings: int = 1024
    steps: int = 300
    batch_size: int = 32
    lr: float = 3e-3
    max_length: int = 512  # longest single document kept (a scene description + 3-5 turns fit)
    # Loss on the assistant answers (and whole captions) only, not on the questions or the
    # scene description in their context (the LM should learn to answer, not to guess scenes).
    answer_loss: bool = False
    # What stands where the image goes in the chat documents (`world_corpus`): "none",
    # "caption" (the LM learns to answer from a description in its context) or "scene".
    context: str = "none"


def llama_config(spec: LMSpec, tokenizer):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads,
        max_position_embeddings=spec.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )


ANSWER = re.compile(r"ASSISTANT:( .*?)(?:</s>|$)", re.S)  # the space: byte-level tokens carry it


def _encode(tokenizer, docs: list[str], max_length: int, answer_loss: bool = False):
    """(input ids, labels) per document; with `answer_loss` only assistant answers are labelled.

    Documents stay whole (one per row, no packing across documents): a question cut off from
    the scene description before it cannot be answered from context.
    """
    # Captions are plain sentences: give them an EOS; chat documents already end with one.
    out = []
    eos = tokenizer.eos_token
    for doc in docs:
        text = doc if doc.endswith(eos) else doc + eos
        enc = tokenizer(text, truncation=True, max_length=max_length, return_offsets_mapping=True)
        ids = torch.tensor(enc.input_ids, dtype=torch.long)
        labels = ids.clone()
        spans = [(m.start(1), m.end(0)) for m in ANSWER.finditer(text)]
        if answer_loss and spans:
            keep = torch.tensor(
                [any(a <= start < b for a, b in spans) for start, _ in enc.offset_mapping]
            )
            labels[~keep] = -100
        out.append((ids, labels))
    return out


def _batch(seqs: list[tuple[torch.Tensor, torch.Tensor]], pad_id: int, device: str):
    length = max(len(s) for s, _ in seqs)
    ids = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    labels = torch.full((len(seqs), length), -100, dtype=torch.long)
    mask = torch.zeros((len(seqs), length), dtype=torch.long)
    for k, (s, y) in enumerate(seqs):
        ids[k, : len(s)], labels[k, : len(s)], mask[k, : len(s)] = s, y, 1
    return ids.to(device), mask.to(device), labels.to(device)


def length_grouped_batches(
    lengths: list[int], batch_size: int, gen: torch.Generator, group: int = 16
):
    """Endless batches of documents of similar length, one epoch after another.

    Each epoch is transformers' `get_length_grouped_indices` (a random permutation, sorted by
    length within megabatches of `group` batches), cut into full batches that are then shuffled
    so the LM does not see long documents first and short ones last. Padding every row to the
    longest of 32 random documents wasted 29% of the LM's pretraining compute on the demo's world.
    """
    from transformers.trainer_pt_utils import get_length_grouped_indices

    if not lengths:
        raise ValueError("length_grouped_batches needs at least one document")
    full = max(1, len(lengths) // batch_size)  # drop the ragged last batch (but keep one)
    while True:
        order = get_length_grouped_indices(lengths, batch_size, group, generator=gen)
        batches = [order[k * batch_size : (k + 1) * batch_size] for k in range(full)]
        for b in torch.randperm(full, generator=gen).tolist():
            yield batches[b]


@torch.no_grad()
def heldout_scores(
    model, seqs: list[tuple[torch.Tensor, torch.Tensor]], pad_id: int, device: str, batch: int = 64
) -> tuple[float, float]:
    """(token-weighted mean loss, share of documents with every labelled token right).

    With `answer_loss` a held-out question's only labels are its answer, so the second number is
    the answer accuracy (teacher-forced) - from the context when there is one.
    """
    model.eval()
    total, count, right = 0.0, 0, 0
    for k in range(0, len(seqs), batch):
        ids, mask, labels = _batch(seqs[k : k + batch], pad_id, device)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        target = labels[:, 1:]
        loss = nn.functional.cross_entropy(
            logits.flatten(0, 1), target.flatten(), ignore_index=-100, reduction="sum"
        )
        total += float(loss)
        count += int((target != -100).sum())
        right += int(((logits.argmax(-1) == target) | (target == -100)).all(dim=1).sum())
    return total / max(count, 1), right / max(len(seqs), 1)


def accuracy_by_category(
    model, tokenizer, docs: dict[str, list[str]], spec: LMSpec, device: str = "cpu"
) -> dict[str, float]:
    """Held-out answer accuracy (every answer token right, teacher-forced) per question category."""
    out = {}
    for category, texts in docs.items():
        seqs = _encode(tokenizer, texts, spec.max_length, answer_loss=True)
        out[category] = round(heldout_scores(model, seqs, tokenizer.pad_token_id, device)[1], 4)
    return out


@torch.no_grad()
def compose_phrase_embeddings(model, tokenizer) -> int:
    """Start each multi-word token's input embedding (an object's name, "small red star": see
    `world.tokenizer`) as the scaled sum of its words' embeddings; returns how many.

    The question names a shape alone ("What colour is the square?") and the caption holds the
    whole object ("small orange square"): from the first step the object's token then shares a
    direction with each of its words. Without it the 2-layer LM answered colour-of-shape questions
    40% right after 3,000 steps; with it 100% from step 2,500 (docs/world_learnability.md).
    """
    vocab = tokenizer.get_vocab()
    table = model.get_input_embeddings().weight
    count = 0
    for token, index in vocab.items():
        words = token.split("Ġ")[1:] if token.startswith("Ġ") else []
        if len(words) >= 2 and all(f"Ġ{w}" in vocab for w in words):
            table[index] = sum(table[vocab[f"Ġ{w}"]] for w in words) / len(words) ** 0.5
            count += 1
    return count


def train_lm(
    spec: LMSpec,
    tokenizer,
    train_docs: list[str],
    heldout_docs: list[str],
    seed: int,
    device: str = "cpu",
    progress: bool = True,
):
    """Pretrain the LM on `train_docs`; returns (model, metrics)."""
    from transformers import LlamaForCausalLM

    if not train_docs:
        raise ValueError("the world has no training text to pretrain the LM on")
    torch.manual_seed(seed)
    model = LlamaForCausalLM(llama_config(spec, tokenizer))
    compose_phrase_embeddings(model, tokenizer)
    model = model.to(device)
    seqs = _encode(tokenizer, train_docs, spec.max_length, spec.answer_loss)
    heldout = _encode(tokenizer, heldout_docs, spec.max_length, spec.answer_loss)
    batches = length_grouped_batches(
        [len(s) for s, _ in seqs], spec.batch_size, torch.Generator().manual_seed(seed)
    )

    def step_loss() -> torch.Tensor:
        ids, mask, labels = _batch([seqs[i] for i in next(batches)], tokenizer.pad_token_id, device)
        return model(input_ids=ids, attention_mask=mask, labels=labels).loss

    model.train()
    loss_value = pretrain(
        model.parameters(), step_loss, spec.steps, spec.lr, "language model", progress
    )
    heldout_loss, heldout_accuracy = heldout_scores(model, heldout, tokenizer.pad_token_id, device)
    metrics = {
        "train_loss": round(loss_value, 4),
        "heldout_loss": round(heldout_loss, 4),
        "heldout_answer_accuracy": round(heldout_accuracy, 4),
        "heldout_docs": len(heldout),
        "train_docs": len(seqs),
        "train_tokens": sum(len(s) for s, _ in seqs),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    return model, metrics
