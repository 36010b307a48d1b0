"""tools.bench.stats: percentiles and level summaries are exact (no timing involved)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tools.bench.stats import percentile, ratio, summarize


@pytest.mark.parametrize("q", [0, 1, 25, 50, 90, 95, 99, 100])
def test_percentile_matches_numpy_linear(q: float) -> None:
    values = [float(v) for v in np.random.default_rng(0).exponential(10.0, size=37)]
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_edge_cases() -> None:
    assert math.isnan(percentile([], 50))
    assert percentile([3.0], 99) == 3.0
    assert percentile([1.0, 2.0], 50) == 1.5
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize_counts_only_successes() -> None:
    latencies = [0.010, 0.020, 0.030, 5.0]
    statuses = [200, 200, 200, 503]
    result = summarize(latencies, statuses, wall_s=2.0, concurrency=4, errors=["503: busy"])
    assert result.requests == 4 and result.ok == 3
    assert result.rps == pytest.approx(1.5)
    assert result.p50_ms == pytest.approx(20.0)
    assert result.mean_ms == pytest.approx(20.0)
    assert result.statuses == {"200": 3, "503": 1}
    assert result.errors == ["503: busy"]
    assert result.to_dict()["concurrency"] == 4


def test_summarize_all_failed_gives_nan_latency() -> None:
    result = summarize([0.1], [0], wall_s=1.0, concurrency=1)
    assert result.ok == 0 and result.rps == 0 and math.isnan(result.p95_ms)


def test_summarize_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError):
        summarize([0.1, 0.2], [200], wall_s=1.0, concurrency=1)


def test_ratio() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert math.isnan(ratio(1.0, 0.0))
    assert math.isnan(ratio(math.nan, 2.0))
