"""The explorer's handlers: answer a question, and show a clicked word's maps in every column.

Plain functions of plain values (no Gradio), so they are unit-tested without a browser; the page
(`decovlm.serve.layout`) only wires them to components. Every handler turns bad input into a
message in the page, never a stack trace.

With two models (`--compare`) a click on a word in either column shows that word in **both**
columns (`select_compare`): the same word of the other model's answer (first case-insensitive
match), both maps on one shared colour scale, and beside each map its numbers (peak patch,
concentration, Query-to-Patch mass, kept share and - for a map that is not evidence - why,
`render.map_numbers`). A Q-Former / resampler word shows GAE and the attention rollout side by
side (`render.word_overlay`); a map flagged unreliable is drawn grey and striped.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from decovlm.serve import render
from decovlm.serve.engine import Explorer

log = logging.getLogger(__name__)

PANEL_KEYS = ("answer", "words", "map", "gallery", "files", "result", "stats", "status")
SELECT_KEYS = ("words", "map", "gallery", "files", "stats", "status")
KEEP_RESULTS = (
    200  # answers whose download folders are kept (a long-running server must not fill the disk)
)
HINT = "Click a word of the answer to see its Text-to-Patch map."


@dataclass
class Result:
    """One answered question: its explanation and where its downloads go (kept in gr.State)."""

    explanation: object
    view: Image.Image  # the image as the model saw it
    owner: list  # HighlightedText span index -> word index (None for the gaps)
    out_dir: Path
    files: list[Path] = field(default_factory=list)  # maps.npz, summary.json


def _prune(out_root: Path, keep: int = KEEP_RESULTS) -> None:
    """Delete the oldest result folders beyond `keep` (their files were already served)."""
    folders = [p for p in out_root.iterdir() if p.is_dir()]
    if len(folders) <= keep:
        return
    folders.sort(key=lambda p: p.stat().st_mtime)
    for old in folders[: len(folders) - keep]:
        shutil.rmtree(old, ignore_errors=True)


def _error(message: str) -> str:
    return f"⚠️ {message}"


def ask(
    explorer: Explorer, image: Image.Image | None, question: str, out_root: str | Path
) -> Iterator[dict]:
    """Stream one model's answer, then explain it. Yields dicts with some of PANEL_KEYS.

    A missing key leaves that output as it is; None clears it. A message for the page is in
    "status" (starting with ⚠️ on error, and then "error" is True).
    """
    if image is None:
        yield dict(status=_error("Upload an image or pick an example first."), error=True)
        return
    try:
        prompt = explorer.format_prompt(question)
    except ValueError as err:
        yield dict(status=_error(str(err)), error=True)
        return
    answer = ""
    if explorer.lock.locked():
        yield dict(answer="", status="Waiting for the model (another request is running)…")
    try:
        with explorer.lock:
            # a new question: clear the previous answer's words, map, gallery and files
            yield dict(
                answer="",
                words=None,
                map=None,
                gallery=None,
                files=None,
                result=None,
                stats="",
                status="Generating…",
            )
            ids: list[int] = []
            for item in explorer.stream_answer(image, prompt):
                if isinstance(item, str):
                    answer = item
                    yield dict(answer=answer, status="Generating…")
                else:
                    ids = item
            if not ids:
                yield dict(
                    answer=answer, status=_error("The model gave an empty answer."), error=True
                )
                return
            yield dict(answer=answer, status="Computing relevance maps…")
            explanation = explorer.explain(image, prompt, ids)
        out_dir = Path(out_root) / uuid.uuid4().hex[:12]
        files = render.write_maps(explanation, out_dir)
        _prune(Path(out_root))
    except (ValueError, FileNotFoundError) as err:
        yield dict(answer=answer, status=_error(str(err)), error=True)
        return
    except Exception as err:  # a model failure: a short message in the page, the trace in the log
        log.exception("serve: %s failed on a request", explorer.name)
        yield dict(
            answer=answer,
            status=_error(f"The model failed: {type(err).__name__}: {err}"),
            error=True,
        )
        return
    spans, owner = render.word_spans(explanation.answer, explanation.words)
    result = Result(explanation, explorer.model_view(image), owner, out_dir, files)
    n = len(explanation.words)
    status = f"{n} word{'s' * (n != 1)}; Query-to-Patch: {explanation.method}. {HINT if n else ''}"
    yield dict(
        answer=explanation.answer,
        words=spans,
        files=[str(p) for p in files],
        result=result,
        status=status,
    )


def select_word(result: Result | None, span_index: int | None) -> dict:
    """The clicked word's map, gallery and files. Returns a dict keyed by SELECT_KEYS (+ "label")."""
    if result is None:
        return {"status": _error("Ask a question first."), "error": True}
    index = _clicked(result, span_index)
    if index is None:
        return {"status": "That is not a word; click a highlighted word."}
    return _word_view(result, index)


def select_compare(results: list[Result | None], source: int, span_index: int | None) -> list[dict]:
    """A click on a word in column `source`: that word's maps in every column, on one scale.

    Returns one dict per column (keys as `select_word`). A column whose answer lacks the word, or
    that has no answer yet, gets a message and keeps its picture.
    """
    if not 0 <= source < len(results):
        raise ValueError(f"column {source} does not exist; there are {len(results)}")
    outs: list[dict] = [{} for _ in results]
    first = results[source]
    if first is None:
        outs[source] = {"status": _error("Ask a question first."), "error": True}
        return outs
    index = _clicked(first, span_index)
    if index is None:
        outs[source] = {"status": "That is not a word; click a highlighted word."}
        return outs
    word = first.explanation.words[index].text
    picks: list[int | None] = []
    for k, result in enumerate(results):
        if k == source:
            picks.append(index)
        elif result is None:
            picks.append(None)
        else:
            try:
                picks.append(result.explanation.word_index(word))
            except ValueError:
                picks.append(None)
    maps = [
        m for r, i in zip(results, picks) if i is not None
        for m in render.shown_maps(r.explanation, i)
    ]  # fmt: skip
    vmax = render.shared_scale(maps) if len(maps) > 1 else None
    for k, (result, pick) in enumerate(zip(results, picks)):
        if pick is not None:
            outs[k] = _word_view(result, pick, vmax)
        elif result is not None:
            outs[k] = {"status": f"'{word}' is not a word of this model's answer.", "stats": ""}
    return outs


def _clicked(result: Result, span_index: int | None) -> int | None:
    owner = result.owner
    if span_index is None or not 0 <= span_index < len(owner) or owner[span_index] is None:
        return None
    return owner[span_index]


def _word_view(result: Result, index: int, vmax: float | None = None) -> dict:
    """Map (on 0..vmax, or its own max), gallery, files, numbers and status of word `index`."""
    exp = result.explanation
    try:
        overlay = render.word_overlay(exp, index, result.view, vmax=vmax)
        gallery = render.query_gallery(exp, index, result.view)
        word_files = render.write_word_files(exp, index, result.view, overlay, result.out_dir)
    except Exception as err:
        log.exception("serve: drawing the maps of word %s failed", index)
        return {
            "status": _error(f"Could not draw the maps: {type(err).__name__}: {err}"),
            "error": True,
        }
    word = exp.words[index].text
    spans, _ = render.word_spans(exp.answer, exp.words, selected=index)
    scale = "shared scale" if vmax is not None else "own scale"
    shown = render.shown_methods(exp)
    methods = f", {' | '.join(shown)}" if len(shown) > 1 else ""
    flagged = " — NOT EVIDENCE (see below)" if exp.unreliable[index] else ""
    return {
        "words": spans,
        "map": overlay,
        "label": f"Text-to-Patch of '{word}' ({scale}{methods}){flagged}",
        "gallery": gallery,
        "gallery_label": render.gallery_label(exp, index),
        "files": [str(p) for p in [*word_files, *result.files]],
        "status": f"Showing '{word}' (word {index + 1} of {len(exp.words)}). Query-to-Patch: the "
        f"{len(gallery)} of {exp.text_to_query.shape[1]} visual tokens it relies on most, with their "
        "share of its Text-to-Query relevance.",
        "stats": render.map_numbers(exp, index, vmax),
        "word": word,
    }
