"""The README's first command, serving part: `python -m tools.serve start`, one call, `stop`.

A second TorchServe next to the session one: its own config copy on free ports, its own
working directory (logs/, key_file.json) and TMPDIR/TEMP, exactly as `make serve` runs it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tools.client import Client
from tools.sandbox import kill_strays, sandbox_spec
from tools.serve import busy_ports, running_server, stop

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


def serve(spec, command: str, timeout: float = 400) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "tools.serve",
        command,
        "--workdir",
        str(spec.workdir),
        "--config",
        str(spec.config),
        "--model-store",
        str(spec.model_store),
    ]
    return subprocess.run(
        cmd,
        cwd=REPO_ROOT,
        env=spec.process_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_start_call_stop(tmp_path, model_store, digits) -> None:
    spec = sandbox_spec(model_store, tmp_path / "serve")
    try:
        started = serve(spec, "start")
        assert started.returncode == 0, started.stdout + started.stderr
        assert "TorchServe started" in started.stdout
        assert "Authorization: Bearer" in started.stdout and "curl" in started.stdout
        assert (spec.workdir / "key_file.json").is_file()
        assert (spec.workdir / "logs" / "ts_log.log").is_file()

        client = Client(spec.config, spec.key_file)
        assert client.predict(digits[0][0], "digit_classifier")["version"] == "1.0"
        assert [w["workflowName"] for w in client.workflows()] == ["digit_pipeline"]

        again = serve(spec, "start")  # `make serve` twice does not start a second server
        assert again.returncode == 0 and "already running" in again.stdout
        status = serve(spec, "status")
        assert '"running": true' in status.stdout

        stopped = serve(spec, "stop")
        assert stopped.returncode == 0 and "stopped" in stopped.stdout
        assert running_server(spec) is None
        assert not busy_ports(spec.addresses)
        assert not (spec.workdir / "key_file.json").exists()
        assert "not running" in serve(spec, "stop").stdout
    finally:
        stop(spec)
        kill_strays(spec)
