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

import os


class UserError(ValueError):
    """Bad input the user can fix; the message names the input and what would be valid."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named (or that a named folder must contain) does not exist."""


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
