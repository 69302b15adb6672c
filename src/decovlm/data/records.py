"""Read LLaVA conversation JSON and validate records cheaply, up front, with skip-and-count.

The files are LLaVA's `blip_laion_cc_sbu_558k.json` (align) and `llava_v1_5_mix665k.json`
(finetune): a JSON list of `{"id", "image"?, "conversations": [{"from", "value"}, ...]}`.
Everything that can be checked without opening an image is checked here, once, so a bad record
never crashes a run hours in; images are checked lazily by the dataset (`dataset.py`).

Decisions (documented in docs and tests):
- Roles: `human`/`user` and `gpt`/`assistant`; a conversation must start with a human turn,
  alternate strictly and end with an assistant turn (a trailing question supervises nothing).
- `<image>` tags: a record with an `image` key must have exactly one tag, in a human turn. A
  record with an `image` key and *no* tag gets one inserted at the start of its first human
  turn (LLaVA's data has such records and LLaVA's own loader moves every tag to the front).
  More than one tag, a tag in an assistant turn, or a tag without an `image` key is a bad record.
  Like LLaVA, the tag is moved to the front of its turn: `"<image>\\n" + rest of the text`.
- A bad record is skipped and counted in a `SkipLog` (reason, id, position in the file), once per
  record: two bad records sharing an id are two skips. A JSONL line that is not valid JSON is a
  bad record like any other. `strict=True` raises a `UserError` naming the record instead.
- A file that is missing, not UTF-8, or (for .json) not valid JSON is a `UserError` naming the
  file (and line and column).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from decovlm.errors import MissingFileError, UserError
from decovlm.utils.io import append_jsonl, json_error, jsonl_lines, read_text

IMAGE_TAG = "<image>"
HUMAN_ROLES = {"human", "user"}
ASSISTANT_ROLES = {"gpt", "assistant"}


class BadRecord(ValueError):
    """A record that cannot be trained on; `.record_id` and `.reason` say which and why."""

    def __init__(self, record_id: str, reason: str, index: int | None = None):
        super().__init__(f"record {record_id!r}: {reason}")
        self.record_id = record_id
        self.reason = reason
        self.index = index  # position in the file (0-based), so records sharing an id stay apart


@dataclass
class Turn:
    role: str  # "user" | "assistant"
    text: str


@dataclass
class Record:
    """One validated conversation; `image` is a path relative to the image root, or None."""

    id: str
    image: str | None
    turns: list[Turn]
    index: int | None = None  # position in the data file (0-based)

    @property
    def has_image(self) -> bool:
        return self.image is not None


@dataclass
class SkipLog:
    """Counts skipped records by reason; optionally appends each skip to a JSONL file.

    The JSONL file is shared by dataloader workers and ranks (each appends one line per skip),
    so the end-of-run report sees every skip whichever process found it.
    """

    path: Path | None = None
    counts: dict[str, int] = field(default_factory=dict)
    first_ids: list[str] = field(default_factory=list)
    max_ids: int = 20

    def add(
        self, record_id: str, reason: str, stage: str = "load", index: int | None = None
    ) -> None:
        key = reason.split(":", 1)[0]
        self.counts[key] = self.counts.get(key, 0) + 1
        if len(self.first_ids) < self.max_ids:
            self.first_ids.append(record_id)
        if self.path is not None:
            line = {"id": record_id, "reason": reason, "stage": stage}
            if index is not None:
                line["index"] = index
            append_jsonl(self.path, line)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def load_records(
    path: str | Path,
    strict: bool = False,
    skip_log: SkipLog | None = None,
    limit: int | None = None,
) -> list[Record]:
    """Read and validate a LLaVA conversation JSON (a list) or JSONL file."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"data file not found: {path}")
    text = read_text(path, "the LLaVA conversation data (data.path)")
    skip_log = skip_log if skip_log is not None else SkipLog()
    raw: list[Any] = []
    if path.suffix == ".jsonl":
        for n, line in enumerate(jsonl_lines(text), 1):
            if line.strip():
                try:
                    raw.append(json.loads(line))
                except (json.JSONDecodeError, RecursionError) as err:
                    # a bad line is a bad record: counted, named by its line, never fatal
                    raw.append(_BadLine(_line_error(path, n, err)))
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(json_error(path, err)) from None
        except RecursionError:
            raise UserError(f"{path}: JSON nested too deeply") from None
    if not isinstance(raw, list):
        raise UserError(f"{path}: expected a JSON list of records, got {type(raw).__name__}")
    records: list[Record] = []
    for index, item in enumerate(raw):
        if limit is not None and len(records) >= limit:
            break
        try:
            records.append(parse_record(item, index))
        except BadRecord as err:
            if strict:
                raise UserError(
                    f"{path}: {err} (data.strict=true stops at the first bad record)"
                ) from None
            skip_log.add(err.record_id, err.reason, stage="validate", index=index)
    return records


class _BadLine(str):
    """A JSONL line that did not parse (its error message); `parse_record` turns it into a BadRecord."""


def _line_error(path: Path, line: int, err: Exception) -> str:
    if isinstance(err, json.JSONDecodeError):
        return f"bad JSON: line {line} column {err.colno} of {path.name}: {err.msg}"
    return f"bad JSON: line {line} of {path.name}: nested too deeply"


def parse_record(item: Any, index: int) -> Record:
    """Validate one raw record and normalise its turns (roles, `<image>` placement)."""
    if isinstance(item, _BadLine):
        raise BadRecord(f"#{index}", str(item), index)
    if not isinstance(item, dict):
        raise BadRecord(
            f"#{index}", f"bad structure: record is a {type(item).__name__}, not an object"
        )
    # A missing or empty id is named by the record's position, so every error names a record.
    record_id = str(item["id"]) if item.get("id") not in (None, "") else f"#{index}"
    image = item.get("image")
    if image is not None and (not isinstance(image, str) or not image):
        raise BadRecord(
            record_id, f"bad structure: 'image' must be a non-empty string, got {image!r}"
        )
    convs = item.get("conversations")
    if not isinstance(convs, list) or not convs:
        raise BadRecord(record_id, "empty conversation: 'conversations' is missing or empty")
    turns: list[Turn] = []
    for n, conv in enumerate(convs):
        if not isinstance(conv, dict) or not isinstance(conv.get("value"), str):
            raise BadRecord(record_id, f"bad structure: turn {n} needs a string 'value'")
        role = str(conv.get("from", "")).lower()
        if role in HUMAN_ROLES:
            role = "user"
        elif role in ASSISTANT_ROLES:
            role = "assistant"
        else:
            raise BadRecord(
                record_id, f"roles out of order: unknown role {conv.get('from')!r} in turn {n}"
            )
        expected = "user" if n % 2 == 0 else "assistant"
        if role != expected:
            raise BadRecord(
                record_id, f"roles out of order: turn {n} is {role}, expected {expected}"
            )
        turns.append(Turn(role, conv["value"]))
    if turns[-1].role != "assistant":
        raise BadRecord(record_id, "roles out of order: the conversation ends with a user turn")
    _place_image_tag(record_id, image, turns)
    return Record(record_id, image, turns, index)


def _place_image_tag(record_id: str, image: str | None, turns: list[Turn]) -> None:
    counts = [t.text.count(IMAGE_TAG) for t in turns]
    total = sum(counts)
    if image is None:
        if total:
            raise BadRecord(record_id, f"image tags: {total} <image> tag(s) but no 'image' key")
        return
    if total > 1:
        raise BadRecord(record_id, f"image tags: {total} <image> tags, expected one")
    if any(c for t, c in zip(turns, counts) if t.role == "assistant"):
        raise BadRecord(record_id, "image tags: <image> tag in an assistant turn")
    # Move the tag (or insert it when absent) to the front of its human turn, as LLaVA does.
    target = next((t for t, c in zip(turns, counts) if c), turns[0])
    rest = target.text.replace(IMAGE_TAG, "").strip()
    target.text = f"{IMAGE_TAG}\n{rest}" if rest else IMAGE_TAG


def estimate_length(record: Record, num_image_tokens: int) -> int:
    """A cheap token-count estimate for length-grouped batching (no tokenizer call).

    Like LLaVA's `lengths`, it counts whitespace words (x1.3 for sub-word splits) plus the
    image tokens; tokenizing 665K records up front would take minutes for a sort key.
    """
    words = sum(len(t.text.replace(IMAGE_TAG, " ").split()) for t in record.turns)
    return int(words * 1.3) + (num_image_tokens if record.has_image else 0) + 2 * len(record.turns)
