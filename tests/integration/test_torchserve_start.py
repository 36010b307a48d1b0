"""The README's line, exactly: `make archive && torchserve --start` from the repo root (issue 19).

Run in a clone of the repository (its tracked files) with nothing but the venv activated: no
TS_CONFIG_FILE of the test's own, the working directory at the clone's root. Two things are
set up first, neither of which the user types: the clone gets the session's tiny checkpoints
(so `make archive` does not train for minutes), and free loopback ports in its
config.properties (so it cannot collide with another server). TMPDIR is private, because
TorchServe keeps its pid file there and only one server may run per TMPDIR.

Then: both models and the pipeline answer; `torchserve --stop` stops it; started by hand
again, `make stop` stops it too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tools.client import Client
from tools.sandbox import free_ports
from tools.serve import STATE_FILE, TS_PID_FILE
from tools.tsconfig import rewrite_properties

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV = REPO_ROOT / ".venv"
STAMP = VENV / ".cvserve-installed"
START_TIMEOUT = 300


def _tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout
    return [name for name in out.decode().split("\0") if name]


@pytest.fixture
def clone(tmp_path: Path, checkpoint_root: Path) -> Path:
    """The repository's tracked files, the venv linked in, tiny checkpoints, free ports."""
    if not STAMP.is_file() or shutil.which("git") is None:
        pytest.skip("needs `make install` (the venv and its stamp) and git")
    root = tmp_path / "cvserve"
    for name in _tracked_files():
        source = REPO_ROOT / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, root / name)
    # Older than the install stamp, as in a clone that `make install` has run in: make must
    # not reinstall into the shared venv from this copy.
    past = STAMP.stat().st_mtime - 60
    for path in root.rglob("*"):
        os.utime(path, (past, past))
    (root / ".venv").symlink_to(VENV)
    shutil.copytree(checkpoint_root, root / "checkpoints")
    http, mgmt, metrics, grpc_inf, grpc_mgmt = free_ports(5)
    config = root / "config.properties"
    text = rewrite_properties(
        config.read_text(encoding="utf-8"),
        {
            "inference_address": f"http://127.0.0.1:{http}",
            "management_address": f"http://127.0.0.1:{mgmt}",
            "metrics_address": f"http://127.0.0.1:{metrics}",
            "grpc_inference_port": str(grpc_inf),
            "grpc_management_port": str(grpc_mgmt),
        },
    )
    config.write_text(text, encoding="utf-8")
    os.utime(config, (past, past))
    (root / "tmp").mkdir()
    return root


def _shell(root: Path, command: str, timeout: float = 600) -> tuple[int, str]:
    """`command` in bash with the venv activated, and nothing else of this process's env:
    (exit status, output). Output goes through a file: the server that `torchserve --start`
    leaves running keeps its inherited descriptors open, so a pipe would never end."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(root)),
        "LANG": "C.UTF-8",
        "TMPDIR": str(root / "tmp"),
    }
    out = root / "tmp" / "shell.out"
    with out.open("w") as sink:
        done = subprocess.run(
            ["bash", "-c", f"source .venv/bin/activate && {command}"],
            cwd=root, env=env, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            timeout=timeout, check=False,
        )  # fmt: skip
    return done.returncode, out.read_text(errors="replace")


def _server_pid(root: Path) -> int | None:
    try:
        return int((root / "tmp" / TS_PID_FILE).read_text().split()[0])
    except (OSError, ValueError):
        return None


def _wait_until_serving(root: Path, timeout: float = START_TIMEOUT) -> Client:
    """The clone's server answering with both models READY and the workflow registered."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            client = Client(root / "config.properties", root / "key_file.json", timeout=30)
            workflows = [w["workflowName"] for w in client.workflows()]
            ready = {
                name: client.describe(name)[0]["workers"][0]["status"]
                for name in ("digit_classifier", "digit_segmenter")
            }
            if workflows == ["digit_pipeline"] and set(ready.values()) == {"READY"}:
                return client
        except Exception as exc:  # not up yet: no key file, refused, models loading
            last = exc
        time.sleep(1)
    log = root / "logs" / "ts_log.log"
    tail = log.read_text(errors="replace")[-3000:] if log.is_file() else "no log"
    raise AssertionError(f"not serving after {timeout} s: {last!r}\n{tail}")


def _wait_stopped(pid: int, timeout: float = 60) -> None:
    try:
        psutil.Process(pid).wait(timeout=timeout)
    except psutil.NoSuchProcess:
        return


def test_make_archive_and_torchserve_start_as_written(clone: Path, digits, scene) -> None:
    code, output = _shell(clone, "make archive && torchserve --start")
    assert code == 0, output
    assert "Missing mandatory parameter" not in output
    pid = _server_pid(clone)
    assert pid, output
    try:
        client = _wait_until_serving(clone)
        assert client.predict(digits[0][0], "digit_classifier")["version"] == "1.0"
        body = client.pipeline(scene[0])
        assert body["models"]["classifier"] == {"name": "digit_classifier", "version": "1.0"}
        assert (clone / "model_store" / "digit_pipeline.war").is_file()
    finally:
        code, output = _shell(clone, "torchserve --stop", timeout=120)
        _wait_stopped(pid)
    assert code == 0, output
    assert not psutil.pid_exists(pid) or not psutil.Process(pid).is_running()

    # Mixed: started by hand, stopped with `make stop`.
    code, output = _shell(clone, "torchserve --start")
    assert code == 0, output
    pid = _server_pid(clone)
    assert pid
    try:
        _wait_until_serving(clone)
        assert not (clone / STATE_FILE).exists()  # not started through tools.serve
        code, output = _shell(clone, "make stop", timeout=180)
        assert code == 0, output
        assert "TorchServe stopped" in output
        _wait_stopped(pid, timeout=10)
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    finally:
        _shell(clone, "torchserve --stop", timeout=120)
