"""The chat templates a decovlm model can be prompted with, and the one way text becomes token ids.

Templates are Jinja, rendered by the tokenizer's `apply_chat_template` (HF's convention: messages
with `role` and `content`, `add_generation_prompt`). The built-ins are:

- `vicuna_v1` (LLaVA-1.5 / Vicuna): `SYSTEM USER: q ASSISTANT: a</s>USER: q2 ASSISTANT:`;
- `plain` (LLaVA's align stage): `<image>` then the caption + eos; the question is dropped, as in
  training, so an align-stage model is asked exactly what it learnt;
- `tokenizer`: the tokenizer's own template (Qwen, Llama-3, Phi-3...).

The processor saves the template it holds (`chat_template.jinja`), and training writes the one it
used, so a saved model is prompted as it was trained unless a caller names another explicitly.

`TextEncoder` turns a prompt into ids the way training does: the text is split at `<image>`, each
piece is tokenized on its own (LLaVA's `tokenizer_image_token` does the same) and every tag becomes
M placeholder ids. Training concatenates segments encoded this way, so the ids of a prompt at
inference are, by construction, the ids of the same prompt inside a training sample.
"""

from __future__ import annotations

IMAGE_TAG = "<image>"
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
# Every template name a user can give (training configs, --chat-template); `auto` on the command
# line means "the template saved with the model".
CHAT_TEMPLATES = ("vicuna_v1", "plain", "tokenizer")
TEMPLATE_CHOICES = ("auto", *CHAT_TEMPLATES)

# A message's content as text: a string, or HF's list of {"type": "image"} / {"type": "text"} parts.
_CONTENT = (
    "{%- if m['content'] is string -%}{%- set text = m['content'] -%}"
    "{%- else -%}{%- set parts = namespace(text='') -%}"
    "{%- for p in m['content'] -%}"
    "{%- if p['type'] == 'image' -%}{%- set parts.text = parts.text + '<image>\\n' -%}"
    "{%- else -%}{%- set parts.text = parts.text + p['text'] -%}{%- endif -%}"
    "{%- endfor -%}{%- set text = parts.text -%}{%- endif -%}"
)
BUILTIN_TEMPLATES = {
    "vicuna_v1": (
        "{%- if messages and messages[0]['role'] == 'system' -%}"
        "{%- set system = messages[0]['content'] -%}{%- set turns = messages[1:] -%}"
        "{%- else -%}"
        "{%- set system = '" + VICUNA_SYSTEM.replace("'", "\\'") + "' -%}"
        "{%- set turns = messages -%}"
        "{%- endif -%}"
        "{{ system + ' ' }}"
        "{%- for m in turns -%}"
        + _CONTENT
        + "{%- if m['role'] == 'user' -%}{{ 'USER: ' + text + ' ' }}"
        "{%- else -%}{{ 'ASSISTANT: ' + text | trim + eos_token }}{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ 'ASSISTANT:' }}{%- endif -%}"
    ),
    "plain": (
        "{%- for m in messages -%}" + _CONTENT + "{%- if m['role'] == 'user' -%}"
        "{%- if '<image>' in text -%}{{ '<image>' }}{%- endif -%}"
        "{%- elif m['role'] == 'assistant' -%}{{ text | trim + eos_token }}{%- endif -%}"
        "{%- endfor -%}"
    ),
}


def resolve_chat_template(template: str | None, tokenizer, current: str | None = None) -> str:
    """The Jinja text for a template name (or Jinja given as is).

    None / `auto` -> `current` (the processor's own); `tokenizer` -> the tokenizer's template.
    """
    if template in (None, "", "auto"):
        if current:
            return current
        template = "tokenizer" if getattr(tokenizer, "chat_template", None) else "vicuna_v1"
    if template in BUILTIN_TEMPLATES:
        return BUILTIN_TEMPLATES[template]
    if template == "tokenizer":
        own = getattr(tokenizer, "chat_template", None)
        if not isinstance(own, str) or not own:
            raise ValueError(
                "chat template 'tokenizer': this tokenizer has no chat template; "
                "use 'vicuna_v1' or 'plain'"
            )
        return own
    if "{{" in template or "{%" in template:
        return template
    raise ValueError(
        f"unknown chat template {template!r}; known: {', '.join(TEMPLATE_CHOICES)} (or Jinja text)"
    )


def template_name(template: str | None, tokenizer=None) -> str:
    """The name of a Jinja template: a built-in's, `tokenizer` when it is the tokenizer's, else `custom`."""
    for name, text in BUILTIN_TEMPLATES.items():
        if template == text:
            return name
    if template and template == getattr(tokenizer, "chat_template", None):
        return "tokenizer"
    return "custom"


def split_turns(render, messages: list[dict], add_generation_prompt: bool = False):
    """The rendered conversation cut at its assistant turns: a list of (text, is_assistant).

    `render(messages, add_generation_prompt) -> str`. The text up to assistant turn i with the
    generation prompt and the text up to and including turn i must both be prefixes of the full
    rendering; the characters between them are turn i (its content and the template's end-of-turn
    marker). Training supervises those pieces; inference encodes the same pieces, so a history
    gets the ids it had in training. A template that rewrites history cannot be cut: ValueError.
    """
    full = render(messages, add_generation_prompt)
    pieces: list[tuple[str, bool]] = []
    pos = 0
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        before = render(messages[:i], True)
        upto = render(messages[: i + 1], False)
        if not (full.startswith(before) and full.startswith(upto) and len(before) < len(upto)):
            raise ValueError(
                "the chat template is not prefix-consistent (rendering a conversation prefix is "
                "not a prefix of the full rendering), so assistant turns cannot be found; use "
                "chat template 'vicuna_v1' or a template without history rewriting"
            )
        if len(before) < pos:
            raise ValueError("the chat template renders overlapping assistant turns")
        pieces += [(full[pos : len(before)], False), (full[len(before) : len(upto)], True)]
        pos = len(upto)
    if pos < len(full):
        pieces.append((full[pos:], False))
    return pieces


class TextEncoder:
    """Tokenizes prompt text with one tokenizer's quirks worked out once (see the module docstring)."""

    def __init__(
        self, tokenizer, image_token_id: int, num_image_tokens: int, image_tag: str = IMAGE_TAG
    ):
        self.tokenizer = tokenizer
        self.image_tag = image_tag
        self.image_token_id = int(image_token_id)
        self.num_image_tokens = int(num_image_tokens)
        probe = tokenizer("x").input_ids
        # Prepend BOS only where the tokenizer itself would (Llama yes, Qwen no).
        self.bos_id = (
            probe[0]
            if tokenizer.bos_token_id is not None and probe[:1] == [tokenizer.bos_token_id]
            else None
        )
        # SentencePiece tokenizers prepend a word-start marker to every encode call, which
        # already stands for a leading space; encoding " a" would give two of them.
        first = tokenizer.convert_ids_to_tokens(self._raw("a")[:1])
        self.prefix_space = bool(first) and str(first[0]).startswith("\u2581")

    def _raw(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids if text else []

    def encode_text(self, text: str) -> list[int]:
        """Token ids of plain text (no image tags)."""
        if self.prefix_space and text.startswith(" "):
            text = text[1:]
        return self._raw(text)

    def encode_segment(self, text: str) -> list[int]:
        """Ids of text that may hold `<image>` tags (each becomes M placeholder ids); no BOS."""
        ids: list[int] = []
        for n, part in enumerate(text.split(self.image_tag)):
            if n:
                ids.extend([self.image_token_id] * self.num_image_tokens)
            ids.extend(self.encode_text(part))
        return ids

    def encode_prompt(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """A whole prompt's ids: BOS (where the tokenizer uses one) and the segment."""
        bos = [self.bos_id] if add_special_tokens and self.bos_id is not None else []
        return bos + self.encode_segment(text)
