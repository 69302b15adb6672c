"""Registration of "decovlm" with the transformers Auto classes, without importing transformers early.

`import decovlm` must stay cheap (no torch, no transformers), yet after it
`AutoModelForImageTextToText.from_pretrained(saved)` and `AutoProcessor.from_pretrained(saved)`
must load a decovlm model. So registration follows transformers instead of preceding it:

- the config registers when transformers' `configuration_auto` module has been imported (right
  away if it already was, else by a one-shot import hook that runs after that module executes);
- the processor registers the same way after `processing_auto` (AutoProcessor finds a saved
  processor by its class name, before any config exists);
- the model registers when the first `DecoVLMConfig` is made (every Auto* load makes the config
  first), or when `decovlm.modeling` hands out a class.

The model is not registered from an import hook: transformers imports `modeling_auto` from inside
other half-imported modules (`modeling_layers`), where importing the model class could fail.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

CONFIG_AUTO = "transformers.models.auto.configuration_auto"
PROCESSING_AUTO = "transformers.models.auto.processing_auto"
_done: set[str] = set()


def register_config() -> None:
    if "config" in _done:
        return
    from transformers import AutoConfig

    from decovlm.modeling.configuration import DecoVLMConfig

    AutoConfig.register("decovlm", DecoVLMConfig, exist_ok=True)
    _done.add("config")


def register_processor() -> None:
    if "processor" in _done:
        return
    from transformers import AutoProcessor

    from decovlm.modeling.configuration import DecoVLMConfig
    from decovlm.modeling.processing import DecoVLMProcessor

    AutoProcessor.register(DecoVLMConfig, DecoVLMProcessor, exist_ok=True)
    _done.add("processor")


def register_model() -> None:
    if "model" in _done:
        return
    _done.add("model")  # first: importing the model class makes configs (no re-entry)
    try:
        from transformers import AutoModelForImageTextToText

        from decovlm.modeling.configuration import DecoVLMConfig
        from decovlm.modeling.modeling import DecoVLMForConditionalGeneration

        AutoModelForImageTextToText.register(
            DecoVLMConfig, DecoVLMForConditionalGeneration, exist_ok=True
        )
    except BaseException:
        _done.discard("model")
        raise


def register_all() -> None:
    """Register config, model and processor now (idempotent)."""
    register_config()
    register_model()
    register_processor()


def _quietly(register: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        try:
            register()
        except ImportError as err:  # never break the user's transformers import; retried later
            logger.debug("decovlm: deferred Auto registration (%s)", err)

    return run


class _LoaderAfter:
    """Wraps a module's loader so that `callback` runs once the module has executed."""

    def __init__(self, loader: Any, callback: Callable[[], None]):
        self._loader = loader
        self._callback = callback

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        self._callback()

    def __getattr__(self, name: str) -> Any:  # get_source, get_resource_reader, ...
        return getattr(self._loader, name)


class _AfterImport:
    """A one-shot `sys.meta_path` finder: runs `callback` after module `name` is imported."""

    def __init__(self, name: str, callback: Callable[[], None]):
        self.name = name
        self.callback = callback

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        if fullname != self.name:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)  # before searching, so the search does not find us again
        try:
            spec = importlib.util.find_spec(fullname)
        except (ImportError, ValueError):
            return None  # the regular finders report it as they would without us
        if spec is not None and spec.loader is not None:
            spec.loader = _LoaderAfter(spec.loader, self.callback)
        return spec


def after_import(name: str, callback: Callable[[], None]) -> None:
    """Run `callback` now if module `name` is imported, else right after it is."""
    if name in sys.modules:
        callback()
    elif not any(isinstance(f, _AfterImport) and f.name == name for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(name, callback))


def install() -> None:
    """Arrange registration with the Auto classes (called by `import decovlm`; cheap)."""
    after_import(CONFIG_AUTO, _quietly(register_config))
    after_import(PROCESSING_AUTO, _quietly(register_processor))
