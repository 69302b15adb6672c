"""The projector zoo: every projector of the DeCo study behind one interface.

from decovlm.projectors import build_projector
proj = build_projector("avgpool2_144", vision_dim=1024, llm_dim=4096)
tokens = proj(patch_features, grid=(24, 24))   # (B, 576, 1024) -> (B, 144, 4096)
ProjectorSpec.parse("AvgPool2_144").with_tokens(64)  # avgpool2_64: the one parser of spec strings
"""

from decovlm.projectors.base import (
    ParamCount,
    Projector,
    ProjectorConfig,
    count_parameters,
    parse_grid,
)
from decovlm.projectors.registry import (
    ProjectorSpec,
    build_from_config,
    build_projector,
    config_from_dict,
    example_specs,
    families,
    make_config,
)

__all__ = [
    "ParamCount",
    "Projector",
    "ProjectorConfig",
    "ProjectorSpec",
    "build_from_config",
    "build_projector",
    "config_from_dict",
    "count_parameters",
    "example_specs",
    "families",
    "make_config",
    "parse_grid",
]
