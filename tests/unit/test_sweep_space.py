"""Search-space sampling: deterministic, inside the ranges, log-uniform in log space, and
prefix-stable (a bigger budget extends a study instead of replacing its trials)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.sweeps.config import ParamSpec
from training.sweeps.space import from_unit, sample_params, unit_points

LR = ParamSpec("optim.lr", "log_uniform", (1e-4, 1e-1))
BATCH = ParamSpec("data.batch_size", "choice", (16, 32, 64, 128))
WIDTH = ParamSpec("model.kwargs.hidden_units", "int_uniform", (4, 7))
DROPOUT = ParamSpec("model.kwargs.dropout", "uniform", (0.0, 0.5))


@pytest.mark.parametrize("sampler", ["sobol", "random"])
def test_the_seed_fixes_the_points(sampler: str) -> None:
    a = sample_params([LR, BATCH], 6, sampler, seed=3)
    assert a == sample_params([LR, BATCH], 6, sampler, seed=3)
    assert a != sample_params([LR, BATCH], 6, sampler, seed=4)


@pytest.mark.parametrize("sampler", ["sobol", "random"])
def test_a_bigger_budget_keeps_the_earlier_points(sampler: str) -> None:
    assert sample_params([LR, BATCH], 16, sampler)[:5] == sample_params([LR, BATCH], 5, sampler)


@pytest.mark.parametrize("sampler", ["sobol", "random"])
def test_values_stay_in_their_ranges(sampler: str) -> None:
    for point in sample_params([LR, BATCH, WIDTH, DROPOUT], 64, sampler, seed=1):
        assert 1e-4 <= point["optim.lr"] <= 1e-1
        assert point["data.batch_size"] in BATCH.values
        assert point["model.kwargs.hidden_units"] in (4, 5, 6, 7)
        assert isinstance(point["model.kwargs.hidden_units"], int)
        assert 0.0 <= point["model.kwargs.dropout"] <= 0.5


def test_log_uniform_maps_the_unit_interval_in_log_space() -> None:
    assert from_unit(LR, 0.0) == pytest.approx(1e-4)
    assert from_unit(LR, 0.5) == pytest.approx(math.sqrt(1e-4 * 1e-1), rel=1e-2)
    assert from_unit(LR, 1.0) <= 1e-1  # the upper bound is never exceeded, even at u=1
    lrs = [p["optim.lr"] for p in sample_params([LR], 256, "random", seed=0)]
    decades = np.histogram(np.log10(lrs), bins=[-4, -3, -2, -1])[0]
    assert decades.min() > 60  # each decade gets about a third, as log-uniform means


def test_rounding_keeps_three_digits_and_the_bounds() -> None:
    tight = ParamSpec("optim.lr", "log_uniform", (1.2345e-4, 1.2346e-4))
    for u in (0.0, 0.3, 0.999):
        assert 1.2345e-4 <= from_unit(tight, u) <= 1.2346e-4
    assert from_unit(LR, 0.37) == float(f"{from_unit(LR, 0.37):.3g}")


def test_sobol_spreads_eight_points_evenly() -> None:
    points = unit_points(8, 2, "sobol", seed=0)
    for dim in range(2):  # a (0, 3, 2)-net: one point in each eighth of every axis
        assert sorted(np.floor(points[:, dim] * 8).astype(int).tolist()) == list(range(8))
    batches = [p["data.batch_size"] for p in sample_params([LR, BATCH], 8, "sobol")]
    assert sorted(batches) == sorted(BATCH.values * 2)  # every choice exactly twice


def test_zero_points_and_bad_samplers() -> None:
    assert unit_points(0, 2, "sobol", 0).shape == (0, 2)
    with pytest.raises(ValueError, match="sampler"):
        unit_points(4, 2, "grid", 0)


def test_log_scale_hint_for_plots() -> None:
    assert LR.log_scale and BATCH.log_scale
    assert not DROPOUT.log_scale and not ParamSpec("x", "choice", ("a", "b")).log_scale
