"""The projector zoo: every projector of the DeCo study behind one interface.

from decovlm.projectors import build_projector
proj = build_projector("avgpool2_144", vision_dim=1024, llm_dim=4096)
tokens = proj(patch_features, grid=(24, 24))   # (B, 576, 1024) -> (B, 144, 4096)
"""

from decovlm.projectors.base import (
    ParamCount,
    Projector,
    ProjectorConfig,
    count_parameters,
    parse_grid,
)
from decovlm.projectors.registry import (
    build_from_config,
    build_projector,
    config_from_dict,
    example_specs,
    families,
    make_config,
    parse_spec,
)

__all__ = [
    "ParamCount",
    "Projector",
    "ProjectorConfig",
    "build_from_config",
    "build_projector",
    "config_from_dict",
    "count_parameters",
    "example_specs",
    "families",
    "make_config",
    "parse_grid",
    "parse_spec",
]
