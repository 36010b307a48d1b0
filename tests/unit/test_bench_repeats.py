"""tools.bench.stats over repeats: spreads, ratios of spreads, goals met over the whole range,
and a level's repeats combined (exact values, nothing timed)."""

from __future__ import annotations

import math

import pytest

from tools.bench.stats import Spread, combine_repeats, summarize


def test_spread_of_values_ignores_missing() -> None:
    assert Spread.of([3.0, 1.0, 2.0]) == Spread(2.0, 1.0, 3.0)
    assert Spread.of([4.0, math.nan, 2.0]) == Spread(3.0, 2.0, 4.0)
    assert Spread.of([]).missing and Spread.of([math.nan]).missing
    assert Spread.of([5.0]) == Spread(5.0, 5.0, 5.0)


def test_spread_json_round_trip_and_text() -> None:
    s = Spread(55.0, 53.1, 57.25)
    assert Spread.from_dict(s.to_dict()) == s
    assert Spread.from_dict(7) == Spread(7.0, 7.0, 7.0)
    assert Spread.from_dict(None).missing
    assert s.text() == "55.0 (53.1-57.2)"
    assert Spread(0.81, 0.75, 0.9).text(2) == "0.81 (0.75-0.90)"
    assert Spread.of([]).text() == "-"


def test_ratio_of_spreads_takes_the_widest_range() -> None:
    served, limit = Spread(50.0, 40.0, 60.0), Spread(100.0, 80.0, 125.0)
    r = served.over(limit)
    assert r.median == pytest.approx(0.5)
    assert r.low == pytest.approx(40.0 / 125.0) and r.high == pytest.approx(60.0 / 80.0)
    assert served.over(Spread.of([])).missing
    d = Spread(10.0, 9.0, 12.0).minus(Spread(2.0, 1.0, 3.0))
    assert (d.median, d.low, d.high) == (8.0, 6.0, 11.0)


def test_goal_counts_only_when_the_whole_range_clears_it() -> None:
    # the median clears 0.8 but one repeat does not: not met
    assert not Spread(0.85, 0.78, 0.9).meets(0.8)
    assert Spread(0.85, 0.80, 0.9).meets(0.8)
    assert not Spread(0.85, 0.80, 0.9).meets(0.8, strict=True)
    assert Spread(1.2, 1.01, 1.3).meets(1.0, strict=True)
    # below a threshold (latency overhead < 3 ms): the highest repeat decides
    assert Spread(2.0, 1.5, 2.9).meets(3.0, above=False, strict=True)
    assert not Spread(2.0, 1.5, 3.1).meets(3.0, above=False, strict=True)
    assert not Spread.of([]).meets(0.0)
    assert not Spread(1.0, math.nan, 2.0).meets(0.0)


def test_combine_repeats_spreads_figures_and_sums_counts() -> None:
    repeats = [
        summarize([0.01, 0.02], [200, 200], wall_s=1.0, concurrency=8, client_cpu=0.1),
        summarize([0.03, 0.04, 1.0], [200, 200, 503], wall_s=1.0, concurrency=8, client_cpu=0.3),
        summarize([0.05], [200], wall_s=2.0, concurrency=8, errors=["503: busy"]),
    ]
    level = combine_repeats(repeats)
    assert level["concurrency"] == 8 and len(level["repeats"]) == 3
    assert level["requests"] == 6 and level["ok"] == 5
    assert level["rps"] == {"median": 2.0, "min": 0.5, "max": 2.0}
    assert level["p50_ms"]["min"] == pytest.approx(15.0)
    assert level["p50_ms"]["max"] == pytest.approx(50.0)
    assert level["statuses"] == {"200": 5, "503": 1}
    assert level["client_cpu"] == pytest.approx(0.3)
    assert "samples" not in level["repeats"][0]


def test_combine_repeats_refuses_mixed_levels_and_nothing() -> None:
    with pytest.raises(ValueError):
        combine_repeats([])
    a = summarize([0.01], [200], wall_s=1.0, concurrency=1)
    b = summarize([0.01], [200], wall_s=1.0, concurrency=8)
    with pytest.raises(ValueError):
        combine_repeats([a, b])
