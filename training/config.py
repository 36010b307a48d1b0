"""Experiment configuration: YAML -> typed dataclasses -> `key=value` overrides -> resolved YAML.

Config flows one way. `load_config(path, overrides)` reads one YAML file per experiment,
applies command-line overrides addressed by dotted paths (`optim.lr=0.01`, `epochs=3`,
`augment.0.kwargs.degrees=5`, `model.kwargs.hidden_sizes=[512,256]`), turns the result into
the dataclasses below and validates it. Unknown keys are errors that list the valid keys, so
a typo never silently trains with a default. Values are parsed with `yaml.safe_load`, except
for text fields (`version=1.10` stays the string "1.10", not the float 1.1).

Fields left `None` in `input` (size, channels, mean, std) and `task` come from the dataset's
`Splits`; the engine fills them in and writes the resolved config into the run folder.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TASKS = ("classification", "segmentation")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "step", "cosine", "plateau", "onecycle")
LOSSES = ("ce", "dice", "ce_dice")
AMP_MODES = ("none", "bf16", "fp16")
RESIZE_POLICIES = ("stretch", "letterbox", "center_crop")


@dataclass
class DataConfig:
    """Which dataset (a `training.data.build_splits` name) and how to load it."""

    name: str
    root: str = "data"
    download: bool = False
    seed: int = 0  # the split (which items are val/test), generated scenes; not `seed`
    options: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 64
    eval_batch_size: int | None = None  # None: twice batch_size (no gradients to keep)
    num_workers: int | None = None  # None: chosen for the machine (see training.runtime)
    limit: int | None = None  # keep at most this many items per split (smoke tests)


@dataclass
class ModelConfig:
    """`model_src.build_model(arch, **kwargs)`; in_channels, num_classes and input_size are
    filled in from the data unless given."""

    arch: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class InputConfig:
    """The card's `InputSpec`; `None` takes the dataset's default."""

    size: list[int] | None = None
    channels: int | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    resize: str = "stretch"
    object_size: list[float] | None = None  # segmenters: [low, high] px; None: the dataset's


@dataclass
class AugmentConfig:
    """One `torchvision.transforms.v2` transform by class name, with its keyword arguments."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # SGD only
    nesterov: bool = False  # SGD only


@dataclass
class ScheduleConfig:
    """Learning-rate schedule. `cosine` and `onecycle` step every batch; `step` and `plateau`
    every epoch (`plateau` watches the monitored validation metric)."""

    name: str = "none"
    warmup_epochs: float = 0.0  # cosine: linear warm-up from 0 to optim.lr
    min_lr: float = 0.0  # cosine floor, plateau floor
    step_size: int = 10  # step: epochs between decays
    gamma: float = 0.1  # step: decay factor
    factor: float = 0.1  # plateau: decay factor
    patience: int = 2  # plateau: epochs without improvement before a decay
    pct_start: float = 0.3  # onecycle: fraction of the run spent warming up


@dataclass
class LossConfig:
    """`ce` (classification or segmentation), `dice` or `ce_dice` (segmentation only)."""

    name: str = "ce"
    ce_weight: float = 1.0
    dice_weight: float = 1.0
    label_smoothing: float = 0.0
    class_weights: list[float] | None = None
    ignore_index: int | None = None
    include_background: bool = True
    smooth: float = 1e-5


@dataclass
class TrackingConfig:
    """Where a run shows its progress besides metrics.csv: TensorBoard (on by default) and
    Weights & Biases (opt-in, offline unless WANDB_MODE is set or you are logged in)."""

    tensorboard: bool = True  # event files in <run dir>/tensorboard/
    images: int = 4  # validation predictions drawn each epoch (0: none)
    wandb: bool = False  # also log to W&B, files in <run dir>/wandb/
    project: str = "cvserve"  # W&B project
    entity: str | None = None  # W&B team or user; None: your default entity
    group: str | None = None  # W&B group; studies set it to the study name
    tags: list[str] = field(default_factory=list)  # W&B tags


@dataclass
class Config:
    """One experiment. See training/configs/*.yaml for annotated examples."""

    name: str
    data: DataConfig
    model: ModelConfig
    version: str = "1.0"
    task: str | None = None  # None: the dataset's task
    seed: int = 0  # training randomness (init, shuffling, augmentation, dropout)
    input: InputConfig = field(default_factory=InputConfig)
    augment: list[AugmentConfig] = field(default_factory=list)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    epochs: int = 10
    patience: int | None = None  # early stopping: epochs without a better monitor value
    grad_clip: float | None = None  # max global gradient norm
    amp: str = "none"  # CUDA only; ignored (with a log line) on CPU
    channels_last: bool = False  # CUDA only
    device: str = "auto"  # auto: cuda when available, else cpu
    deterministic: bool = True  # torch.use_deterministic_algorithms (warn-only) + seeds
    output_dir: str = "checkpoints"
    monitor: str | None = None  # None: accuracy (classification), mean_dice (segmentation)
    resume: bool = False  # continue from <output_dir>/<name>/<version>/last.pt
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    # Segmenters: also score objects on held-out `digit_pages` made with these options
    # (e.g. {n_test: 20}); None: objects are scored on the test split only.
    eval_pages: dict[str, Any] | None = None

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name / self.version


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML experiment, apply `key=value` overrides, validate.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: unknown key, bad value or malformed override (the message says the fix).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: the top level must be a mapping of keys to values")
    return config_from_dict(apply_overrides(raw, overrides))


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Plain data (as in a YAML file) -> validated `Config`."""
    config = _build(Config, raw, "")
    validate(config)
    return config


def config_to_dict(config: Config) -> dict[str, Any]:
    """`Config` -> plain data that `config_from_dict` reads back (identity first, then the
    sections in the order they act)."""
    data = dataclasses.asdict(config)
    first = ("name", "version", "task", "seed")
    return {**{k: data[k] for k in first}, **{k: v for k, v in data.items() if k not in first}}


def save_config(config: Config, path: str | Path) -> Path:
    """Write the resolved config as YAML (what the run actually used)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
    return path


# --- overrides ---------------------------------------------------------------------------


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return a copy of `raw` with each `dotted.key=value` applied in order."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {item!r} must look like key=value, e.g. optim.lr=0.01")
        parts = key.strip().split(".")
        _set_path(raw, parts, _parse_value(text, _type_at(Config, parts)))
    return raw


def _parse_value(text: str, annotation: Any) -> Any:
    value = yaml.safe_load(text) if text.strip() else None
    text_field = str in _union_args(annotation)
    return text if text_field and value is not None and not isinstance(value, bool) else value


def _type_at(cls: Any, parts: list[str]) -> Any:
    """The annotation at a dotted path; unknown keys raise with the valid keys listed."""
    annotation: Any = cls
    for i, part in enumerate(parts):
        annotation = _strip_optional(annotation)
        where = ".".join(parts[:i]) or "the top level"
        if dataclasses.is_dataclass(annotation):
            hints = typing.get_type_hints(annotation)
            if part not in hints:
                raise ValueError(_unknown_key_message(part, where, hints))
            annotation = hints[part]
        elif typing.get_origin(annotation) is list:
            if not part.isdigit():
                raise ValueError(f"{where} is a list: address items by index, e.g. {where}.0")
            annotation = typing.get_args(annotation)[0]
        elif annotation is Any or typing.get_origin(annotation) is dict:
            return Any  # free-form mapping (model.kwargs, data.options, augment kwargs)
        else:
            raise ValueError(f"cannot set a key below {where}: it holds a single value")
    return annotation


def _set_path(node: Any, parts: list[str], value: Any) -> None:
    for i, part in enumerate(parts[:-1]):
        where = ".".join(parts[: i + 1])
        if not isinstance(node, dict | list):
            raise ValueError(f"cannot set a key below {'.'.join(parts[:i])}: it holds {node!r}")
        if isinstance(node, list):
            node = node[_index(node, part, where)]
            continue
        if node.get(part) is None:
            if parts[i + 1].isdigit():  # a list item that does not exist yet
                raise ValueError(
                    f"{where}.{parts[i + 1]}: no item {parts[i + 1]} (the list is empty)"
                )
            node[part] = {}
        node = node[part]
    last = parts[-1]
    if not isinstance(node, dict | list):
        raise ValueError(f"cannot set a key below {'.'.join(parts[:-1])}: it holds {node!r}")
    if isinstance(node, list):
        node[_index(node, last, ".".join(parts))] = value
    else:
        node[last] = value


def _index(items: list[Any], part: str, where: str) -> int:
    if not part.isdigit() or int(part) >= len(items):
        raise ValueError(f"{where}: no item {part} (the list has {len(items)} items)")
    return int(part)


# --- plain data -> dataclasses -----------------------------------------------------------


def _build(cls: Any, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ValueError(f"{where or 'the config'} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in hints:
            raise ValueError(_unknown_key_message(key, where or "the top level", hints))
    values = {}
    for f in dataclasses.fields(cls):
        path = f"{where}.{f.name}" if where else f.name
        if f.name in raw:
            values[f.name] = _coerce(raw[f.name], hints[f.name], path)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ValueError(f"config is missing the required key {path!r}")
    return cls(**values)


def _coerce(value: Any, annotation: Any, path: str) -> Any:
    """Check `value` against a type annotation; convert only lossless cases (int -> float)."""
    options = _union_args(annotation)
    if value is None:
        if type(None) in options:
            return None
        raise ValueError(f"{path} must not be null")
    errors = []
    for option in options:
        if option is type(None):
            continue
        try:
            return _coerce_one(value, option, path)
        except ValueError as exc:
            errors.append(str(exc))
    raise ValueError(errors[0] if len(errors) == 1 else f"{path}: {value!r} fits none of {options}")


def _coerce_one(value: Any, annotation: Any, path: str) -> Any:
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value, path)
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ValueError(f"{path} must be a list, got {value!r}")
        item = typing.get_args(annotation)[0]
        return [_coerce(v, item, f"{path}.{i}") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{path} must be a mapping, got {value!r}")
        return dict(value)
    return _coerce_scalar(value, annotation, path)


def _coerce_scalar(value: Any, annotation: Any, path: str) -> Any:
    if annotation is Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{path} must be true or false, got {value!r}")
    if isinstance(value, bool):
        raise ValueError(f"{path} must be a {annotation.__name__}, got the boolean {value!r}")
    if annotation is int and isinstance(value, int):
        return value
    if annotation is float and isinstance(value, int | float):
        return float(value)
    if annotation is str and isinstance(value, str | int | float):
        return str(value)  # a YAML `version: 2` is meant as the text "2"
    raise ValueError(f"{path} must be a {annotation.__name__}, got {value!r}")


def _union_args(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _strip_optional(annotation: Any) -> Any:
    options = [a for a in _union_args(annotation) if a is not type(None)]
    return options[0] if len(options) == 1 else annotation


def _unknown_key_message(key: str, where: str, hints: dict[str, Any]) -> str:
    return f"unknown key {key!r} in {where}; valid keys: {', '.join(hints)}"


# --- value checks ------------------------------------------------------------------------


def validate(config: Config) -> None:
    """Range and choice checks; each message names the fix."""
    _check_names(config)
    _check_choice("task", config.task, TASKS, allow_none=True)
    _check_choice("optim.name", config.optim.name, OPTIMIZERS)
    _check_choice("schedule.name", config.schedule.name, SCHEDULES)
    _check_choice("loss.name", config.loss.name, LOSSES)
    _check_choice("amp", config.amp, AMP_MODES)
    _check_choice("input.resize", config.input.resize, RESIZE_POLICIES)
    _check_numbers(config)
    _check_input(config.input)
    if config.task == "classification" and config.loss.name != "ce":
        raise ValueError(f"loss.name {config.loss.name!r} is for segmentation; use ce")


def _check_names(config: Config) -> None:
    for key, value in (("name", config.name), ("version", config.version)):
        if not value or not all(c.isalnum() or c in "_-." for c in value):
            raise ValueError(f"{key} {value!r} must be letters, digits, '_', '-' or '.'")
    for key, value in (("data.name", config.data.name), ("model.arch", config.model.arch)):
        if not value:
            raise ValueError(f"{key} must be set")
    if config.device.split(":")[0] not in ("auto", "cpu", "cuda", "mps"):
        raise ValueError(f"device {config.device!r}: use auto, cpu, cuda or cuda:N")


def _check_choice(key: str, value: Any, choices: tuple[str, ...], allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value not in choices:
        raise ValueError(f"{key} {value!r} is not valid; choose one of {', '.join(choices)}")


def _check_numbers(config: Config) -> None:
    checks = [
        ("epochs", config.epochs, 1),
        ("data.batch_size", config.data.batch_size, 1),
        ("data.eval_batch_size", config.data.eval_batch_size, 1),
        ("data.num_workers", config.data.num_workers, 0),
        ("data.limit", config.data.limit, 1),
        ("tracking.images", config.tracking.images, 0),
        ("patience", config.patience, 1),
        ("schedule.step_size", config.schedule.step_size, 1),
        ("schedule.patience", config.schedule.patience, 0),
        ("schedule.warmup_epochs", config.schedule.warmup_epochs, 0),
        ("schedule.min_lr", config.schedule.min_lr, 0),
        ("optim.weight_decay", config.optim.weight_decay, 0),
        ("optim.momentum", config.optim.momentum, 0),
        ("loss.ce_weight", config.loss.ce_weight, 0),
        ("loss.dice_weight", config.loss.dice_weight, 0),
        ("loss.label_smoothing", config.loss.label_smoothing, 0),
        ("loss.smooth", config.loss.smooth, 0),
    ]
    for key, value, low in checks:
        if value is not None and value < low:
            raise ValueError(f"{key} must be >= {low}, got {value}")
    for key, value in (("optim.lr", config.optim.lr), ("grad_clip", config.grad_clip)):
        if value is not None and value <= 0:
            raise ValueError(f"{key} must be > 0, got {value}")
    for key, value in (
        ("schedule.gamma", config.schedule.gamma),
        ("schedule.factor", config.schedule.factor),
        ("schedule.pct_start", config.schedule.pct_start),
    ):
        if not 0 < value < 1:
            raise ValueError(f"{key} must be between 0 and 1 (exclusive), got {value}")
    if config.loss.label_smoothing >= 1:
        raise ValueError(f"loss.label_smoothing must be below 1, got {config.loss.label_smoothing}")
    if config.schedule.warmup_epochs >= config.epochs:
        raise ValueError(
            f"schedule.warmup_epochs ({config.schedule.warmup_epochs}) must be below epochs "
            f"({config.epochs})"
        )


def _check_input(spec: InputConfig) -> None:
    if spec.size is not None and (len(spec.size) != 2 or min(spec.size) < 1):
        raise ValueError(f"input.size must be [height, width] > 0, got {spec.size}")
    if spec.channels is not None and spec.channels not in (1, 3):
        raise ValueError(f"input.channels must be 1 or 3, got {spec.channels}")
    if (spec.mean is None) != (spec.std is None):
        raise ValueError("set both input.mean and input.std, or neither (dataset defaults)")
