"""The host a model runs on: how many cores this process may use, counted by one rule.

Training (data-loader workers), the handlers (torch threads per worker), the archiver and
the benchmarks all size their work by it. The CPU affinity mask is the rule, not
`os.cpu_count()`: a container or `taskset` that grants 2 of 64 cores must get 2 threads.
"""

from __future__ import annotations

import os


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1
