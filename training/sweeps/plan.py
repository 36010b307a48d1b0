"""A study's trials: what each one changes, as `key=value` overrides of the base experiment.

Planning is pure (no training) and deterministic, so a resumed study plans exactly the same
trials and can recognise the finished ones by name. Every trial's overrides are validated
with the trainer's own config loader here, before anything runs: a typo in the study must
not surface as the first trial's crash an hour in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from training.config import Config
from training.transforms import build_augment

from .ablations import expand_ablation
from .config import Study, check_base, to_override
from .space import sample_params

log = logging.getLogger(__name__)


@dataclass
class Trial:
    """One training run of a study.

    Attributes:
        id: unique within the study, used in folder and archive names (`t003`,
            `augmentation-no-shift-s1`).
        overrides: the trial's own `key=value` overrides (on top of the study's).
        params: what the trial changed, for tables and plots (sampled values, or the
            ablation variant, and the seed when several are run).
        group, variant, seed: the ablation group and variant, and the seed, when they apply.
    """

    id: str
    overrides: list[str]
    params: dict[str, Any] = field(default_factory=dict)
    group: str | None = None
    variant: str | None = None
    seed: int | None = None


def plan_trials(study: Study, budget: int | None = None) -> list[Trial]:
    """The study's trials in run order; `budget` replaces the study's (search: trials to
    sample; ablations: run only the first `budget`).

    Raises:
        ValueError: a trial's config does not load (bad key or value, unknown augmentation).
    """
    budget = budget if budget is not None else study.budget
    if budget is not None and budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    base = check_base(study)
    if study.search is not None:
        assert budget is not None  # a search always has one (checked when loading)
        trials = _search_trials(study, budget)
    else:
        trials = _ablation_trials(study, base)
        if budget is not None and budget < len(trials):
            log.warning("budget %d: running %d of %d ablation trials", budget, budget, len(trials))
            trials = trials[:budget]
    for trial in trials:
        _check_trial(study, trial)
    return trials


def _search_trials(study: Study, budget: int) -> list[Trial]:
    space = study.search
    assert space is not None
    trials = []
    for i, values in enumerate(sample_params(space.params, budget, space.sampler, space.seed)):
        overrides = [to_override(k, v) for k, v in values.items()]
        for seed in _seeds(study):
            trials.append(
                Trial(
                    id=f"t{i:03d}" + _seed_suffix(seed),
                    overrides=overrides + _seed_override(seed),
                    params={**values, **_seed_param(seed)},
                    seed=seed,
                )
            )
    return trials


def _ablation_trials(study: Study, base: Config) -> list[Trial]:
    trials = []
    for ablation in study.ablations:
        # Expanded once: the variants do not depend on the training seed (the imbalance
        # ablation weights its classes on the split `data.seed` fixes, as training splits it).
        for variant in expand_ablation(ablation, base):
            name = variant.name
            for seed in _seeds(study):
                trials.append(
                    Trial(
                        id=f"{ablation.group}-{name}{_seed_suffix(seed)}",
                        overrides=[to_override(k, v) for k, v in variant.overrides.items()]
                        + _seed_override(seed),
                        params={ablation.group: name, **_seed_param(seed)},
                        group=ablation.group,
                        variant=name,
                        seed=seed,
                    )
                )
    return trials


def _check_trial(study: Study, trial: Trial) -> None:
    config = check_base(study, trial.overrides)
    try:
        build_augment(config.augment, config.task or "classification")
    except ValueError as exc:
        raise ValueError(f"trial {trial.id}: {exc}") from exc


def _seeds(study: Study) -> list[int | None]:
    return list(study.seeds) if study.seeds else [None]


def _seed_suffix(seed: int | None) -> str:
    return "" if seed is None else f"-s{seed}"


def _seed_override(seed: int | None) -> list[str]:
    return [] if seed is None else [f"seed={seed}"]


def _seed_param(seed: int | None) -> dict[str, Any]:
    return {} if seed is None else {"seed": seed}
