"""The demo's settings: which projectors, how much world, how many steps (the `default` and `quick` budgets)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field


@dataclass
class Budget:
    """Sizes of a demo run. `default`: 9-11 min on an idle 2-core CPU machine (fresh clone,
    2026-12-06; the old default without shipped backbones took 18-20 min); `--quick`: under a minute.

    Finetune lr 5e-4, not higher: on "What shape is the X object?" alone (800 steps) the model
    read the image at 5e-4 (45.3% vs 24.5% with another scene's image) and not at 2e-3 (28.3 vs
    26.4); the higher rate settles on the answer priors of the text. See docs/world_learnability.md.
    """

    train_scenes: int
    eval_scenes: int
    # "shipped": the pretrained backbones shipped with decovlm (`decovlm.world.pretrain`), as the
    # paper starts from CLIP and Vicuna; or a `world.backbones` budget trained on the demo's world.
    backbones: str
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
    # Questions answered at a time when scoring (sorted by length; finished rows leave the batch).
    eval_batch_size: int = 64
    # Seeds per projector unless --seeds says otherwise.
    seeds: int = 1
    # More projectors of the paper's comparison (short names, see DemoConfig.projectors), and a
    # second token count M at which every compressive projector is trained again (0: none).
    extra: tuple[str, ...] = ()
    second_tokens: int = 0
    # World options: the lattice world (object centres on the patch grid; boxes follow from which
    # patch holds the object, docs/world_learnability.md, sixth round). 0: free placement.
    position_grid: int = 8
    # Boxes on the patch lattice (WorldConfig.box_grid); 0: to the pixel.
    box_grid: int = 8
    # Per-task-group curriculum: > 0 trains a second model per projector from the same aligned
    # projector on box questions alone for this many steps, and scores localization with it. In a
    # mix boxes were never learned; alone they were (53.5% Acc@0.5 at 1,600 steps on the lattice
    # world, docs/world_learnability.md, sixth round). 0: off (localization from the mixed model).
    grounding_steps: int = 0
    # Its learning rate: boxes on the lattice learned at 1e-3 (36.7% Acc@0.5 after 1,200 steps)
    # and slower at 5e-4 (20.0%), docs/world_learnability.md, ninth round.
    grounding_lr: float = 1e-3
    # Held-out questions also asked with another scene's image (the control; None: all). The
    # control only has to show that the image matters, so a subset is enough.
    swapped_questions: int | None = None


BUDGETS = {
    "default": Budget(train_scenes=8000, eval_scenes=1000, backbones="shipped", align_steps=150,
                      finetune_steps=800, batch_size=16, align_lr=2e-3, finetune_lr=5e-4,
                      curve_points=6, curve_questions=200, eval_questions=None, relevance_cases=96,
                      swapped_questions=1000, grounding_steps=1500),
    "quick": Budget(train_scenes=150, eval_scenes=12, backbones="shipped", align_steps=10,
                    finetune_steps=24, batch_size=8, align_lr=2e-3, finetune_lr=5e-4,
                    curve_points=2, curve_questions=12, eval_questions=40, relevance_cases=4),
    # One H100/H200-class GPU (issue 25): the paper's whole comparison (five projectors at M = 16 and
    # again at M = 4), 3 seeds, larger backbones (world budget "gpu"), longer stages, bf16 (the
    # training config uses bf16 on any non-CPU device). The world LM trained ~10x faster there
    # than on 2 CPU cores (70 vs 6.4 steps/s); tiny models are launch-bound on a GPU, so width is
    # nearly free. Not yet run on a GPU: sizes are from the CPU measurements scaled by that ratio
    # (boxes: 1,600 box-only steps learned them on the lattice world, sixth round).
    "gpu": Budget(train_scenes=16000, eval_scenes=200, backbones="shipped", align_steps=300,
                  finetune_steps=3000, batch_size=32, align_lr=2e-3, finetune_lr=5e-4,
                  curve_points=8, curve_questions=200, eval_questions=None, relevance_cases=48,
                  seeds=3, extra=("maxpool", "cabstractor"), second_tokens=4, position_grid=8,
                  grounding_steps=1600),
}  # fmt: skip
# Presets a user may name (`--budget gpu`); "auto" is gpu when CUDA is present, else default.
PRESETS = ("default", "gpu")


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def auto_preset(device: str = "auto") -> str:
    """The preset `--budget auto` means: gpu when the run will use CUDA, else default."""
    if device.startswith("cuda") or (device == "auto" and cuda_available()):
        return "gpu"
    return "default"


@dataclass
class DemoConfig:
    out_dir: str = "demo_out"
    quick: bool = False
    # The compressed token count M shared by DeCo and the Q-Former (the world's 8x8 = 64 patches -> 16).
    tokens: int = 16
    # Extra projectors beyond the three of the main comparison: "cabstractor", "maxpool", "linear", ...
    extra: list[str] = field(default_factory=list)
    seeds: int | None = None  # None: the budget's seeds
    world_seed: int = 0
    device: str = "auto"
    threads: int | None = None
    budget_overrides: dict = field(default_factory=dict)
    # "auto" (gpu when CUDA is present, else default), "default" or "gpu"; --quick wins over it.
    preset: str = "auto"
    # Remake the backbones with the shipped recipe (about half an hour on 2 CPU cores) instead of loading them.
    retrain_backbones: bool = False
    # Runs trained side by side in worker processes (None: one per job, at most two per CPU core; 1 on a GPU; demo.workers).
    workers: int | None = None

    @property
    def preset_name(self) -> str:
        if self.quick:
            return "quick"
        if self.preset == "auto":
            return auto_preset(self.device)
        if self.preset not in BUDGETS:
            raise ValueError(f"budget preset {self.preset!r}: expected auto, {', '.join(PRESETS)}")
        return self.preset

    @property
    def budget(self) -> Budget:
        base = BUDGETS[self.preset_name]
        return Budget(**{**asdict(base), **self.budget_overrides})

    @property
    def n_seeds(self) -> int:
        return self.seeds if self.seeds is not None else self.budget.seeds

    @property
    def projectors(self) -> list[str]:
        """Non-compressive, DeCo and Q-Former at the same M, then the requested extras (canonical
        specs; a short name in `SHORT_NAMES` takes M = `tokens`, a full spec keeps its own)."""
        from decovlm.projectors import ProjectorSpec

        def named(name: str) -> ProjectorSpec:
            if name not in SHORT_NAMES:
                return ProjectorSpec.parse(name)
            spec = ProjectorSpec.parse(SHORT_NAMES[name])
            return spec if spec.tokens is None else spec.with_tokens(self.tokens)

        budget = self.budget
        specs = [named(n) for n in ("mlp", "deco", "qformer")]
        for name in (*budget.extra, *self.extra):
            if (spec := named(name)) not in specs:
                specs.append(spec)
        if budget.second_tokens and budget.second_tokens != self.tokens:
            # Token count as a variable: every compressive projector at M again at the second M.
            for spec in list(specs):
                if spec.tokens == self.tokens:
                    again = spec.with_tokens(budget.second_tokens)
                    if again not in specs:
                        specs.append(again)
        return [str(spec) for spec in specs]


# Short projector names of `--extra` and the budgets' `extra` (the token count is replaced by M).
SHORT_NAMES = {
    "mlp": "mlp2x_gelu",
    "linear": "linear",
    "avgpool": "avgpool2_16",
    "deco": "avgpool2_16",
    "qformer": "qformer2_16",
    "cabstractor": "cabstractor_16",
    "dabstractor": "dabstractor_16",
    "maxpool": "maxpool2_16",
    "bilinear": "bilinear2_16",
    "resampler": "resampler2_16",
}


def settings_hash(settings: dict) -> str:
    """A short stable hash of the settings that decide an artefact (for the rerun cache)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]


def read_stamped(path, stamp: str) -> dict | None:
    """The JSON at `path` when it exists and carries `stamp` (made with the same settings), else None."""
    from pathlib import Path

    from decovlm.utils.io import read_json

    if not Path(path).exists():
        return None
    data = read_json(path)
    return data if data.get("stamp") == stamp else None
