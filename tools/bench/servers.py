"""Start a peer server (Flask, gunicorn or LitServe) as a subprocess and wait until it answers.

Peers run in their own processes so their Python interpreter (and GIL) is not the load
generator's, like TorchServe's workers. Each serving process writes what it runs (torch
threads, compiled or not) into a runtime folder (`subjects.write_runtime`); the server counts
as up when it answers its ping AND every expected process has written its record (gunicorn
answers as soon as its first worker is up; a compiling worker takes tens of seconds).
Always stopped (whole process group) on exit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from tools.sandbox import free_ports

log = logging.getLogger("tools.bench.servers")


@contextlib.contextmanager
def peer_server(
    command: Callable[[int], Sequence[str]],
    ping_path: str,
    *,
    log_file: Path,
    runtime_dir: Path | None = None,
    processes: int = 0,
    env: Mapping[str, str] | None = None,
    timeout: float = 400,
) -> Iterator[str]:
    """Run `command(port)`; yield `http://127.0.0.1:P` once `ping_path` answers 200 and
    `processes` runtime records are in `runtime_dir`."""
    port = free_ports(1)[0]
    cmd = list(command(port))
    name = Path(cmd[2] if len(cmd) > 2 and cmd[1] == "-m" else cmd[0]).name
    with log_file.open("w") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        up = False
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited ({proc.returncode}); see {log_file}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not up after {timeout:.0f} s; see {log_file}")
            if not up:
                with (
                    contextlib.suppress(OSError),
                    urllib.request.urlopen(base + ping_path, timeout=2) as resp,
                ):
                    up = resp.status == 200
            records = len(list(runtime_dir.glob("*.json"))) if runtime_dir else processes
            if up and records >= processes:
                break
            time.sleep(0.3)
        yield base
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (LitServe and gunicorn fork workers), SIGKILL if it
    lingers."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
