"""The host a model runs on: how many cores this process may use, counted by one rule.

Training (data-loader workers), the handlers (torch threads per worker), the archiver and
the benchmarks all size their work by it. The CPU affinity mask is the rule, not
`os.cpu_count()`: a container or `taskset` that grants 2 of 64 cores must get 2 threads.
"""

from __future__ import annotations

import os

SMALL_PARAMS = 2_000_000
"""Models up to this many parameters are small: a request is mostly Python and IPC, so the
Java frontend that moves every request needs a core of its own (measurements in
bench/history/)."""


def torch_threads(cores: int, workers: int, num_params: int | None = None) -> int:
    """Torch threads for each of `workers` worker processes sharing `cores` cores.

    The one rule of the archiver and the handler: a small model (or one of unknown size)
    leaves a core to TorchServe's frontend, `(cores - 1) // workers`; a larger model's
    forward pass outweighs the frontend's work and gets `cores // workers`. At least 1.
    """
    small = num_params is None or num_params <= SMALL_PARAMS
    spare = cores - 1 if small else cores
    return max(1, spare // max(1, workers))


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1
