"""Latency statistics for one load level (percentiles, throughput, error counts) and for a
level's repeats (median and range, and whether a goal holds over the whole range).

Kept free of I/O so it is unit-tested exactly (tests/unit/test_bench_stats.py).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
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
    samples: list[bytes] = field(default_factory=list, repr=False)
    """A few successful response bodies, for the answer check (not written to the JSON)."""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["samples"]
        return out


def summarize(
    latencies_s: Sequence[float],
    statuses: Sequence[int],
    wall_s: float,
    concurrency: int,
    *,
    client_cpu: float = math.nan,
    errors: Sequence[str] = (),
    ok_statuses: frozenset[int] = frozenset({200}),
    samples: Sequence[bytes] = (),
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
        samples=list(samples),
    )


def ratio(numerator: float, denominator: float) -> float:
    """`numerator / denominator`, NaN when either is missing or the denominator is 0."""
    if denominator is None or numerator is None:
        return math.nan
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0:
        return math.nan
    return numerator / denominator


# ---- repeats ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    """One figure over repeated measurements: the median and the whole range.

    The tables print `median (min-max)`; a goal counts as met only when the whole range
    clears it (`meets`), so one lucky repeat cannot carry a claim.
    """

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        """The spread of `values`, NaNs ignored (NaN everywhere when nothing is left)."""
        finite = [v for v in values if v is not None and not math.isnan(v)]
        if not finite:
            return cls(math.nan, math.nan, math.nan)
        return cls(statistics.median(finite), min(finite), max(finite))

    @classmethod
    def from_dict(cls, data: Mapping[str, float] | float | None) -> Spread:
        """A spread from its JSON form (a single number is a spread of one)."""
        if data is None:
            return cls(math.nan, math.nan, math.nan)
        if isinstance(data, int | float):
            return cls(float(data), float(data), float(data))
        return cls(data["median"], data["min"], data["max"])

    def to_dict(self) -> dict[str, float]:
        return {"median": self.median, "min": self.low, "max": self.high}

    @property
    def missing(self) -> bool:
        return math.isnan(self.median)

    def over(self, other: Spread) -> Spread:
        """This spread divided by `other`: median over median, and the widest range the
        repeats allow (lowest over highest, highest over lowest). The repeats of two servers
        are separate runs, not pairs, so no repeat's ratio is more right than another's."""
        return Spread(
            ratio(self.median, other.median),
            ratio(self.low, other.high),
            ratio(self.high, other.low),
        )

    def minus(self, other: Spread) -> Spread:
        """This spread minus `other`, with the widest range the repeats allow."""
        return Spread(self.median - other.median, self.low - other.high, self.high - other.low)

    def meets(self, threshold: float, *, above: bool = True, strict: bool = False) -> bool:
        """Whether the WHOLE range clears `threshold` (above it, or below with above=False);
        never for a missing figure."""
        if self.missing or math.isnan(self.low) or math.isnan(self.high):
            return False
        if above:
            return self.low > threshold if strict else self.low >= threshold
        return self.high < threshold if strict else self.high <= threshold

    def text(self, digits: int = 1) -> str:
        """`median (min-max)`, or `-` when missing."""
        if self.missing:
            return "-"
        return f"{fmt(self.median, digits)} ({fmt(self.low, digits)}-{fmt(self.high, digits)})"


def fmt(value: float | None, digits: int = 1) -> str:
    """A table number: `-` when missing, no decimals from 100 up."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}f}"


SPREAD_KEYS = ("rps", "p50_ms", "p95_ms", "p99_ms", "mean_ms")


def combine_repeats(repeats: Sequence[LevelResult]) -> dict[str, Any]:
    """One concurrency level over its repeats: each figure as a spread, the counts summed,
    the load generator's CPU at its highest, and every repeat kept as measured."""
    if not repeats:
        raise ValueError("at least one repeat is needed")
    concurrency = {r.concurrency for r in repeats}
    if len(concurrency) != 1:
        raise ValueError(f"repeats of different levels: {sorted(concurrency)}")
    statuses: Counter[str] = Counter()
    for r in repeats:
        statuses.update(r.statuses)
    out: dict[str, Any] = {
        "concurrency": repeats[0].concurrency,
        "repeats": [r.to_dict() for r in repeats],
        "requests": sum(r.requests for r in repeats),
        "ok": sum(r.ok for r in repeats),
        "wall_s": Spread.of([r.wall_s for r in repeats]).to_dict(),
        "client_cpu": max((r.client_cpu for r in repeats), default=math.nan),
        "statuses": dict(sorted(statuses.items())),
        "errors": sorted({e for r in repeats for e in r.errors})[:5],
    }
    for key in SPREAD_KEYS:
        out[key] = Spread.of([getattr(r, key) for r in repeats]).to_dict()
    return out
