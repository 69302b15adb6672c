"""The one error type for bad user input, and how the command line reports it.

`UserError` is raised where our own validation finds a problem the user can fix: a missing or
broken file, a bad argument, an unknown projector spec, a bad config value, a malformed record in
strict mode. Its message is one sentence that names the thing (file, record, argument, config key)
and says what would be valid. `decovlm.cli.main` turns it into one line on stderr,

    decovlm eval: error: /data/m is not a folder with a saved decovlm model (no config.json)

and exit code 2 (argparse's code for a usage error). `--debug` or `DECOVLM_DEBUG=1` shows the
traceback instead. Anything else is a bug in decovlm and keeps its traceback.

`UserError` subclasses ValueError, and `MissingFileError` also FileNotFoundError, so code and
tests that catch the built-in types keep working.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager


class UserError(ValueError):
    """Bad input the user can fix; the message names the input and what would be valid."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named (or that a named folder must contain) does not exist."""


class DiskFullError(UserError):
    """A write failed because the disk (or quota) is full; nothing written before it was lost."""


_FULL_ERRNOS = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
# How other writers say it: safetensors' Rust IoError, torch's C++ stream writer.
_FULL_TEXTS = ("no space left on device", "storagefull", "disk quota exceeded")
_STREAM_TEXTS = ("iostream error", "file write failed", "pytorchstreamwriter failed")
_NEARLY_FULL = 64 * 2**20  # bytes: below this a failed stream write is taken for a full disk


def is_disk_full(err: BaseException, folder: str | os.PathLike | None = None) -> bool:
    """Whether `err` is a write that failed for want of space in `folder`.

    An OSError with ENOSPC / EDQUOT, or a message that says so (safetensors' writer); torch's
    checkpoint writer only says `basic_ios::clear: iostream error` or `file write failed`, so
    that counts when `folder`'s file system has (nearly) no space left.
    """
    seen: set[int] = set()
    while err is not None and id(err) not in seen:  # the cause chain: wrappers re-raise
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _FULL_ERRNOS:
            return True
        text = str(err).lower()
        if any(t in text for t in _FULL_TEXTS):
            return True
        if folder is not None and any(t in text for t in _STREAM_TEXTS):
            try:
                return shutil.disk_usage(_existing(folder)).free < _NEARLY_FULL
            except OSError:
                return False
        err = err.__cause__ or err.__context__
    return False


def _existing(folder: str | os.PathLike) -> str:
    path = os.path.abspath(folder)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


@contextmanager
def disk_full_is_a_user_error(folder: str | os.PathLike, rerun: str) -> Iterator[None]:
    """Turn a full disk while writing under `folder` into one line: the folder, that the disk is
    full, and `rerun` (what a rerun does with what was already written)."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as err:
        if not is_disk_full(err, folder):
            raise
        raise DiskFullError(
            f"{folder}: the disk is full (no space left on device); free some space and run the "
            f"same command again: {rerun}"
        ) from err


# Built-in errors that, when they reach the command line, are about a path the user gave (a
# FileNotFoundError from `open`): reported like a UserError. ValueError is *not* in the list:
# our validation raises UserError, and any other ValueError is a bug worth a traceback.
PATH_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def is_user_error(err: BaseException) -> bool:
    return isinstance(err, (UserError, *PATH_ERRORS, UnicodeDecodeError))


def one_line(err: BaseException) -> str:
    """The error's message on one line (newlines and repeated spaces folded)."""
    if isinstance(err, UnicodeDecodeError):
        text = f"a file is not UTF-8 text ({err.reason} at byte {err.start})"
    elif isinstance(err, OSError) and err.filename is not None and err.strerror:
        text = f"{err.filename}: {err.strerror}"
    else:
        text = str(err) or type(err).__name__
    if "Original Traceback" in text:  # re-raised by a DataLoader worker: keep the message only
        last = [line for line in text.splitlines() if line.strip()][-1]
        head, _, rest = last.partition(": ")
        text = rest if rest and head.split(".")[-1] == type(err).__name__ else last
    return " ".join(text.split())


def debug_enabled() -> bool:
    return os.environ.get("DECOVLM_DEBUG", "").strip().lower() not in ("", "0", "false", "no")
