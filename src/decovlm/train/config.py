"""Typed training config (model / data / training sections), YAML presets and dotted overrides.

    cfg = load_config("vicuna7b_align", ["model.projector=avgpool2_144", "training.output_dir=runs/a"])

A preset is a YAML file under `decovlm/train/presets/` (by name) or any path. A preset may name
another with `inherit: NAME` and only list what differs, so each projector of the study is a
one-line override of a per-stage base. Unknown keys are errors naming the key and the known keys;
values are coerced to the field's type (`training.learning_rate=1e-3` is a float).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from decovlm.projectors.registry import ProjectorSpec

PRESET_DIR = Path(__file__).parent / "presets"
STAGES = ("align", "finetune", "no-align")
NO_ALIGN_PREFIX = "no-align+"  # the DeCo fork's projector prefix for its one-stage recipe


@dataclass
class TinyModel:
    """A random tiny model built from configs (tests, demo, benchmarks); nothing downloaded."""

    vision: str = "clip"  # clip | siglip
    llm: str = "llama"  # llama | qwen2
    image_size: int = 32
    patch_size: int = 8
    vision_hidden: int = 32
    llm_hidden: int = 48
    seed: int = 0


# The `DecoVLMConfig` fields a training config sets under `model.`, same names; the others come
# from the backbones (vision_config, text_config, tie_word_embeddings) or the tokenizer
# (image_token_id: the id of `image_token`).
MODEL_CONFIG_FIELDS = (
    "projector",
    "projector_kwargs",
    "vision_feature_layer",
    "vision_feature_select",
    "image_resize_mode",
    "image_token",
)


@dataclass
class ModelSection:
    vision: str = "openai/clip-vit-large-patch14-336"
    llm: str = "lmsys/vicuna-7b-v1.5"
    projector: str = "mlp2x_gelu"
    projector_kwargs: dict = field(default_factory=dict)
    vision_feature_layer: int = -2
    vision_feature_select: str = "patch"  # patch: drop the CLS token(s); full: keep them
    image_resize_mode: str = "naive"  # DeCo's code: naive stretch; LLaVA-1.5: pad
    # The placeholder the processor expands to M tokens; added to the tokenizer if missing (an
    # existing token, e.g. Qwen2's "<|image_pad|>", avoids growing the embedding table).
    image_token: str = "<image>"
    attn_implementation: str = "sdpa"
    dtype: str | None = None  # weights dtype at load (None: fp32 master weights for amp)
    # Hub kernels (`kernels` package, fetched from the hub): off, so offline machines train.
    use_kernels: bool = False
    # Start from a saved decovlm model folder instead of vision + llm (e.g. a previous run).
    init_from: str | None = None
    # Use a random tiny model (vision/llm ignored); see TinyModel.
    tiny: TinyModel | None = None


@dataclass
class DataSection:
    path: str = ""  # LLaVA conversation JSON / JSONL
    image_root: str | None = None
    template: str = "vicuna_v1"  # plain | vicuna_v1 | tokenizer
    max_length: int = 2048
    strict: bool = False  # fail at the first bad record instead of skip-and-count
    limit: int | None = None  # use only the first N valid records
    sampler: str = "modality_length"  # random | length | modality_length
    num_workers: int = 0
    # Images with more pixels are skipped as bad records (None: decovlm.utils.images' 64 Mpx
    # default, or DECOVLM_MAX_IMAGE_PIXELS); the header is checked before decoding.
    max_image_pixels: int | None = None
    # The frozen vision tower's patch features, computed once (`decovlm.data.features`) instead of
    # a tower forward per step: None (off), a feature file, or "auto" (computed on first use into
    # DATA_DIR/features/<tower fingerprint>.safetensors and reused by every later run on the same
    # tower; single process only). Exact: the tower is frozen in every stage.
    vision_features: str | None = None


@dataclass
class LoraSection:
    enabled: bool = False
    r: int = 128
    alpha: int = 256
    dropout: float = 0.05
    target_modules: list = field(
        default_factory=lambda: [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ]
    )


@dataclass
class TrainingSection:
    stage: str = "finetune"  # align | finetune | no-align
    output_dir: str = "runs/decovlm"
    projector_path: str | None = None  # finetune: the align stage's projector.safetensors
    num_train_epochs: float = 1.0
    max_steps: int = -1
    learning_rate: float = 2e-5
    global_batch_size: int = 128
    per_device_batch_size: int = 16
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    lr_scheduler: str = "cosine"
    max_grad_norm: float = 1.0
    precision: str = "bf16"  # bf16 | fp16 | fp32
    gradient_checkpointing: bool = True
    logging_steps: int = 10
    save_steps: int = 500
    save_total_limit: int | None = 2
    seed: int = 7
    report_to: list = field(
        default_factory=lambda: ["tensorboard", "wandb"]
    )  # missing ones dropped
    # Engines (decovlm.train.engines): CUDA only; refused with a clear error where they cannot run.
    deepspeed: str | None = None  # a json path or a packaged name (zero2, zero3)
    fsdp: str = ""  # e.g. "full_shard auto_wrap" (FSDP2 where torch has it)
    fsdp_config: str | None = None  # a json path or a packaged name (fsdp_full_shard, ...)
    ddp_find_unused_parameters: bool | None = None  # None: true when text-only records exist
    use_cpu: bool = False
    disable_tqdm: bool = False
    # --resume from a checkpoint without optimizer / scheduler state: refused unless true (the
    # run would go on with a fresh optimizer and schedule and differ from an uninterrupted one)
    resume_without_optimizer: bool = False
    lora: LoraSection = field(default_factory=LoraSection)


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    training: TrainingSection = field(default_factory=TrainingSection)

    def validate(self) -> None:
        """Check every section; a config already validated and unchanged since is not checked again
        (the command line validates before `train()` does)."""
        if getattr(self, "_validated", None) == self.to_dict():
            return
        apply_stage_prefix(self)
        t = self.training
        if t.stage not in STAGES:
            raise ValueError(f"training.stage must be one of {STAGES}, got {t.stage!r}")
        if t.stage == "no-align" and t.projector_path:
            raise ValueError(
                "training.stage 'no-align' trains a fresh projector; drop training.projector_path"
            )
        if t.stage == "finetune" and not (t.projector_path or self.model.init_from):
            raise ValueError(
                "training.stage 'finetune' needs the align stage's projector: set training.projector_path "
                "(a projector.safetensors) or model.init_from; use stage 'no-align' for DeCo's one-stage run"
            )
        if t.precision not in ("bf16", "fp16", "fp32"):
            raise ValueError(f"training.precision must be bf16, fp16 or fp32, got {t.precision!r}")
        if t.global_batch_size <= 0 or t.per_device_batch_size <= 0:
            raise ValueError(
                "training.global_batch_size and per_device_batch_size must be positive"
            )
        if t.deepspeed and t.fsdp:
            raise ValueError(
                "training.deepspeed and training.fsdp are both set: choose one engine "
                "(training.deepspeed=null or training.fsdp='')"
            )
        from decovlm.chat_template import CHAT_TEMPLATES

        if self.data.template not in CHAT_TEMPLATES:
            raise ValueError(
                f"data.template must be one of {', '.join(CHAT_TEMPLATES)}, got {self.data.template!r}"
            )
        if self.data.sampler not in ("random", "length", "modality_length"):
            raise ValueError(
                f"data.sampler must be random, length or modality_length, got {self.data.sampler!r}"
            )
        if not self.data.path:
            raise ValueError("data.path is not set (the LLaVA conversation JSON)")
        # Engine files are resolved now, so a misnamed one fails before any model is loaded.
        from decovlm.train.engine_files import resolve_engine_file

        resolve_engine_file(t.deepspeed, "deepspeed")
        resolve_engine_file(t.fsdp_config, "fsdp_config")
        self._check_projector()
        self._validated = self.to_dict()

    def _check_projector(self) -> None:
        # Check the spec's kwargs now, with stand-in widths, so a bad one is a one-line error
        # before any weights are loaded; the real widths are checked again at build time.
        from decovlm.projectors.registry import make_config

        spec = canonical_projector(self)
        try:
            make_config(spec, 64, 64, **self.model.projector_kwargs)
        except (ValueError, TypeError) as err:
            raise ValueError(f"model.projector={self.model.projector}: {err}") from None

    def check_batch(self) -> None:
        """The global batch is a whole number of per-device batches over the processes torchrun
        starts (WORLD_SIZE): checked before anything is built (after the engine, whose refusal
        says more)."""
        t = self.training
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        step = t.per_device_batch_size * world
        if t.global_batch_size % step:
            raise ValueError(
                f"training.global_batch_size {t.global_batch_size} is not a multiple of "
                f"training.per_device_batch_size {t.per_device_batch_size} x {world} process(es); "
                f"use e.g. training.global_batch_size={step * max(1, round(t.global_batch_size / step))}"
            )

    def check_paths(self) -> None:
        """The files a run reads exist (data, align projector, init_from model): fail before loading."""
        from decovlm.errors import MissingFileError

        data = Path(self.data.path)
        if not data.is_file():
            raise MissingFileError(
                f"data.path: no file {data} (a LLaVA conversation .json list or .jsonl file)"
            )
        t = self.training
        if t.projector_path:
            proj = Path(t.projector_path)
            if not (proj.is_file() or (proj / "projector.safetensors").is_file()):
                raise MissingFileError(
                    f"training.projector_path: no projector weights at {proj} (the align run's "
                    "projector.safetensors, or its output folder)"
                )
        if self.model.init_from:
            from decovlm.modeling.loading import check_model_folder

            check_model_folder(self.model.init_from, "model.init_from")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- building from dicts -----------------------------------------------------------------------
def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Coerce a YAML/command-line value to the annotated type, or raise naming the key."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        is_null = value is None or (isinstance(value, str) and value.lower() in ("none", "null"))
        if is_null and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(errors[0] if errors else f"{key}: cannot be {value!r}")
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if value is True:
            value = {}
        if not isinstance(value, dict):
            raise ValueError(f"{key}: expected a mapping, got {value!r}")
        return _build(tp, value, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ValueError(f"{key}: expected true/false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise ValueError(f"{key}: expected a number, got {value!r}")
        try:
            number = (
                float(value)
                if tp is float
                else int(str(value), 0)
                if isinstance(value, str)
                else value
            )
        except (TypeError, ValueError):
            raise ValueError(f"{key}: expected {tp.__name__}, got {value!r}") from None
        if tp is int and (not isinstance(number, int) or isinstance(number, bool)):
            if isinstance(number, float) and number.is_integer():
                return int(number)
            raise ValueError(f"{key}: expected int, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ValueError(f"{key}: expected a string, got {value!r}")
        return str(value)
    if tp in (list, dict) or origin in (list, dict):
        base = origin or tp
        if isinstance(value, str):
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError:
                raise ValueError(f"{key}: expected a {base.__name__}, got {value!r}") from None
        if base is list and isinstance(value, str):
            value = [value]
        if not isinstance(value, base):
            raise ValueError(f"{key}: expected a {base.__name__}, got {value!r}")
        return value
    return value


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        where = f"section '{prefix}'" if prefix else "the config"
        raise ValueError(
            f"unknown key(s) {[f'{prefix}.{k}' if prefix else k for k in unknown]} in {where}; known keys: {known}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in data.items()}
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    return _build(TrainConfig, data)


# -- presets and overrides ---------------------------------------------------------------------
def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def resolve_preset(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    candidate = PRESET_DIR / f"{name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    from decovlm.errors import MissingFileError

    raise MissingFileError(
        f"no config file or preset {str(name_or_path)!r}; presets: {', '.join(list_presets())}"
    )


def load_yaml_with_inherit(name_or_path: str | Path, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    path = resolve_preset(name_or_path)
    if str(path) in _seen:
        raise ValueError(f"preset inheritance cycle: {' -> '.join((*_seen, str(path)))}")
    from decovlm.utils.io import read_text

    try:
        data = yaml.safe_load(read_text(path)) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({_yaml_problem(err)})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config must be a YAML mapping")
    parent = data.pop("inherit", None)
    if parent is None:
        return data
    parent_path = Path(parent)
    if not parent_path.is_absolute() and (path.parent / parent_path).suffix in (".yaml", ".yml"):
        parent = str(path.parent / parent_path)
    return deep_merge(load_yaml_with_inherit(parent, (*_seen, str(path))), data)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = (
            deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        )
    return out


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` strings (values parsed as YAML) to a nested dict."""
    data = dict(data)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ValueError(f"override {item!r}: {key!r} is not a dotted key like training.seed")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as err:
            raise ValueError(
                f"override {item!r}: the value is not valid YAML ({_yaml_problem(err)})"
            ) from None
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, dict) else {}
            node = node[part]
        node[parts[-1]] = value
    return data


def _yaml_problem(err: yaml.YAMLError) -> str:
    problem = getattr(err, "problem", None) or str(err).split("\n")[0]
    mark = getattr(err, "problem_mark", None)
    return f"{problem} at line {mark.line + 1} column {mark.column + 1}" if mark else str(problem)


def load_config(name_or_path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    data = apply_overrides(load_yaml_with_inherit(name_or_path), overrides or [])
    config = config_from_dict(data)
    # `{projector}` in the canonical spelling and with the prefix: a one-stage run never shares a
    # two-stage run's folder, and `AvgPool2_144` finds the align run of `avgpool2_144`.
    canonical_projector(config)
    return apply_stage_prefix(substitute_projector(config))


def canonical_projector(config: TrainConfig) -> ProjectorSpec:
    """Write `model.projector` in its canonical spelling (the DeCo fork's `no-align+` prefix kept
    for `apply_stage_prefix`) and return the spec; a bad spec raises ValueError naming the key."""
    from decovlm.projectors.registry import ProjectorSpec

    spec = config.model.projector.strip()
    prefix = NO_ALIGN_PREFIX if spec.lower().startswith(NO_ALIGN_PREFIX) else ""
    try:
        parsed = ProjectorSpec.parse(spec[len(prefix) :])
    except ValueError as err:
        raise ValueError(f"model.projector={spec}: {err}") from None
    config.model.projector = prefix + str(parsed)
    return parsed


def apply_stage_prefix(config: TrainConfig) -> TrainConfig:
    """The DeCo fork's `no-align+SPEC` projector selects its one-stage recipe: stage `no-align`.

    The fork runs `--model.arch_specifier no-align+avgpool2_144` with its finetune stage, which
    then trains a fresh projector with the LLM and loads no align checkpoint. So a finetune config
    with the prefix becomes stage `no-align` without the preset's `projector_path`, and the prefix
    leaves the spec (it names no projector). An align config with it is a contradiction.
    """
    spec = config.model.projector.strip()
    if not spec.lower().startswith(NO_ALIGN_PREFIX):
        return config
    t = config.training
    if t.stage == "align":
        raise ValueError(
            f"model.projector {spec!r} means DeCo's one-stage recipe (no align stage) but "
            f"training.stage is 'align'; drop the {NO_ALIGN_PREFIX!r} prefix to align"
        )
    config.model.projector = spec[len(NO_ALIGN_PREFIX) :]
    if t.stage == "finetune":
        t.stage = "no-align"
        t.projector_path = None  # the finetune preset's align hand-off does not apply
    return config


def substitute_projector(config: TrainConfig) -> TrainConfig:
    """`{projector}` in output_dir / projector_path becomes the projector spec, so one preset
    per stage serves every projector and the finetune stage finds its own align run."""
    spec = config.model.projector.replace("/", "_").replace("+", "_")
    t = config.training
    t.output_dir = t.output_dir.replace("{projector}", spec)
    if t.projector_path:
        t.projector_path = t.projector_path.replace("{projector}", spec)
    return config


def dump_config(config: TrainConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
