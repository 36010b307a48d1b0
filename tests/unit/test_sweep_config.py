"""Study files: valid ones load, and every mistake is an error that names the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from training.sweeps import load_study
from training.sweeps.config import (
    AugmentationAblation,
    ResolutionAblation,
    study_from_dict,
    to_override,
)
from training.sweeps.plan import plan_trials

REPO = Path(__file__).resolve().parents[2]
BASE = str(REPO / "training" / "configs" / "digits_tinyvgg.yaml")
SEARCH = {
    "base": BASE,
    "budget": 4,
    "search": {"params": {"optim.lr": {"log_uniform": [1.0e-4, 1.0e-2]}}},
}


def study(**changes: Any) -> Any:
    return study_from_dict({**SEARCH, **changes}, default_name="s")


STUDIES = sorted((REPO / "training" / "studies").glob("*.yaml"))
ARCH_STUDIES = [p for p in STUDIES if "models" in yaml.safe_load(p.read_text())]
SCALE_STUDIES = [p for p in STUDIES if "inference" in yaml.safe_load(p.read_text())]


@pytest.mark.parametrize("path", [p for p in STUDIES if p not in ARCH_STUDIES + SCALE_STUDIES])
def test_shipped_studies_load_and_plan(path: Path) -> None:
    loaded = load_study(path)
    assert loaded.name == path.stem
    trials = plan_trials(loaded)
    assert trials and len({t.id for t in trials}) == len(trials)


@pytest.mark.parametrize("path", ARCH_STUDIES)
def test_architecture_studies_load_with_their_runner_and_the_sweep_says_so(path: Path) -> None:
    from training.arch_study import load_arch_study

    assert load_arch_study(path).models
    with pytest.raises(ValueError, match=r"training\.arch_study"):
        load_study(path)


@pytest.mark.parametrize("path", SCALE_STUDIES)
def test_scale_studies_load_with_their_runner_and_the_sweep_says_so(path: Path) -> None:
    from training.scale_study import load_scale_study

    assert load_scale_study(path).training
    with pytest.raises(ValueError, match=r"training\.scale_study"):
        load_study(path)


def test_a_study_file_loads_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "lr.yaml"
    path.write_text(yaml.safe_dump(SEARCH))
    loaded = load_study(path)
    assert (loaded.name, loaded.kind, loaded.search.sampler, loaded.search.seed) == (
        "lr",
        "search",
        "sobol",
        0,
    )
    assert loaded.metric is None and loaded.seeds is None and loaded.source == path


def test_ablations_parse_into_their_kinds() -> None:
    loaded = study_from_dict(
        {
            "base": BASE,
            "ablations": {
                "augmentation": {
                    "transforms": [{"name": "RandomRotation", "kwargs": {"degrees": 5}}]
                },
                "sizes": {"kind": "resolution", "sizes": [24, [28, 32]]},
            },
        },
        default_name="a",
    )
    aug, res = loaded.ablations
    assert (
        isinstance(aug.spec, AugmentationAblation)
        and aug.spec.transforms[0].tag == "RandomRotation"
    )
    assert isinstance(res.spec, ResolutionAblation) and res.spec.sizes == [[24, 24], [28, 32]]
    assert res.group == "sizes"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochz": 3}, "unknown key 'epochz' in the study; valid keys: name"),
        ({"budget": None}, "a search needs `budget:`"),
        ({"budget": 0}, "budget must be >= 1"),
        ({"ablations": {"resolution": {"sizes": [32]}}}, "exactly one of `search:`"),
        ({"search": {"params": {}}}, "search.params must map config keys"),
        ({"search": {"sampler": "grid", "params": {"x": {"choice": [1]}}}}, "choose one of sobol"),
        ({"search": {"params": {"optim.lr": {"normal": [0, 1]}}}}, "unknown kind 'normal'"),
        ({"search": {"params": {"optim.lr": {"log_uniform": [0, 1]}}}}, "bounds must be > 0"),
        ({"search": {"params": {"optim.lr": {"uniform": [1, 1]}}}}, "needs low < high"),
        ({"search": {"params": {"optim.lr": {"uniform": [1]}}}}, "must be [low, high]"),
        ({"search": {"params": {"a": {"int_uniform": [1, 2.5]}}}}, "must be integers"),
        ({"search": {"params": {"a": {"choice": [1, 1]}}}}, "lists a value twice"),
        ({"search": {"params": {"a": {"choice": [1]}}, "sed": 1}}, "unknown key 'sed' in search"),
        ({"metric": "f1"}, "metric 'f1' is not valid"),
        ({"seeds": [1, 1]}, "seeds must be a list of distinct integers"),
        ({"seeds": [0], "overrides": {"seed": 3}}, "not both"),
        ({"overrides": {"output_dir": "x"}}, "set per trial by the sweep"),
        ({"trial_timeout": -1}, "trial_timeout must be > 0"),
        ({"name": "a b"}, "must be letters, digits"),
    ],
)
def test_bad_search_studies_name_the_fix(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=_escape(message)):
        study(**changes)


@pytest.mark.parametrize(
    ("ablations", "message"),
    [
        ({"colour": {"sizes": [1]}}, "unknown ablation kind 'colour'"),
        ({"resolution": {"sizes": [32], "size": 3}}, "unknown key 'size' in ablations.resolution"),
        ({"resolution": {"sizes": [0]}}, "a size is an int or [height, width] > 0"),
        ({"resolution": {"sizes": [32, 32]}}, "distinct sizes"),
        ({"augmentation": {"transforms": []}}, "at least one augmentation"),
        ({"augmentation": {"transforms": [{"kwargs": {}}]}}, "missing the required key 'name'"),
        (
            {
                "augmentation": {
                    "transforms": [{"name": "RandomRotation"}, {"name": "RandomRotation"}]
                }
            },
            "distinct `label`s",
        ),
        ({"imbalance": {"classes": [3], "keep_fraction": 1.0}}, "keep_fraction must be in [0, 1)"),
        ({"imbalance": {"classes": "3"}}, "must be a list"),
        ({"x": {"kind": "variants", "variants": {}}}, "at least one variant"),
        ({"x": {"kind": "variants", "variants": {"a": 3}}}, "must map dotted config keys"),
    ],
)
def test_bad_ablations_name_the_fix(ablations: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=_escape(message)):
        study_from_dict({"base": BASE, "ablations": ablations}, default_name="a")


def test_a_missing_base_lists_where_it_looked() -> None:
    with pytest.raises(FileNotFoundError, match="tried"):
        study(base="training/configs/nope.yaml")


def test_bad_overrides_fail_when_loading_not_in_the_first_trial(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**SEARCH, "overrides": {"optim.lrr": 0.1}}))
    with pytest.raises(ValueError, match="unknown key 'lrr'"):
        load_study(path)


def test_bad_searched_keys_and_augmentations_fail_at_planning(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown key 'lrr'"):
        plan_trials(study(search={"params": {"optim.lrr": {"choice": [0.1]}}}))
    bad = {"base": BASE, "ablations": {"augmentation": {"transforms": [{"name": "RandomSpin"}]}}}
    with pytest.raises(ValueError, match="RandomSpin"):
        plan_trials(study_from_dict(bad, default_name="a"))


@pytest.mark.parametrize(
    ("value", "text"),
    [(1e-05, "optim.lr=1.0e-05"), (0.003, "optim.lr=0.003"), ([48, 48], "optim.lr=[48, 48]")],
)
def test_overrides_are_written_so_the_trainer_reads_them_back(value: Any, text: str) -> None:
    assert to_override("optim.lr", value) == text
    assert yaml.safe_load(text.partition("=")[2]) == value


def _escape(message: str) -> str:
    import re

    return re.escape(message)
