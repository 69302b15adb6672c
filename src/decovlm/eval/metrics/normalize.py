"""VQA answer normalisation, step for step as the official scorers do it.

The official scorers share the same steps (`clean_whitespace`, `process_punctuation`,
`process_digit_article`); which of them run on which side, and when, differs by scorer and
revision (see `vqa.py`):
- `vqaeval_prediction`: what the 2016 revision of the official VQA `vqaEval.py` did to every
  *prediction*: newlines and tabs to spaces, strip, punctuation, digits/articles/contractions.
  (The current revision does the last two steps only when the annotators disagree.)
- `evalai_normalize`: the EvalAI answer processor (MMF; LLaVA's `m4c_evaluator.py`, lmms-eval's
  TextVQA / VizWiz / OK-VQA), applied to prediction and annotator answers alike. It first runs a
  `word_tokenize` step the official script does not have: lower-case, drop every "," and "?",
  split off "'s".

Quirks of the official code are kept on purpose, so scores stay comparable:
- a period is removed unless a digit follows it ("3.5" survives, "dog." -> "dog"), and at most 32
  of them per answer (the script passes `re.UNICODE`, which is 32, as the `count` argument);
- punctuation next to a space (or anywhere, once the text has a "1,000"-style number) is deleted,
  otherwise it becomes a space ("black-and-white" -> "black and white", "x - y" -> "x  y");
- ":" and "'" are not in the punctuation list: "o'clock" and "5:30" keep them.
"""

from __future__ import annotations

import re

from decovlm.eval.metrics.contractions import CONTRACTIONS

# The official `manualMap`: number words to digits ("none" counts as zero there too).
NUMBER_WORDS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
ARTICLES = frozenset({"a", "an", "the"})
# The official `punct` list, in its order (the order matters when a character is deleted vs spaced).
PUNCTUATION = (
    ";",
    "/",
    "[",
    "]",
    '"',
    "{",
    "}",
    "(",
    ")",
    "=",
    "+",
    "\\",
    "_",
    "-",
    ">",
    "<",
    "@",
    "`",
    ",",
    "?",
    "!",
)
_COMMA_NUMBER = re.compile(r"(\d)(,)(\d)")
_PERIOD = re.compile(r"\.(?!\d)")
_MAX_PERIODS = int(re.UNICODE)  # 32: the official call passes the flag where `count` goes

__all__ = [
    "ARTICLES",
    "CONTRACTIONS",
    "NUMBER_WORDS",
    "PUNCTUATION",
    "clean_whitespace",
    "evalai_normalize",
    "process_digit_article",
    "process_punctuation",
    "vqaeval_prediction",
]


def process_punctuation(text: str) -> str:
    """The official `processPunctuation`: delete or space out punctuation, then drop periods."""
    out = text
    has_number_comma = _COMMA_NUMBER.search(text) is not None
    for p in PUNCTUATION:
        # The test looks at the *input* text, the replacement acts on the running output.
        if (p + " " in text or " " + p in text) or has_number_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD.sub("", out, count=_MAX_PERIODS)


def process_digit_article(text: str) -> str:
    """The official `processDigitArticle`: lower-case, number words -> digits, drop articles, contractions."""
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in ARTICLES]
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def clean_whitespace(text: str) -> str:
    """The official first step on every answer: newlines and tabs to spaces, then stripped."""
    return str(text).replace("\n", " ").replace("\t", " ").strip()


def vqaeval_prediction(answer: str) -> str:
    """A prediction as the 2016 `vqaEval.py` compared it (no lower-casing before punctuation)."""
    return process_digit_article(process_punctuation(clean_whitespace(answer)))


def evalai_normalize(answer: str) -> str:
    """EvalAI's answer processor (LLaVA's m4c evaluator): the form TextVQA-style answers are compared in.

    >>> evalai_normalize("Two.")
    '2'
    >>> evalai_normalize("the Dog")
    'dog'
    """
    # EvalAI's word_tokenize step: commas vanish ("1,000" -> "1000"), "?" too, "'s" split off.
    text = str(answer).lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text))
