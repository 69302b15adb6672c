"""File reading and writing that survives crashes and names the file when its content is bad.

- Atomic writes (`atomic_path`, `atomic_write_text`, `atomic_write_json`): a crash mid-write never
  leaves a half-written result or checkpoint behind.
- The one JSONL writer (`json_line`, `append_jsonl`): each record is one `write` on an O_APPEND
  file under an exclusive lock, fsynced. A crash mid-append (power loss, full disk) can still
  leave a torn last line; the next append first cuts the file back to its last newline, so the
  new record never glues onto the fragment.
- Readers (`read_text`, `read_json`, `read_jsonl`) raise `UserError`s naming the file, and for
  JSON the line and column, instead of UnicodeDecodeError / JSONDecodeError.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike, data: Any, indent: int = 2) -> None:
    atomic_write_text(path, json.dumps(data, indent=indent, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    # numpy scalars/arrays and paths show up in metric dicts; make them plain JSON.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def read_text(path: str | os.PathLike, what: str = "") -> str:
    """A UTF-8 text file's content; a missing or non-UTF-8 file is a UserError naming it."""
    from decovlm.errors import MissingFileError, UserError

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path} not found{': ' + what if what else ''}")
    try:
        # bytes, then decode: text mode would turn a lone \r into a line break (JSONL splits on \n)
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(
            f"{path}: not UTF-8 text (byte {err.start}: {err.reason}); save it as UTF-8"
        ) from None


def json_error(path: str | os.PathLike, err: json.JSONDecodeError, line: int | None = None) -> str:
    """'<path>: not valid JSON: <what> at line L column C' (line = the JSONL line, if given)."""
    where = f"line {line if line is not None else err.lineno} column {err.colno}"
    # json's messages either end in "at" ("Unterminated string starting at") or not
    msg = err.msg if err.msg.endswith(" at") else f"{err.msg} at"
    return f"{path}: not valid JSON: {msg} {where}"


def read_json(path: str | os.PathLike, hint: str = "") -> Any:
    """Parse a JSON file; a missing or broken file raises a UserError that names it (and `hint`)."""
    from decovlm.errors import UserError

    text = read_text(path, hint)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(json_error(path, err)) from None
    except RecursionError:
        raise UserError(f"{path}: JSON nested too deeply") from None


def json_line(record: Any) -> str:
    """`record` as one JSON line (numpy values and paths made plain), newline included."""
    return json.dumps(record, default=_json_default) + "\n"


def append_jsonl(path: str | os.PathLike, record: Any) -> None:
    """Append one JSON line and fsync it, so partial results survive a crash.

    A torn last line left by an earlier crash is cut off first (under the lock, so concurrent
    appenders from dataloader workers or ranks never cut each other's lines).
    """
    append_jsonl_many(path, [record])


def append_jsonl_many(path: str | os.PathLike, records: list[Any]) -> None:
    """Append several JSON lines in one write and one fsync (a batch of answers), as `append_jsonl`."""
    if not records:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json_line(r) for r in records).encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        _lock(fd)
        repair_torn_tail(fd)
        os.write(fd, data)  # one write on an O_APPEND file: lines from processes never interleave
        os.fsync(fd)
    finally:
        os.close(fd)  # closing releases the lock


def _lock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; single-process appends stay correct
        return
    fcntl.flock(fd, fcntl.LOCK_EX)


def repair_torn_tail(fd: int) -> int:
    """Truncate the open file `fd` after its last newline if it does not end with one (a torn
    append); returns the number of bytes removed. A last line that is complete JSON and lacks
    only its newline gets the newline instead (readers already counted it)."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return 0
    end, chunk = size, 1 << 16
    while end > 0:
        start = max(0, end - chunk)
        block = os.pread(fd, end - start, start)
        cut = block.rfind(b"\n")
        if cut >= 0:
            keep = start + cut + 1
            break
        end = start
    else:
        keep = 0
    fragment = os.pread(fd, size - keep, keep)
    try:  # a record torn just before its newline is whole: keep it, add the newline
        json.loads(fragment)
        os.write(fd, b"\n")
        os.fsync(fd)
        return 0
    except ValueError:
        pass
    os.ftruncate(fd, keep)
    os.fsync(fd)
    return size - keep


def jsonl_lines(text: str) -> list[str]:
    """The lines of a JSONL text: split on newline only (str.splitlines also splits on \\x1e,
    \\x85 or U+2028, which may occur inside a JSON string), a trailing \\r dropped."""
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a JSONL file; a truncated last line (a crash mid-append) is dropped, any other bad line
    raises a UserError naming the file, line and column."""
    from decovlm.errors import UserError

    path = Path(path)
    if not path.exists():
        return []
    lines = jsonl_lines(read_text(path))
    while lines and not lines[-1].strip():
        lines.pop()
    records = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if i == len(lines):
                break
            raise UserError(json_error(path, err, line=i)) from None
    return records
