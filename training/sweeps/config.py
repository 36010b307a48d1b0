"""Study files: YAML -> typed dataclasses, with unknown keys and bad values as errors.

A study is a base experiment (`training/configs/*.yaml`) plus what varies between its trials:

    name: digits_lr_batch                  # optional, default: the file name
    base: training/configs/digits_tinyvgg.yaml
    overrides: {epochs: 3}                 # dotted keys, applied to every trial
    metric: accuracy                       # optional, default: the run's monitored metric
    budget: 8                              # search: trials to sample; ablations: a cap
    trial_timeout: 300                     # seconds; a trial running longer is killed
    seeds: [0, 1]                          # optional: repeat every trial with these seeds
    search:                                # EITHER a search space ...
      sampler: sobol                       #   sobol | random
      seed: 0
      params:
        optim.lr: {log_uniform: [1.0e-4, 3.0e-2]}
        data.batch_size: {choice: [16, 32, 64, 128]}
    ablations:                             # ... OR named ablation groups
      augmentation: {transforms: [{label: shift, name: RandomAffine, kwargs: {...}}]}
      resolution: {sizes: [48, 64, 96]}
      imbalance: {classes: [3, 8], keep_fraction: 0.1}
      widths: {kind: variants, variants: {narrow: {model.kwargs.hidden_units: 8}}}

As in `training.config`, a typo must never silently run a different study than the one
written down: every mapping is checked against the dataclass it becomes, and each error names
the valid keys or the expected form. Values of the base experiment itself are checked by
`training.config.load_config` (see `check_base`), before any trial starts.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from training.config import Config, load_config
from training.metrics import METRIC_NAMES

SAMPLERS = ("sobol", "random")
PARAM_KINDS = ("log_uniform", "uniform", "int_uniform", "choice")
ABLATION_KINDS = ("augmentation", "resolution", "imbalance", "variants")
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ParamSpec:
    """One searched config key: `log_uniform`/`uniform` `(low, high)`, `int_uniform`
    `(low, high)` inclusive, or `choice` `(v1, v2, ...)`."""

    key: str
    kind: str
    values: tuple[Any, ...]

    @property
    def log_scale(self) -> bool:
        """Whether plots should use a log axis (sampled in log space, or positive choices
        spanning a factor of 4 or more, as batch sizes usually do)."""
        if self.kind == "log_uniform":
            return True
        numbers = [v for v in self.values if _is_number(v)]
        if self.kind != "choice" or len(numbers) != len(self.values) or min(numbers) <= 0:
            return False
        return max(numbers) / min(numbers) >= 4


@dataclass
class SearchSpace:
    """Where trials are sampled: `sobol` spreads few points evenly over the space (its
    balance is best with a power-of-two budget), `random` is the plain baseline."""

    params: list[ParamSpec]
    sampler: str = "sobol"
    seed: int = 0


@dataclass
class AugmentStep:
    """One augmentation of an augmentation ablation; `label` names it in trial names."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    label: str | None = None

    @property
    def tag(self) -> str:
        return self.label or self.name

    def as_config(self) -> dict[str, Any]:
        """The `augment:` list item of an experiment config (no label: not a config key)."""
        return {"name": self.name, "kwargs": dict(self.kwargs)}


@dataclass
class AugmentationAblation:
    """Variants `none`, `no-<label>` (all but one, for each), `all`; `single: true` adds
    `only-<label>` (one at a time)."""

    transforms: list[AugmentStep]
    single: bool = False


@dataclass
class ResolutionAblation:
    """One variant per size; a size is an int (square) or `[height, width]`. `key` is the
    config key that receives it: the model's input size by default (the data is resized to
    it), or e.g. `data.options.size` for datasets generated at a size."""

    sizes: list[Any]
    key: str = "input.size"


@dataclass
class ImbalanceAblation:
    """Train with `classes` cut to `keep_fraction` of their items, without and with
    inverse-frequency class weights in the loss; `baseline` adds the untouched data.
    Needs a dataset with the `drop_classes` / `keep_fraction` options (`digits`)."""

    classes: list[int]
    keep_fraction: float = 0.1
    baseline: bool = True


@dataclass
class VariantsAblation:
    """Explicit variants: `{variant name: {dotted.key: value, ...}}`."""

    variants: dict[str, Any]


AblationSpec = AugmentationAblation | ResolutionAblation | ImbalanceAblation | VariantsAblation
_ABLATION_CLASSES: dict[str, type] = {
    "augmentation": AugmentationAblation,
    "resolution": ResolutionAblation,
    "imbalance": ImbalanceAblation,
    "variants": VariantsAblation,
}


@dataclass
class Ablation:
    """A named group of variants; each group gets its own bar chart."""

    group: str
    kind: str
    spec: AblationSpec


@dataclass
class Study:
    """A validated study file. `base` is resolved to an existing file."""

    name: str
    base: Path
    description: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    metric: str | None = None
    budget: int | None = None
    trial_timeout: float | None = None
    seeds: list[int] | None = None
    search: SearchSpace | None = None
    ablations: list[Ablation] = field(default_factory=list)
    source: Path | None = None

    @property
    def kind(self) -> str:
        return "search" if self.search is not None else "ablation"

    def base_overrides(self) -> list[str]:
        """The study-wide `key=value` overrides, as `python -m training.train` takes them."""
        return [to_override(k, v) for k, v in self.overrides.items()]


# --- loading -----------------------------------------------------------------------------


def load_study(path: str | Path) -> Study:
    """Read and validate a study file (structure here; the base experiment via
    `check_base`, so a bad override fails before the first trial, not in it).

    Raises:
        FileNotFoundError: the study file or its base config does not exist.
        ValueError: an unknown key, a missing key or a bad value (the message names the fix).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"study file {path} not found")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: the top level must be a mapping of keys to values")
    if "models" in raw and "base" not in raw:
        raise ValueError(
            f"{path} compares architectures (it has `models:`): run it with "
            f"`python -m training.arch_study {path}`"
        )
    if "training" in raw and "inference" in raw:
        raise ValueError(
            f"{path} compares training arms with inference modes (it has `training:` and "
            f"`inference:`): run it with `python -m training.scale_study {path}`"
        )
    study = study_from_dict(raw, default_name=path.stem, folder=path.parent)
    study.source = path
    check_base(study)
    return study


def study_from_dict(raw: dict[str, Any], default_name: str, folder: Path = Path()) -> Study:
    """Plain data (as in a study file) -> validated `Study` (without loading the base)."""
    _check_keys(raw, Study, "the study", skip=("source",))
    if "base" not in raw:
        raise ValueError("the study needs `base:`, the experiment config its trials start from")
    name = str(raw.get("name") or default_name)
    _check_name("name", name)
    search = raw.get("search")
    ablations = raw.get("ablations")
    if (search is None) == (ablations is None):
        raise ValueError("a study needs exactly one of `search:` (sampling) or `ablations:`")
    study = Study(
        name=name,
        base=resolve_base(str(raw["base"]), folder),
        description=str(raw.get("description") or ""),
        overrides=_overrides(raw.get("overrides"), "overrides"),
        metric=_optional(raw, "metric", str),
        budget=_optional(raw, "budget", int),
        trial_timeout=_optional(raw, "trial_timeout", float),
        seeds=_seeds(raw.get("seeds")),
        search=None if search is None else _search(search),
        ablations=[] if ablations is None else _ablations(ablations),
    )
    _check_study(study)
    return study


def check_base(study: Study, extra: list[str] | None = None) -> Config:
    """Load the base experiment with the study's overrides (and `extra`): the trainer's own
    validation, run once up front."""
    try:
        return load_config(study.base, [*study.base_overrides(), *(extra or [])])
    except ValueError as exc:
        raise ValueError(f"study {study.name!r}: base {study.base} does not load: {exc}") from exc


def resolve_base(base: str, folder: Path) -> Path:
    """A relative `base` is looked up from the working directory, then next to the study
    file, then from the repository root (so shipped studies run from anywhere)."""
    path = Path(base)
    candidates = [path] if path.is_absolute() else [path, folder / path, REPO_ROOT / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()  # trials then run the same file from any directory
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"base config {base!r} not found (tried {tried})")


def to_override(key: str, value: Any) -> str:
    """`key=value` with the value written as YAML, which is how the trainer parses it back
    (a float like 1e-05 must be written `1.0e-05`, or YAML reads a string)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf).strip()
    if text.endswith("\n..."):
        text = text[: -len("\n...")]
    return f"{key}={text}"


# --- pieces ------------------------------------------------------------------------------


def _search(raw: Any) -> SearchSpace:
    where = "search"
    _require_mapping(raw, where)
    _check_keys(raw, SearchSpace, where)
    params_raw = raw.get("params")
    if not isinstance(params_raw, dict) or not params_raw:
        raise ValueError(
            "search.params must map config keys to ranges, e.g. "
            "{optim.lr: {log_uniform: [1.0e-4, 1.0e-1]}, data.batch_size: {choice: [32, 64]}}"
        )
    space = SearchSpace(
        params=[_param(str(k), v) for k, v in params_raw.items()],
        sampler=str(raw.get("sampler", "sobol")),
        seed=_optional(raw, "seed", int, where) or 0,
    )
    if space.sampler not in SAMPLERS:
        raise ValueError(f"search.sampler {space.sampler!r}: choose one of {', '.join(SAMPLERS)}")
    return space


def _param(key: str, raw: Any) -> ParamSpec:
    where = f"search.params.{key}"
    example = "{log_uniform: [1.0e-4, 1.0e-1]} or {choice: [16, 32, 64]}"
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ValueError(f"{where} must be one of {', '.join(PARAM_KINDS)}, e.g. {example}")
    kind, values = next(iter(raw.items()))
    if kind not in PARAM_KINDS:
        raise ValueError(f"{where}: unknown kind {kind!r}; choose one of {', '.join(PARAM_KINDS)}")
    if not isinstance(values, list) or not values:
        raise ValueError(f"{where}.{kind} must be a non-empty list, e.g. {example}")
    if kind == "choice":
        if len({yaml.safe_dump(v) for v in values}) != len(values):
            raise ValueError(f"{where}.choice lists a value twice: {values}")
        return ParamSpec(key, kind, tuple(values))
    if len(values) != 2 or not all(_is_number(v) for v in values):
        raise ValueError(f"{where}.{kind} must be [low, high] numbers, got {values}")
    low, high = values
    if kind == "int_uniform" and not all(isinstance(v, int) for v in values):
        raise ValueError(f"{where}.int_uniform bounds must be integers, got {values}")
    if (kind == "int_uniform" and low > high) or (kind != "int_uniform" and low >= high):
        raise ValueError(f"{where}.{kind} needs low < high, got {values}")
    if kind == "log_uniform" and low <= 0:
        raise ValueError(f"{where}.log_uniform bounds must be > 0, got {values}")
    cast = int if kind == "int_uniform" else float
    return ParamSpec(key, kind, (cast(low), cast(high)))


def _ablations(raw: Any) -> list[Ablation]:
    _require_mapping(raw, "ablations")
    if not raw:
        raise ValueError("ablations must name at least one group, e.g. {resolution: {...}}")
    groups = []
    for group, body in raw.items():
        group = str(group)
        where = f"ablations.{group}"
        _check_name(where, group)
        _require_mapping(body, where)
        body = dict(body)
        kind = str(body.pop("kind", group))
        if kind not in ABLATION_KINDS:
            raise ValueError(
                f"{where}: unknown ablation kind {kind!r}; name the group after one of "
                f"{', '.join(ABLATION_KINDS)} or set `kind:`"
            )
        groups.append(Ablation(group, kind, _ablation_spec(kind, body, where)))
    return groups


def _ablation_spec(kind: str, body: dict[str, Any], where: str) -> AblationSpec:
    spec = _build(_ABLATION_CLASSES[kind], body, where)
    if isinstance(spec, AugmentationAblation):
        if not spec.transforms:
            raise ValueError(f"{where}.transforms must list at least one augmentation")
        tags = [t.tag for t in spec.transforms]
        if len(set(tags)) != len(tags):
            raise ValueError(f"{where}.transforms: give repeated transforms distinct `label`s")
        for tag in tags:
            _check_name(f"{where}.transforms label", tag)
    elif isinstance(spec, ResolutionAblation):
        spec.sizes = [_size(s, f"{where}.sizes") for s in spec.sizes]
        if not spec.sizes or len(set(map(tuple, spec.sizes))) != len(spec.sizes):
            raise ValueError(f"{where}.sizes must list distinct sizes, got {spec.sizes}")
    elif isinstance(spec, ImbalanceAblation):
        if not spec.classes or len(set(spec.classes)) != len(spec.classes):
            raise ValueError(f"{where}.classes must list distinct class indices")
        if not 0 <= spec.keep_fraction < 1:
            raise ValueError(f"{where}.keep_fraction must be in [0, 1), got {spec.keep_fraction}")
    else:
        if not spec.variants:
            raise ValueError(f"{where}.variants must name at least one variant")
        for name, overrides in spec.variants.items():
            _check_name(f"{where}.variants", str(name))
            _overrides(overrides, f"{where}.variants.{name}")
    return spec


def _size(value: Any, where: str) -> list[int]:
    size = [value, value] if isinstance(value, int) else value
    if (
        not isinstance(size, list)
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise ValueError(f"{where}: a size is an int or [height, width] > 0, got {value!r}")
    return size


def _check_study(study: Study) -> None:
    if study.budget is not None and study.budget < 1:
        raise ValueError(f"budget must be >= 1, got {study.budget}")
    if study.search is not None and study.budget is None:
        raise ValueError("a search needs `budget:` (how many trials to sample)")
    if study.trial_timeout is not None and study.trial_timeout <= 0:
        raise ValueError(f"trial_timeout must be > 0 seconds, got {study.trial_timeout}")
    known = sorted({m for names in METRIC_NAMES.values() for m in names})
    if study.metric is not None and study.metric not in known:
        raise ValueError(f"metric {study.metric!r} is not valid; choose one of {', '.join(known)}")
    groups = [a.group for a in study.ablations]
    if len(set(groups)) != len(groups):
        raise ValueError(f"ablation group names must be distinct, got {groups}")
    reserved = {"name", "version", "output_dir", "resume"}
    varied = set(study.overrides) | {p.key for p in (study.search.params if study.search else [])}
    if varied & reserved:
        raise ValueError(
            f"{sorted(varied & reserved)} are set per trial by the sweep; remove them from "
            "the study"
        )
    if study.seeds is not None and "seed" in varied:
        raise ValueError("set seeds either with `seeds:` or as an override/parameter, not both")


def _seeds(raw: Any) -> list[int] | None:
    if raw is None:
        return None
    if (
        not isinstance(raw, list)
        or not raw
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in raw)
        or len(set(raw)) != len(raw)
    ):
        raise ValueError(f"seeds must be a list of distinct integers, e.g. [0, 1, 2], got {raw!r}")
    return list(raw)


def _overrides(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must map dotted config keys to values, e.g. {{epochs: 3}}")
    return {str(k): v for k, v in raw.items()}


# --- a small typed builder (flat dataclasses, lists of dataclasses) ------------------------


def _build(cls: Any, raw: dict[str, Any], where: str) -> Any:
    _check_keys(raw, cls, where)
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in raw:
            values[f.name] = _coerce(raw[f.name], hints[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ValueError(f"{where} is missing the required key {f.name!r}")
    return cls(**values)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        annotation = next(a for a in args if a is not type(None))
        args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        _require_mapping(value, where)
        return _build(annotation, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(f"{where} must be a list, got {value!r}")
        return [_coerce(v, args[0], f"{where}.{i}") for i, v in enumerate(value)]
    if origin is dict:
        _require_mapping(value, where)
        return dict(value)
    return _scalar(value, annotation, where)


def _scalar(value: Any, annotation: Any, where: str) -> Any:
    if annotation is Any:
        return value
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: _is_number(value),
        str: isinstance(value, str | int | float) and not isinstance(value, bool),
    }[annotation]
    if not ok:
        raise ValueError(f"{where} must be a {annotation.__name__}, got {value!r}")
    return annotation(value)


def _optional(raw: dict[str, Any], key: str, kind: type, where: str = "") -> Any:
    value = raw.get(key)
    return None if value is None else _scalar(value, kind, f"{where}.{key}" if where else key)


def _check_keys(raw: dict[str, Any], cls: Any, where: str, skip: tuple[str, ...] = ()) -> None:
    valid = [f.name for f in dataclasses.fields(cls) if f.name not in skip]
    unknown = [k for k in raw if k not in valid]
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} in {where}; valid keys: {', '.join(valid)}")


def _require_mapping(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a mapping, got {value!r}")


def _check_name(where: str, value: str) -> None:
    if not value or not all(c.isalnum() or c in "_-." for c in value):
        raise ValueError(f"{where} {value!r} must be letters, digits, '_', '-' or '.'")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
