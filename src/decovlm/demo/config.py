"""The demo's settings: which projectors, how much world, how many steps (the `default` and `quick` budgets)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field


@dataclass
class Budget:
    """Sizes tuned so the default run fits 15 minutes on 2 CPU cores (`--quick`: 2 minutes).

    Finetune lr 5e-4, not higher: on "What shape is the X object?" alone (800 steps) the model
    read the image at 5e-4 (45.3% vs 24.5% with another scene's image) and not at 2e-3 (28.3 vs
    26.4); the higher rate settles on the answer priors of the text. See docs/world_learnability.md.
    """

    train_scenes: int
    eval_scenes: int
    backbones: str  # prepare_backbones budget
    align_steps: int
    finetune_steps: int
    batch_size: int
    align_lr: float
    finetune_lr: float
    curve_points: int  # evaluations along the finetune stage (convergence)
    curve_questions: int  # held-out questions per convergence point
    eval_questions: int | None  # held-out questions for the final scores (None: all)
    relevance_cases: int
    max_new_tokens: int = 24


BUDGETS = {
    "default": Budget(train_scenes=8000, eval_scenes=60, backbones="default", align_steps=150,
                      finetune_steps=1200, batch_size=16, align_lr=2e-3, finetune_lr=5e-4,
                      curve_points=6, curve_questions=100, eval_questions=None, relevance_cases=24),
    "quick": Budget(train_scenes=150, eval_scenes=12, backbones="quick", align_steps=10,
                    finetune_steps=24, batch_size=8, align_lr=2e-3, finetune_lr=5e-4,
                    curve_points=2, curve_questions=12, eval_questions=40, relevance_cases=4),
}  # fmt: skip


@dataclass
class DemoConfig:
    out_dir: str = "demo_out"
    quick: bool = False
    # The compressed token count M shared by DeCo and the Q-Former (the world's 8x8 = 64 patches -> 16).
    tokens: int = 16
    # Extra projectors beyond the three of the main comparison: "cabstractor", "maxpool", "linear", ...
    extra: list[str] = field(default_factory=list)
    seeds: int = 1
    world_seed: int = 0
    device: str = "auto"
    threads: int | None = None
    budget_overrides: dict = field(default_factory=dict)

    @property
    def budget(self) -> Budget:
        base = BUDGETS["quick" if self.quick else "default"]
        return Budget(**{**asdict(base), **self.budget_overrides})

    @property
    def projectors(self) -> list[str]:
        """Non-compressive, DeCo and Q-Former at the same M, then the requested extras."""
        m = self.tokens
        named = {
            "mlp": "mlp2x_gelu",
            "linear": "linear",
            "avgpool": f"avgpool2_{m}",
            "deco": f"avgpool2_{m}",
            "qformer": f"qformer2_{m}",
            "cabstractor": f"cabstractor_{m}",
            "dabstractor": f"dabstractor_{m}",
            "maxpool": f"maxpool2_{m}",
            "bilinear": f"bilinear2_{m}",
            "resampler": f"resampler2_{m}",
        }
        specs = ["mlp2x_gelu", f"avgpool2_{m}", f"qformer2_{m}"]
        for name in self.extra:
            spec = named.get(name, name)
            if spec not in specs:
                specs.append(spec)
        return specs


def settings_hash(settings: dict) -> str:
    """A short stable hash of the settings that decide an artefact (for the rerun cache)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]
