"""The machine a run measured on: cores, device, and whether it was busy.

A busy machine (other processes on its cores) makes every figure noisy and every ratio
suspect, so the run records the 1-, 5- and 15-minute load averages at its start and end, and
a busy start keeps the run from replacing `bench/latest.*` unless `--allow-busy` says so (the
report then says it was busy). Kept free of I/O but `os.getloadavg` so it is unit-tested.
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from model_src import available_cores

log = logging.getLogger("tools.bench")

BUSY_LOAD_PER_CORE = 0.25
"""Load average per core above which the machine counts as busy at the start of a run (0.5
on 2 cores: an idle VM sits near 0.0-0.2)."""


def cores() -> int:
    """The cores this process may run on (model_src.available_cores, the one rule)."""
    return available_cores()


def loadavg() -> list[float]:
    """The 1-, 5- and 15-minute load averages, rounded."""
    return [round(x, 2) for x in os.getloadavg()]


def busy_reason(load: Sequence[float], core_count: int) -> str | None:
    """Why the machine counts as busy at a run's start, or None when it is idle: the 1- or
    5-minute load average above `BUSY_LOAD_PER_CORE` per core (the 15-minute one is recorded,
    but it still remembers work that has ended)."""
    limit = BUSY_LOAD_PER_CORE * core_count
    one, five = load[0], load[1]
    if one > limit or five > limit:
        return (
            f"load average {one:.2f} (1 min) / {five:.2f} (5 min) above {limit:.2f} "
            f"({BUSY_LOAD_PER_CORE} per core x {core_count} cores)"
        )
    return None


def wait_until_idle(
    core_count: int,
    timeout_s: float,
    *,
    poll_s: float = 15.0,
    read: Callable[[], list[float]] = loadavg,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[float]:
    """Wait up to `timeout_s` for the machine to count as idle by `busy_reason`; the load
    average then (or at the timeout, when the run goes on and is marked busy).

    Why: the 5-minute load average remembers the last few minutes, and `make bench` itself
    installs and archives just before it measures, so a run started right after other work
    is refused publication although the machine is quiet by then. Waiting costs minutes; a
    refused 100-minute run costs the run.
    """
    deadline = clock() + timeout_s
    next_note = clock()
    while True:
        load = read()
        reason = busy_reason(load, core_count)
        if reason is None or clock() >= deadline:
            return load
        if clock() >= next_note:
            left = deadline - clock()
            log.info("waiting for an idle machine (%s), %.0f s left", reason, left)
            next_note = clock() + 60.0
        sleep(min(poll_s, max(0.0, deadline - clock())))


def may_publish(busy: str | None, allow_busy: bool) -> bool:
    """Whether a run may replace `bench/latest.*`: an idle start, or `--allow-busy`."""
    return busy is None or allow_busy


def machine_info() -> dict[str, Any]:
    """What every row is measured on (cores, GPU or not), for the table and the file name."""
    count = cores()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    device = f"GPU {gpu}" if gpu else "CPU"
    return {
        "host": socket.gethostname(),
        "cores": count,
        "device": "GPU" if gpu else "CPU",
        "gpu": gpu,
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "description": f"{count} cores, {device}, torch {torch.__version__}, "
        f"{platform.python_implementation()} {platform.python_version()}",
    }
