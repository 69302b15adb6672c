"""EvalAI / official-VQA answer normalisation: punctuation, number words, articles, contractions.

Behaviour follows the official VQA evaluation and the EvalAI answer processor that LLaVA and
lmms-eval use for TextVQA / VizWiz / OK-VQA, including two well-known quirks we keep on purpose
so scores stay comparable:
- a period is removed unless a digit follows it ("3.5" survives, "dog." -> "dog");
- punctuation next to a space (or anywhere, once the text has a "1,000"-style number) is deleted,
  otherwise it becomes a space ("black-and-white" -> "black and white", "x - y" -> "x  y").
"""

from __future__ import annotations

import re

# Number words the official script maps to digits ("none" counts as zero there too).
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

# Canonical contractions; the official map sends each apostrophe-less spelling (and, for the
# double ones, each spelling missing one apostrophe) to the canonical form.
_CONTRACTIONS = [
    "ain't",
    "aren't",
    "can't",
    "could've",
    "couldn't",
    "couldn't've",
    "didn't",
    "doesn't",
    "don't",
    "hadn't",
    "hadn't've",
    "hasn't",
    "haven't",
    "he'd",
    "he'd've",
    "he's",
    "how'd",
    "how'll",
    "how's",
    "isn't",
    "it'd",
    "it'd've",
    "it'll",
    "let's",
    "ma'am",
    "mightn't",
    "mightn't've",
    "might've",
    "mustn't",
    "must've",
    "needn't",
    "not've",
    "o'clock",
    "oughtn't",
    "'ow's'at",
    "shan't",
    "she'd've",
    "she's",
    "should've",
    "shouldn't",
    "shouldn't've",
    "somebody'd've",
    "somebody'll",
    "somebody's",
    "someone'd",
    "someone'd've",
    "someone'll",
    "someone's",
    "something'd",
    "something'd've",
    "something'll",
    "that's",
    "there'd",
    "there'd've",
    "there're",
    "there's",
    "they'd",
    "they'd've",
    "they'll",
    "they're",
    "they've",
    "'twas",
    "wasn't",
    "we'd've",
    "we've",
    "weren't",
    "what'll",
    "what're",
    "what's",
    "what've",
    "when's",
    "where'd",
    "where's",
    "where've",
    "who'd",
    "who'd've",
    "who'll",
    "who's",
    "who've",
    "why'll",
    "why're",
    "why's",
    "won't",
    "would've",
    "wouldn't",
    "wouldn't've",
    "y'all",
    "y'all'll",
    "y'all'd've",
    "you'd",
    "you'd've",
    "you'll",
    "you're",
    "you've",
]


def _contraction_map() -> dict[str, str]:
    mapping: dict[str, str] = {}
    for word in _CONTRACTIONS:
        positions = [i for i, ch in enumerate(word) if ch == "'"]
        mapping.setdefault(word.replace("'", ""), word)
        if len(positions) > 1:  # e.g. "couldnt've" and "couldn'tve"
            for keep in positions:
                variant = "".join(ch for i, ch in enumerate(word) if ch != "'" or i == keep)
                mapping.setdefault(variant, word)
    for word in _CONTRACTIONS:
        mapping.pop(word, None)  # an already-canonical spelling maps to itself
    return mapping


CONTRACTIONS = _contraction_map()
_COMMA_NUMBER = re.compile(r"(\d)(,)(\d)")
_PERIOD = re.compile(r"\.(?!\d)")


def process_punctuation(text: str) -> str:
    """The official `processPunctuation`: delete or space out punctuation, then drop periods."""
    out = text
    has_number_comma = _COMMA_NUMBER.search(text) is not None
    for p in PUNCTUATION:
        if (p + " " in text or " " + p in text) or has_number_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD.sub("", out)


def process_digit_article(text: str) -> str:
    """The official `processDigitArticle`: lower-case, number words -> digits, drop articles, fix contractions."""
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in ARTICLES]
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def evalai_normalize(answer: str) -> str:
    """EvalAI's answer processor (as in LLaVA's m4c evaluator): the form VQA answers are compared in.

    >>> evalai_normalize("Two.")
    '2'
    >>> evalai_normalize("the Dog")
    'dog'
    """
    text = str(answer).lower().replace("\n", " ").replace("\t", " ")
    # EvalAI's word_tokenize step: commas vanish ("1,000" -> "1000"), "?" too, "'s" split off.
    text = text.replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = process_punctuation(text)
    return process_digit_article(text)
