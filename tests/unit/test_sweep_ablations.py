"""Ablation expansion: the expected variant names, overrides and trial ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from training.config import load_config
from training.sweeps.ablations import balanced_class_weights, class_counts
from training.sweeps.config import study_from_dict
from training.sweeps.plan import plan_trials

REPO = Path(__file__).resolve().parents[2]
DIGITS = str(REPO / "training" / "configs" / "digits_tinyvgg.yaml")
SCENES = str(REPO / "training" / "configs" / "scenes_unet.yaml")
SHIFT = {
    "label": "shift",
    "name": "RandomAffine",
    "kwargs": {"degrees": 0, "translate": [0.1, 0.1]},
}
ROTATE = {"label": "rotate", "name": "RandomRotation", "kwargs": {"degrees": 15}}
FLIP = {"name": "RandomHorizontalFlip", "kwargs": {"p": 0.5}}


def plan(ablations: dict[str, Any], base: str = DIGITS, **extra: Any) -> list[Any]:
    return plan_trials(study_from_dict({"base": base, "ablations": ablations, **extra}, "a"))


def augment_of(trial: Any) -> list[dict[str, Any]]:
    (item,) = [o for o in trial.overrides if o.startswith("augment=")]
    return yaml.safe_load(item.partition("=")[2])


def test_augmentation_none_leave_one_out_all() -> None:
    trials = plan({"augmentation": {"transforms": [SHIFT, ROTATE, FLIP]}})
    assert [t.variant for t in trials] == [
        "none",
        "no-shift",
        "no-rotate",
        "no-RandomHorizontalFlip",
        "all",
    ]
    assert [t.id for t in trials][:2] == ["augmentation-none", "augmentation-no-shift"]
    names = [[step["name"] for step in augment_of(t)] for t in trials]
    assert names == [
        [],
        ["RandomRotation", "RandomHorizontalFlip"],
        ["RandomAffine", "RandomHorizontalFlip"],
        ["RandomAffine", "RandomRotation"],
        ["RandomAffine", "RandomRotation", "RandomHorizontalFlip"],
    ]
    assert augment_of(trials[-1])[0] == {"name": "RandomAffine", "kwargs": SHIFT["kwargs"]}
    assert trials[1].params == {"augmentation": "no-shift"} and trials[1].seed is None


def test_single_adds_one_at_a_time_and_one_transform_has_no_leave_one_out() -> None:
    trials = plan({"augmentation": {"transforms": [SHIFT, ROTATE], "single": True}})
    assert [t.variant for t in trials] == [
        "none", "no-shift", "no-rotate", "only-shift", "only-rotate", "all",
    ]  # fmt: skip
    assert [t.variant for t in plan({"augmentation": {"transforms": [SHIFT]}})] == ["none", "all"]


def test_seeds_repeat_each_variant_next_to_each_other() -> None:
    trials = plan({"resolution": {"sizes": [24, 32]}}, seeds=[0, 1])
    assert [t.id for t in trials] == [
        "resolution-24x24-s0",
        "resolution-24x24-s1",
        "resolution-32x32-s0",
        "resolution-32x32-s1",
    ]
    assert trials[1].overrides == ["input.size=[24, 24]", "seed=1"]
    assert trials[1].params == {"resolution": "24x24", "seed": 1}


def test_resolution_can_target_another_key() -> None:
    trials = plan({"resolution": {"sizes": [[48, 64]], "key": "data.options.size"}}, base=SCENES)
    assert trials[0].overrides == ["data.options.size=[48, 64]"]


def test_imbalance_cuts_classes_and_weights_them_inversely() -> None:
    trials = plan({"imbalance": {"classes": [3, 8], "keep_fraction": 0.1}}, seeds=[0])
    assert [t.variant for t in trials] == ["balanced", "imbalanced", "imbalanced-weighted"]
    assert trials[0].overrides == ["seed=0"]
    cut = ["data.options.drop_classes=[3, 8]", "data.options.keep_fraction=0.1"]
    assert trials[1].overrides == [*cut, "seed=0"]
    weights = yaml.safe_load(trials[2].overrides[2].partition("=")[2])
    # 400 digits per class, 40 left of 3 and 8: 3,280 items / (10 * count)
    assert weights == [0.82 if c not in (3, 8) else 8.2 for c in range(10)]
    config = load_config(DIGITS, trials[2].overrides)
    assert config.loss.class_weights == weights and config.data.options["drop_classes"] == [3, 8]


def test_imbalance_without_baseline_and_on_a_dataset_without_the_option() -> None:
    trials = plan({"imbalance": {"classes": [1], "baseline": False}})
    assert [t.variant for t in trials] == ["imbalanced", "imbalanced-weighted"]
    with pytest.raises(ValueError, match="needs a dataset with the options"):
        plan({"imbalance": {"classes": [1]}}, base=SCENES)


def test_explicit_variants_and_budget_cap() -> None:
    ablations = {
        "width": {
            "kind": "variants",
            "variants": {"narrow": {"model.kwargs.hidden_units": 4}, "wide": {"epochs": 2}},
        }
    }
    trials = plan(ablations)
    assert [(t.id, t.overrides) for t in trials] == [
        ("width-narrow", ["model.kwargs.hidden_units=4"]),
        ("width-wide", ["epochs=2"]),
    ]
    study = study_from_dict({"base": DIGITS, "ablations": ablations, "seeds": [0, 1]}, "a")
    assert [t.id for t in plan_trials(study, budget=3)] == [
        "width-narrow-s0", "width-narrow-s1", "width-wide-s0",
    ]  # fmt: skip


def test_search_trials_are_numbered_and_carry_their_values() -> None:
    study = study_from_dict(
        {
            "base": DIGITS,
            "budget": 3,
            "search": {"params": {"data.batch_size": {"choice": [16, 32]}}},
            "seeds": [5],
        },
        "s",
    )
    trials = plan_trials(study)
    assert [t.id for t in trials] == ["t000-s5", "t001-s5", "t002-s5"]
    assert trials[0].overrides[-1] == "seed=5" and trials[0].params["seed"] == 5
    assert all(t.params["data.batch_size"] in (16, 32) for t in trials)
    assert len(plan_trials(study, budget=5)) == 5


def test_class_weights_helpers() -> None:
    assert balanced_class_weights([10, 10]) == [1.0, 1.0]
    assert balanced_class_weights([30, 10]) == [pytest.approx(0.6667), 2.0]
    with pytest.raises(ValueError, match="no training items"):
        balanced_class_weights([3, 0])
    assert class_counts([(None, 1), (None, 1), (None, 0)], 3) == [1, 2, 0]
