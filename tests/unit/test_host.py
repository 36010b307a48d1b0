"""model_src.available_cores: the one rule every part of cvserve counts cores by."""

from __future__ import annotations

import os

import pytest

from model_src import available_cores


def test_the_affinity_mask_is_the_rule(monkeypatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert available_cores() == 2  # a container granted 2 of 64 cores


@pytest.mark.parametrize(("count", "expected"), [(12, 12), (None, 1)])
def test_without_an_affinity_call_the_cpu_count(monkeypatch, count, expected) -> None:
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: count)
    assert available_cores() == expected
