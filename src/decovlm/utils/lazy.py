"""Package attributes that load on first access (PEP 562), so importing a package stays cheap."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    namespace: dict[str, Any], exports: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`(__getattr__, __dir__)` for a package whose name `N` is `getattr(import(exports[N]), N)`.

    Use in a package's `__init__`: `__getattr__, __dir__ = lazy_exports(globals(), {...})`. A
    loaded value is cached in the package. An exported name must not also be a sub-module's name
    (importing the sub-module would shadow it).
    """
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
