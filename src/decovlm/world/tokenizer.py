"""The world's tokenizer and text corpus.

A byte-level BPE (`tokenizers`) trained on the world's training text: with a few hundred merges
every world word becomes one token, and byte-level decoding round-trips any text exactly. An
object's name ("small red star", "red star") is one pre-token and so, after BPE, one token: a
visual token carries every attribute of its patch at once, and an LM that reads an object's
attributes off one token reads them off a visual token the same way. With one token per word the
small LM had to bind adjacent words ("orange" to "square") with attention, and after 4,000 steps
still answered "What colour is the square?" from the caption only 29% of the time; with object
tokens 100% (docs/world_learnability.md, ninth round). It is
saved as an ordinary HF fast tokenizer with `<s>`/`</s>`/`<pad>`/`<unk>`, `<image>` as an extra
special token, and a Vicuna-style chat template:

    <s>USER: <image>\\nWhat colour is the star? ASSISTANT: purple</s>USER: ... ASSISTANT:
"""

from __future__ import annotations

import json
from pathlib import Path

from decovlm.utils.io import read_json
from decovlm.world.scene import PLURALS, SHAPES, SIZES, vocabulary
from decovlm.world.tasks import NUMBER_WORDS, PROMPTS

BOS, EOS, PAD, UNK, IMAGE = "<s>", "</s>", "<pad>", "<unk>", "<image>"
SPECIAL_TOKENS = [UNK, BOS, EOS, PAD, IMAGE]
# Roles user/assistant (LLaVA's human/gpt are mapped by the data pipeline); an optional system
# message goes first. Content may be a string or a list of {"type": "image"|"text"} parts.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['content'] is string %}{% set content = message['content'] %}"
    "{% else %}{% set content = namespace(text='') %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{% set content.text = content.text + '<image>\\n' %}"
    "{% else %}{% set content.text = content.text + part['text'] %}{% endif %}"
    "{% endfor %}{% set content = content.text %}{% endif %}"
    "{% if message['role'] == 'system' %}{{ content + ' ' }}"
    "{% elif message['role'] == 'user' %}{{ 'USER: ' + content + ' ' }}"
    "{% elif message['role'] == 'assistant' %}{{ 'ASSISTANT: ' + content + eos_token }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def chat_text(
    turns: list[tuple[str, str]], drop_image: bool = False, context: str | None = None
) -> str:
    """The chat template's text for (question, answer) turns, without the leading BOS.

    `context` replaces the image placeholder (a textual description of the scene); otherwise
    `drop_image` removes it.
    """
    out = []
    for question, answer in turns:
        if context is not None:
            question = question.replace(IMAGE, context)
        elif drop_image:
            question = question.replace(IMAGE + "\n", "").replace(IMAGE, "")
        out.append(f"USER: {question} ASSISTANT: {answer}{EOS}")
    return "".join(out)


def scene_text(rendered) -> str:
    """The scene in words with every object's box, left to right (the `scene` context)."""
    from decovlm.world.tasks import describe, format_box

    objs = rendered.scene.objects
    order = sorted(range(len(objs)), key=lambda i: (objs[i].cx, objs[i].cy))
    return (
        "; ".join(f"{describe(objs[i])} {format_box(rendered.normalized_box(i))}" for i in order)
        + "."
    )


# What stands where the image will be in the LM's pretraining documents (`world_corpus`).
CONTEXTS = ("none", "caption", "scene")


def _scene_contexts(root: Path, split: str, context: str) -> dict[str, str]:
    """scene_id -> the scene in words (its caption, or `scene_text` with boxes) for a split.

    Empty for the "none" context (nothing stands where the image goes).
    """
    if context == "none":
        return {}
    from decovlm.world.render import render_scene
    from decovlm.world.scene import WorldConfig, sample_scene
    from decovlm.world.tasks import caption
    from decovlm.world.writer import load_world_meta

    meta = load_world_meta(root)
    config = WorldConfig(**meta["config"])
    count = meta["counts"]["train_scenes" if split == "train" else "eval_scenes"]
    texts = {}
    for i in range(count):
        scene = sample_scene(meta["seed"], split, i, config)
        texts[scene.scene_id] = (
            caption(scene) if context == "caption" else scene_text(render_scene(scene))
        )
    return texts


def _read_json(path: Path):
    return read_json(path, hint="write the world with `decovlm world`")


def _turns(record: dict, path: Path) -> list[tuple[str, str]]:
    convs = record.get("conversations")
    if not isinstance(convs, list) or len(convs) % 2:
        raise ValueError(f"{path}: record {record.get('id')!r} needs human/gpt conversation pairs")
    return [(convs[k]["value"], convs[k + 1]["value"]) for k in range(0, len(convs), 2)]


def world_corpus(world_dir: str | Path, context: str = "none") -> tuple[list[str], list[str]]:
    """(train documents, held-out documents) of plain text for tokenizer and LM pretraining.

    Train: every finetune conversation in chat form (and, without a context, every caption as a
    sentence). Held-out: the eval questions with their answers, in chat form. `context` says
    what stands where the image goes:
    - "none": nothing (the image placeholder is removed); the LM learns the words, the dialogue
      format and the answers' priors, not how to find an answer in its context.
    - "caption": the scene's caption, so the LM learns to answer the world's questions from a
      description in its context, the way a real LLM answers from a passage. In the MLLM the
      projector's visual tokens take the caption's place: reading the answer off the context is
      then a skill the LLM already has (the paper's premise: the LLM abstracts, the projector
      only hands over the patches). Measured in docs/world_learnability.md (fourth round).
    - "scene": every object with its box (`scene_text`); ~250 tokens a scene, too long for the
      2-layer LM to learn to read in minutes.
    """
    if context not in CONTEXTS:
        raise ValueError(f"context must be one of {CONTEXTS}, got {context!r}")
    root = Path(world_dir)
    train: list[str] = []
    align_path, finetune_path = root / "align.json", root / "finetune.json"
    if context == "none":
        # With a context every conversation already carries its scene in words; repeating the
        # captions as documents would halve the conversations the LM's steps see.
        for rec in _read_json(align_path):
            train += [answer for _, answer in _turns(rec, align_path)]
    contexts = _scene_contexts(root, "train", context)
    for rec in _read_json(finetune_path):
        ctx = contexts.get(rec.get("id"))
        train.append(chat_text(_turns(rec, finetune_path), drop_image=True, context=ctx))
    heldout = [doc for docs in heldout_documents(root, context).values() for doc in docs]
    return train, heldout


def vocabulary_text() -> list[str]:
    """Every world word at least once, so rare words still get their own token."""
    vocab = vocabulary()
    words = list(SHAPES) + list(PLURALS.values()) + list(vocab["colours"]) + list(SIZES)
    words += list(NUMBER_WORDS) + [str(k) for k in range(100)] + ["yes", "no", "A", "B", "C", "D"]
    return [" ".join(words), *PROMPTS.values()]


# GPT-2's pre-tokenization (words with their leading space, numbers, punctuation, spaces), with an
# object's name ([size] colour shape, singular) kept whole in front of it.
WORDS = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def object_phrase_pattern() -> str:
    colours, shapes = "|".join(vocabulary()["colours"]), "|".join(SHAPES)
    return rf" ?(?:(?:{'|'.join(SIZES)}) )?(?:{colours}) (?:{shapes})(?![a-z])"


def train_tokenizer(texts: list[str], vocab_size: int = 1024):
    """Train the byte-level BPE and wrap it as a `PreTrainedTokenizerFast` with the chat template."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    split = pre_tokenizers.Split(Regex(f"{object_phrase_pattern()}|{WORDS}"), behavior="isolated")
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [split, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts) + vocabulary_text(), trainer)
    # Like Llama/Vicuna: plain encoding prepends BOS (the chat template writes its own BOS and
    # apply_chat_template encodes without special tokens, so there is never a double BOS).
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
    )
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        extra_special_tokens=[IMAGE],
        model_max_length=1024,
    )
    hf.chat_template = CHAT_TEMPLATE
    return hf


def heldout_documents(world_dir: str | Path, context: str = "none") -> dict[str, list[str]]:
    """The held-out questions with their answers in chat form (`context` where the image goes), by category."""
    root = Path(world_dir)
    questions = root / "eval" / "questions.jsonl"
    if not questions.exists():
        raise FileNotFoundError(f"{questions} not found: write the world with `decovlm world`")
    out: dict[str, list[str]] = {}
    eval_contexts = _scene_contexts(root, "eval", context)
    for n, line in enumerate(questions.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                q = json.loads(line)
                ctx = eval_contexts.get(q.get("scene_id"))
                turn = (f"{IMAGE}\n{q['text']}" if ctx is not None else q["text"], q["answer"])
                out.setdefault(str(q.get("category")), []).append(chat_text([turn], context=ctx))
            except (json.JSONDecodeError, KeyError) as err:
                raise ValueError(
                    f"{questions}: line {n} is not a question record ({err})"
                ) from None
    return out
