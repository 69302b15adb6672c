"""Spec strings -> `ProjectorSpec` -> typed projector configs -> modules.

Spec strings follow the DeCo training code and LLaVA (`avgpool2_144`, `qformer2_64`,
`mlp2x_gelu`, ...). Each projector family registers a regular expression that parses its specs
into config fields, the canonical spelling of those fields, and which field is the token count M.
`ProjectorSpec.parse` is the one parser of spec strings in decovlm: a spec is parsed where it
enters (a model config, a training config, a command-line argument) and passed on typed or in
its canonical `str()`; `build_projector` turns a spec plus overrides into a module.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from decovlm.errors import UserError
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
    # The canonical spelling: a format string over the parsed fields, or a function of them.
    canonical: str | Callable[[dict[str, Any]], str] = ""
    # The config field that holds the token count M (None: M follows from the patch grid).
    tokens_field: str | None = None

    def spell(self, values: dict[str, Any]) -> str:
        if callable(self.canonical):
            return self.canonical(values)
        return self.canonical.format(**values)


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
    canonical: str | Callable[[dict[str, Any]], str],
    tokens_field: str | None = None,
) -> None:
    """Called by each family module at import time."""
    config_class.family = name
    module_class.config_class = config_class
    _FAMILIES[name] = Family(
        name, re.compile(pattern), parse, config_class, module_class, examples, syntax,
        canonical, tokens_field,
    )  # fmt: skip


def _load_families() -> None:
    global _loaded
    if not _loaded:
        for module in _FAMILY_MODULES:
            try:
                importlib.import_module(module)
            except ImportError as err:
                # A family that fails to import would make its specs "unknown" without a word.
                raise ImportError(
                    f"projector family module {module} failed to import: {err}"
                ) from err
        _loaded = True


def families() -> dict[str, Family]:
    _load_families()
    return dict(_FAMILIES)


def example_specs() -> list[str]:
    """The specs of the study, in the order `decovlm projectors` lists them."""
    return [spec for fam in families().values() for spec in fam.examples]


@dataclass(frozen=True)
class ProjectorSpec:
    """A parsed projector spec: its family and the config fields the spec string names.

    spec = ProjectorSpec.parse("AvgPool2_144")
    str(spec)             # "avgpool2_144" (canonical: what configs store)
    spec.tokens           # 144
    spec.with_tokens(64)  # avgpool2_64
    """

    family: str
    values: tuple[tuple[str, Any], ...]  # (field, value) pairs, sorted by field

    @classmethod
    def parse(cls, spec: str | ProjectorSpec) -> ProjectorSpec:
        """The spec a string names (a `ProjectorSpec` is returned as it is).

        Raises `UserError` (a ValueError) naming the spec and the known syntaxes.
        """
        if isinstance(spec, ProjectorSpec):
            return spec
        if not isinstance(spec, str) or not spec.strip():
            raise UserError(f"projector spec must be a non-empty string, got {spec!r}")
        name = spec.strip().lower()
        for fam in families().values():
            match = fam.pattern.fullmatch(name)
            if match:
                return cls(fam.name, tuple(sorted(fam.parse(match).items())))
        known = ", ".join(f.syntax for f in families().values())
        raise UserError(f"unknown projector spec {spec!r}; known specs: {known}")

    @property
    def family_info(self) -> Family:
        return families()[self.family]

    @property
    def fields(self) -> dict[str, Any]:
        """The config fields the spec sets (the rest keep their config defaults)."""
        return dict(self.values)

    @property
    def tokens(self) -> int | None:
        """The token count M the spec names, or None where the patch grid sets it (mlp2x_gelu)."""
        fam = self.family_info
        if fam.tokens_field is None:
            return None
        if fam.tokens_field in self.fields:
            return self.fields[fam.tokens_field]
        default = {f.name: f.default for f in fields(fam.config_class)}
        return default[fam.tokens_field]  # e.g. `ldpv2`: MobileVLM-v2's 144

    def with_tokens(self, m: int) -> ProjectorSpec:
        """The same projector with M = `m` tokens (validated by the family's config)."""
        fam = self.family_info
        if fam.tokens_field is None:
            raise UserError(
                f"{self} has no token count of its own (M follows from the patch grid); "
                f"specs with one: {', '.join(f.syntax for f in families().values() if f.tokens_field)}"
            )
        spec = ProjectorSpec(
            self.family, tuple(sorted({**self.fields, fam.tokens_field: m}.items()))
        )
        return ProjectorSpec.parse(str(spec))  # the family's own syntax checks the new value

    def __str__(self) -> str:
        return self.family_info.spell(self.fields)


def make_config(
    spec: str | ProjectorSpec, vision_dim: int, llm_dim: int, **overrides: Any
) -> ProjectorConfig:
    """The typed config a spec names, with `overrides` applied (unknown keys are errors)."""
    parsed = ProjectorSpec.parse(spec)
    return parsed.family_info.config_class.from_dict(
        {**parsed.fields, "vision_dim": vision_dim, "llm_dim": llm_dim, **overrides}
    )


def build_from_config(config: ProjectorConfig) -> Projector:
    fam = families().get(config.family)
    if fam is None:
        raise ValueError(f"no projector family {config.family!r}; known: {sorted(families())}")
    return fam.module_class(config)


def build_projector(
    spec: str | ProjectorSpec, vision_dim: int, llm_dim: int, **overrides: Any
) -> Projector:
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
