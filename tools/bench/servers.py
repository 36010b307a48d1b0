"""Start a peer server (Flask or LitServe) as a subprocess and wait until it answers.

Peers run in their own process so their Python interpreter (and GIL) is not the load
generator's, like TorchServe's workers. Always stopped (whole process group) on exit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from tools.sandbox import free_ports

log = logging.getLogger("tools.bench.servers")


@contextlib.contextmanager
def peer_server(
    module: str,
    args: Sequence[str],
    ping_path: str,
    *,
    log_file: Path,
    timeout: float = 180,
) -> Iterator[str]:
    """Run `python -m module ... --port P`; yield `http://127.0.0.1:P` once `ping_path` is 200."""
    port = free_ports(1)[0]
    cmd = [sys.executable, "-m", module, *args, "--port", str(port)]
    with log_file.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{module} exited ({proc.returncode}); see {log_file}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{module} not up after {timeout:.0f} s; see {log_file}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(base + ping_path, timeout=2) as resp,
            ):
                if resp.status == 200:
                    break
            time.sleep(0.3)
        yield base
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (LitServe forks workers), SIGKILL if it lingers."""
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
