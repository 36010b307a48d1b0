"""A small per-epoch progress bar that wraps a DataLoader.

Drawn only on an interactive terminal: when stderr is not a TTY (logs, pipes, pytest) or the
`CI` environment variable is set, it stays silent and the loop's per-epoch log line is all
the output. No dependency (tqdm is not required).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO, TypeVar

T = TypeVar("T")

WIDTH = 24
REFRESH_S = 0.1


def progress_enabled(stream: TextIO | None = None) -> bool:
    """True when a bar is useful: a terminal, and not running in CI."""
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("CI")


class Progress:
    """`for batch in Progress(loader, "epoch 3/10"):` with `bar.postfix = {...}` updates."""

    def __init__(
        self,
        iterable: Iterable[T],
        desc: str,
        total: int | None = None,
        enabled: bool | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.iterable = iterable
        self.desc = desc
        self.total = total if total is not None else _length(iterable)
        self.stream = stream or sys.stderr
        self.enabled = progress_enabled(self.stream) if enabled is None else enabled
        self.postfix: dict[str, Any] = {}

    def __iter__(self) -> Iterator[T]:
        start = last = time.perf_counter()
        count = 0
        for count, item in enumerate(self.iterable, 1):
            yield item
            now = time.perf_counter()
            if self.enabled and now - last >= REFRESH_S:
                self._draw(count, now - start)
                last = now
        if self.enabled:
            self._draw(count, time.perf_counter() - start)
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, count: int, elapsed: float) -> None:
        self.stream.write("\r" + self.render(count, elapsed))
        self.stream.flush()

    def render(self, count: int, elapsed: float) -> str:
        """One line: description, bar, count, rate, postfix values."""
        rate = count / elapsed if elapsed > 0 else 0.0
        if self.total:
            filled = int(WIDTH * min(count, self.total) / self.total)
            bar = f"[{'#' * filled}{'.' * (WIDTH - filled)}] {count}/{self.total}"
        else:
            bar = f"{count}"
        extra = " ".join(f"{k} {_fmt(v)}" for k, v in self.postfix.items())
        return f"{self.desc} {bar} {rate:.1f} it/s {extra}".rstrip()


def _length(iterable: Iterable[Any]) -> int | None:
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
