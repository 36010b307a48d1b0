"""tools.bench.machine and the run's refusal to publish a busy-machine run to
bench/latest.* (a real limit-only run, with the load average replaced)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

import pytest

import tools.bench.__main__ as bench
from tools.bench import machine
from tools.bench.machine import BUSY_LOAD_PER_CORE, busy_reason, may_publish, wait_until_idle


def test_busy_by_the_one_or_five_minute_load() -> None:
    limit = BUSY_LOAD_PER_CORE * 2
    assert busy_reason([0.1, 0.2, 3.0], 2) is None  # the 15-minute one remembers ended work
    assert busy_reason([limit, limit, 0.0], 2) is None
    reason = busy_reason([1.19, 2.53, 2.53], 2)
    assert reason is not None and "1.19" in reason and "2.53" in reason
    assert busy_reason([0.1, limit + 0.01, 0.0], 2) is not None
    assert busy_reason([1.5, 1.5, 1.5], 8) is None  # per core


def test_may_publish() -> None:
    assert may_publish(None, False)
    assert not may_publish("load 3.0", False)
    assert may_publish("load 3.0", True)


def _run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    load: list[float] | Callable[[], list[float]],
    *extra: str,
) -> int:
    (tmp_path / "repo" / "bench").mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(bench, "REPO_ROOT", tmp_path / "repo")
    monkeypatch.setattr(bench, "loadavg", load if callable(load) else lambda: load)
    argv = [
        "--only", "classifier", "--duration", "0.05", "--repeats", "1", "--levels", "1",
        "--skip", "peers,torchserve,training", "--out", str(tmp_path / "out"), "--publish",
        *extra,
    ]  # fmt: skip
    return bench.main(argv)


def test_busy_run_is_written_to_results_but_not_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _run(tmp_path, monkeypatch, [3.0, 2.0, 1.0]) == 3
    latest = tmp_path / "repo" / "bench" / "latest.md"
    assert not latest.exists()
    [result] = (tmp_path / "out").glob("*-busy.json")
    assert json.loads(result.read_text())["busy"].startswith("load average 3.00")
    text = result.with_suffix(".md").read_text()
    assert "**BUSY machine**" in text and "Not published to bench/latest" in text


def test_allow_busy_publishes_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _run(tmp_path, monkeypatch, [3.0, 2.0, 1.0], "--allow-busy") == 0
    text = (tmp_path / "repo" / "bench" / "latest.md").read_text()
    assert "**BUSY machine**" in text and "--allow-busy" in text


def test_idle_run_publishes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _run(tmp_path, monkeypatch, [0.0, 0.1, 0.5]) == 0
    text = (tmp_path / "repo" / "bench" / "latest.md").read_text()
    assert "BUSY" not in text and "Idle at the start" in text


class _FakeClock:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_wait_until_idle_returns_the_first_idle_load() -> None:
    loads = iter([[2.0, 1.5, 1.0], [0.9, 0.8, 1.0], [0.2, 0.4, 0.9], [9.0, 9.0, 9.0]])
    clock = _FakeClock()
    load = wait_until_idle(
        2, 600, poll_s=15, read=lambda: next(loads), sleep=clock.sleep, clock=clock
    )
    assert load == [0.2, 0.4, 0.9]
    assert clock.slept == [15, 15]


def test_wait_until_idle_gives_up_at_the_timeout_with_the_busy_load() -> None:
    clock = _FakeClock()
    load = wait_until_idle(
        2, 40, poll_s=15, read=lambda: [3.0, 3.0, 3.0], sleep=clock.sleep, clock=clock
    )
    assert load == [3.0, 3.0, 3.0] and busy_reason(load, 2) is not None
    assert clock.now == 40 and clock.slept == [15, 15, 10]


def test_wait_idle_flag_waits_before_the_run_records_its_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = iter([[3.0, 2.0, 1.0], [0.1, 0.2, 0.9]] + [[0.1, 0.2, 0.9]] * 10)
    slept: list[float] = []
    no_sleep = functools.partial(machine.wait_until_idle, sleep=slept.append)
    monkeypatch.setattr(bench, "wait_until_idle", no_sleep)
    assert _run(tmp_path, monkeypatch, lambda: next(loads), "--wait-idle", "60") == 0
    assert slept == [15.0]  # one busy reading, then idle
    [result] = (tmp_path / "out").glob("*.json")
    assert json.loads(result.read_text())["loadavg"] == [0.1, 0.2, 0.9]
