"""Spec strings -> typed projector configs -> modules.

Spec strings follow the DeCo training code and LLaVA (`avgpool2_144`, `qformer2_64`,
`mlp2x_gelu`, ...). Each projector family registers a regular expression that parses its specs
into config fields; `build_projector` turns a spec plus overrides into a module.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from decovlm.projectors.base import Projector, ProjectorConfig

# Family modules are imported on first use so that `registry` has no import cycle with them.
_FAMILY_MODULES = (
    "decovlm.projectors.mlp",
    "decovlm.projectors.pooling",
    "decovlm.projectors.qformer",
    "decovlm.projectors.cabstractor",
    "decovlm.projectors.dabstractor",
    "decovlm.projectors.resampler",
    "decovlm.projectors.ldp",
    "decovlm.projectors.pixelshuffle",
)


@dataclass
class Family:
    name: str
    pattern: re.Pattern[str]
    parse: Callable[[re.Match[str]], dict[str, Any]]
    config_class: type[ProjectorConfig]
    module_class: type[Projector]
    examples: list[str] = field(default_factory=list)
    syntax: str = ""


_FAMILIES: dict[str, Family] = {}
_loaded = False


def register(
    name: str,
    pattern: str,
    parse: Callable[[re.Match[str]], dict[str, Any]],
    config_class: type[ProjectorConfig],
    module_class: type[Projector],
    examples: list[str],
    syntax: str,
) -> None:
    """Called by each family module at import time."""
    config_class.family = name
    module_class.config_class = config_class
    _FAMILIES[name] = Family(
        name, re.compile(pattern), parse, config_class, module_class, examples, syntax
    )


def _load_families() -> None:
    global _loaded
    if not _loaded:
        for module in _FAMILY_MODULES:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as err:
                # A family still being written is simply absent; any other import error surfaces.
                if err.name != module:
                    raise
        _loaded = True


def families() -> dict[str, Family]:
    _load_families()
    return dict(_FAMILIES)


def example_specs() -> list[str]:
    """The specs of the study, in the order `decovlm projectors` lists them."""
    return [spec for fam in families().values() for spec in fam.examples]


def _strip_stage_prefix(spec: str) -> str:
    # The DeCo fork prefixes `no-align+` to mean "skip the align stage"; that is a training
    # choice (see `decovlm.train`), not part of the projector.
    return spec.split("+", 1)[1] if spec.startswith("no-align+") else spec


def parse_spec(spec: str) -> tuple[Family, dict[str, Any]]:
    """Return the family and config fields that a spec string names."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"projector spec must be a non-empty string, got {spec!r}")
    name = _strip_stage_prefix(spec.strip().lower())
    for fam in families().values():
        match = fam.pattern.fullmatch(name)
        if match:
            return fam, fam.parse(match)
    known = ", ".join(f"{f.syntax}" for f in families().values())
    raise ValueError(f"unknown projector spec {spec!r}; known specs: {known}")


def make_config(spec: str, vision_dim: int, llm_dim: int, **overrides: Any) -> ProjectorConfig:
    """The typed config a spec names, with `overrides` applied (unknown keys are errors)."""
    fam, fields_from_spec = parse_spec(spec)
    return fam.config_class.from_dict(
        {**fields_from_spec, "vision_dim": vision_dim, "llm_dim": llm_dim, **overrides}
    )


def build_from_config(config: ProjectorConfig) -> Projector:
    fam = families().get(config.family)
    if fam is None:
        raise ValueError(f"no projector family {config.family!r}; known: {sorted(families())}")
    return fam.module_class(config)


def build_projector(spec: str, vision_dim: int, llm_dim: int, **overrides: Any) -> Projector:
    """Build the projector a spec names, e.g. `build_projector("avgpool2_144", 1024, 4096)`.

    `overrides` set typed config fields (e.g. `hidden_size=768` for a Q-Former, or
    `input_grid=(24, 24)` to validate M against N at build time).
    """
    return build_from_config(make_config(spec, vision_dim, llm_dim, **overrides))


def config_from_dict(data: dict[str, Any]) -> ProjectorConfig:
    """Inverse of `ProjectorConfig.to_dict` (used when a saved model is loaded)."""
    data = dict(data)
    family = data.pop("family", None)
    fam = families().get(family)
    if fam is None:
        raise ValueError(
            f"saved projector config names unknown family {family!r}; known: {sorted(families())}"
        )
    return fam.config_class.from_dict(data)
