"""`decovlm chat`: talk to a saved model about an image in the terminal, the answer streamed token by token.

    decovlm chat --model runs/deco/model --image photo.png
    you> what colour is the star?
    assistant> purple
    you> /image other.png        (switch image; the conversation starts again)
    you> /reset                  (forget the conversation, keep the image)
    you> /quit

Lines are read from standard input, so a conversation can be piped in
(`printf 'what colour?\\n/quit\\n' | decovlm chat ...`). The conversation is formatted by the
processor with the chat template saved with the model, the same prompt training used; one image
per conversation, its tag in the first question, as in LLaVA's data.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from decovlm.cli_args import add_chat_template_argument, add_loading_arguments

HELP = "commands: /image PATH (switch image, new conversation), /reset, /quit"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="a saved decovlm model folder (with its processor)"
    )
    parser.add_argument("--image", default=None, help="image file to talk about (or /image later)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="longest answer, in tokens")
    add_chat_template_argument(parser)
    add_loading_arguments(parser)


class ChatSession:
    """One conversation with a model: the turns so far and the image they are about."""

    def __init__(
        self,
        model,
        processor,
        image=None,
        chat_template: str | None = None,
        max_new_tokens: int = 256,
        out: TextIO | None = None,
    ) -> None:
        if max_new_tokens < 1:
            raise ValueError(f"--max-new-tokens must be >= 1, got {max_new_tokens}")
        self.model, self.processor = model.eval(), processor
        self.chat_template = chat_template
        self.max_new_tokens = max_new_tokens
        self.out = out or sys.stdout
        self.image = image
        self.messages: list[dict] = []

    def set_image(self, image) -> None:
        """Talk about another image (a path or PIL image); the conversation starts again."""
        from decovlm.modeling.processing import load_image

        self.image = load_image(image)
        self.reset()

    def reset(self) -> None:
        self.messages = []

    def prompt(self, question: str) -> str:
        """The prompt text for the conversation so far plus `question`."""
        first = not self.messages
        message = self.processor.question_message(question, self.image is not None and first)
        return self.processor.apply_chat_template(
            [*self.messages, message], chat_template=self.chat_template, add_generation_prompt=True
        )

    def ask(self, question: str) -> str:
        """Answer `question`, streaming the answer to `out`; returns the answer and keeps the turn."""
        from decovlm.eval.generate import greedy_ids

        message = self.processor.question_message(
            question, self.image is not None and not self.messages
        )
        images = [self.image] if self.image is not None else None
        # Encoded turn by turn, as training encodes the same conversation (not the joined text).
        batch = self.processor.apply_chat_template(
            [*self.messages, message],
            chat_template=self.chat_template,
            add_generation_prompt=True,
            tokenize=True,
            images=images,
        )
        tok = self.processor.tokenizer
        streamer = make_streamer(tok, self.out)
        (ids,) = greedy_ids(self.model, tok, batch, self.max_new_tokens, streamer=streamer)
        answer = tok.decode(ids, skip_special_tokens=True).strip()
        self.messages += [message, {"role": "assistant", "content": answer}]
        return answer


def make_streamer(tokenizer, out: TextIO):
    """transformers' `TextStreamer` (new text only, special tokens skipped), writing to `out`."""
    from transformers import TextStreamer

    class _Streamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            out.write(text + ("\n" if stream_end else ""))
            out.flush()

    return _Streamer(tokenizer, skip_prompt=True, skip_special_tokens=True)


def _lines(stream: TextIO, interactive: bool):
    """Input lines: prompted with `input()` on a terminal, read plainly from a pipe."""
    if not interactive:
        yield from stream
        return
    while True:
        try:
            yield input("you> ")
        except EOFError:
            return


def converse(session: ChatSession, lines, out: TextIO, interactive: bool) -> int:
    """Run the command loop over `lines`; returns the number of questions answered."""
    answered = 0
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if line.startswith("/"):
            cmd, _, arg = line.partition(" ")
            if cmd in ("/quit", "/exit"):
                break
            if cmd == "/reset":
                session.reset()
                out.write("(conversation reset)\n")
            elif cmd == "/image" and arg.strip():
                try:
                    session.set_image(arg.strip())
                    out.write(f"(now talking about {arg.strip()}; conversation reset)\n")
                except ValueError as err:  # a bad path keeps the session going
                    out.write(f"error: {err}\n")
            else:
                out.write(HELP + "\n")
            continue
        if not interactive:
            out.write(f"you> {line}\n")
        out.write("assistant> ")
        out.flush()
        try:
            session.ask(line)
        except ValueError as err:
            out.write(f"\nerror: {err}\n")
            continue
        answered += 1
    return answered


def run(args: argparse.Namespace) -> int:
    from decovlm.errors import UserError
    from decovlm.modeling.loading import load_model
    from decovlm.modeling.processing import load_image

    if args.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    image = load_image(args.image) if args.image else None  # a bad image fails before loading
    model, processor = load_model(
        args.model, args.device, args.dtype, args.use_kernels, args.allow_missing_weights
    )
    session = ChatSession(model, processor, image, args.chat_template, args.max_new_tokens)
    interactive = sys.stdin.isatty()
    out = sys.stdout
    what = f"about {args.image}" if args.image else "(no image: /image PATH to add one)"
    out.write(
        f"decovlm chat with {args.model} ({model.config.projector}, template "
        f"{processor.chat_template_name if args.chat_template == 'auto' else args.chat_template}) "
        f"{what}\n{HELP}\n"
    )
    converse(session, _lines(sys.stdin, interactive), out, interactive)
    return 0
