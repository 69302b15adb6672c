"""The distributed engines' config files (DeepSpeed ZeRO-2/3, FSDP options), shipped in the package.

A preset or an override names one by file name (`zero3`, `zero3.json`) or by path. The packaged
files live in `decovlm/configs/` and are found with `importlib.resources`, so an installed wheel
finds them as well as a source checkout does; a user's own path always wins.
"""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path


def _packaged():
    return files("decovlm").joinpath("configs")


def list_engine_files() -> list[str]:
    """Names of the packaged engine configs (without `.json`)."""
    return sorted(
        p.name[: -len(".json")] for p in _packaged().iterdir() if p.name.endswith(".json")
    )


def resolve_engine_file(value: str | None, what: str) -> str | None:
    """The path of a DeepSpeed / FSDP json given as a path or a packaged name; None when unset.

    `what` is the config key (`deepspeed`, `fsdp_config`), named in the error.
    """
    if not value:
        return None
    path = Path(value).expanduser()
    if path.is_file():
        return str(path)
    name = value[: -len(".json")] if value.endswith(".json") else value
    if "/" not in name and name in list_engine_files():
        # Wheels install as plain files; as_file only copies out of a zip import.
        with as_file(_packaged().joinpath(f"{name}.json")) as real:
            return str(real)
    from decovlm.errors import MissingFileError

    raise MissingFileError(
        f"training.{what}: no file {value!r}; give a path to a JSON file or one of the packaged "
        f"names: {', '.join(list_engine_files())}"
    )
