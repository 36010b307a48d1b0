"""Latency statistics for one load level: percentiles, throughput, error counts.

Kept free of I/O so it is unit-tested exactly (tests/unit/test_bench_stats.py).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0..100) with linear interpolation between closest ranks.

    Same definition as numpy's default ("linear"), written out so the stats module needs no
    numpy and its tests can check exact values. NaN for an empty sequence.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class LevelResult:
    """One (target, server, concurrency) measurement.

    `rps` counts successful requests only, so a server that answers fast with errors does not
    look good. Latencies are in milliseconds and cover successful requests only.
    `client_cpu` is the load generator's own CPU time / wall time (1.0 = one full core): when
    it approaches the core count the generator, not the server, is the bottleneck.
    """

    concurrency: int
    requests: int
    ok: int
    wall_s: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    client_cpu: float = math.nan
    statuses: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(
    latencies_s: Sequence[float],
    statuses: Sequence[int],
    wall_s: float,
    concurrency: int,
    *,
    client_cpu: float = math.nan,
    errors: Sequence[str] = (),
    ok_statuses: frozenset[int] = frozenset({200}),
) -> LevelResult:
    """Summarise per-request latencies (seconds) and statuses measured over `wall_s`."""
    if len(latencies_s) != len(statuses):
        raise ValueError("one latency per status is needed")
    good = [lat * 1000 for lat, st in zip(latencies_s, statuses, strict=True) if st in ok_statuses]
    counts = Counter(str(s) for s in statuses)
    return LevelResult(
        concurrency=concurrency,
        requests=len(statuses),
        ok=len(good),
        wall_s=wall_s,
        rps=len(good) / wall_s if wall_s > 0 else math.nan,
        p50_ms=percentile(good, 50),
        p95_ms=percentile(good, 95),
        p99_ms=percentile(good, 99),
        mean_ms=sum(good) / len(good) if good else math.nan,
        client_cpu=client_cpu,
        statuses=dict(sorted(counts.items())),
        errors=sorted(set(errors))[:5],
    )


def ratio(numerator: float, denominator: float) -> float:
    """`numerator / denominator`, NaN when either is missing or the denominator is 0."""
    if denominator is None or numerator is None:
        return math.nan
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0:
        return math.nan
    return numerator / denominator
