#!/usr/bin/env python3
"""cvserve's container entrypoint and probes: TorchServe in the foreground, ready or dead.

    python deploy/entrypoint.py serve [--config deploy/k8s/config/config.properties] [--timeout 600]
    python deploy/entrypoint.py ready   # readiness/startup probe: exit 0 when ready
    python deploy/entrypoint.py live    # liveness probe: exit 0 while the frontend answers

`serve` runs `torchserve --start --foreground` from the working directory, waits until every
model of `load_models` has all its workers READY and every workflow of `load_workflows` is
registered (the patched frontend registers them itself; an unpatched one gets a
`POST /workflows` from here), then stays in the foreground until TorchServe exits, with
TorchServe's exit status. It exits non-zero when TorchServe dies, a model does not get READY
or a workflow does not register within `--timeout`: the kubelet (or any supervisor) restarts
it. SIGTERM/SIGINT stop the Java frontend gracefully (it stops its workers), then anything
left in the process group after `--grace` seconds is killed.

Nothing here needs the repo or a third-party package (standard library only, token auth off
as in the cluster config), so the same file runs as PID 1 in the image, as the kubelet's exec
probes, and outside a container on loopback ports (tests/integration/test_cluster_rehearsal.py,
test_deploy_entrypoint.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path

DEFAULT_CONFIG = os.environ.get("CVSERVE_CONFIG", "deploy/k8s/config/config.properties")
TS_PID_FILE = ".model_server.pid"
POLL_S = 0.5
#: How long after the models are READY the frontend may take to register load_workflows.
WORKFLOW_WAIT_S = 10.0
NOT_REGISTERED = "not registered (failed to load)"


def read_properties(path: str | Path) -> dict[str, str]:
    """`key=value` lines, `#`/`!` comments: what TorchServe's launcher reads."""
    props: dict[str, str] = {}
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", "!")):
            key, sep, value = line.partition("=")
            if sep:
                props[key.strip()] = value.strip()
    return props


def local_url(address: str) -> str:
    """A bind address as this host reaches it: 0.0.0.0 (every interface) -> 127.0.0.1."""
    return (
        address.rstrip("/").replace("://0.0.0.0:", "://127.0.0.1:").replace("://[::]:", "://[::1]:")
    )


class Server:
    """What one config file says about a TorchServe: its addresses, models and workflows."""

    def __init__(self, config: str | Path, workdir: str | Path | None = None) -> None:
        self.config = Path(config).resolve()
        self.workdir = Path(workdir or os.getcwd()).resolve()
        self.props = read_properties(self.config)
        self.inference = local_url(self.props.get("inference_address", "http://127.0.0.1:8080"))
        self.management = local_url(self.props.get("management_address", "http://127.0.0.1:8081"))
        store = Path(self.props.get("model_store", "model_store"))
        self.model_store = store if store.is_absolute() else self.workdir / store

    def model_names(self) -> list[str]:
        """Names of the `load_models` archives (from each manifest; the file stem otherwise)."""
        names = []
        for entry in _csv(self.props.get("load_models", "")):
            if "=" in entry:
                names.append(entry.split("=", 1)[0].strip())
                continue
            try:
                with zipfile.ZipFile(self.model_store / entry) as z:
                    manifest = json.loads(z.read("MAR-INF/MANIFEST.json"))
                names.append(manifest["model"]["modelName"])
            except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError):
                names.append(Path(entry).stem)
        return names

    def workflow_names(self) -> list[str]:
        return [Path(e).stem for e in _csv(self.props.get("load_workflows", ""))]

    # -- HTTP (token auth is off in the cluster config) -------------------------------------

    def get(self, base: str, path: str, timeout: float = 5) -> tuple[int, str]:
        return _request("GET", base + path, timeout)

    def unready(self, timeout: float = 5) -> list[str]:
        """What keeps this server from taking traffic (empty when ready)."""
        try:
            status, body = self.get(self.inference, "/ping", timeout)
        except OSError as exc:
            return [f"/ping: {exc}"]
        waiting = [] if status == 200 else [f"/ping answered {status} {body.strip()[:200]}"]
        for name in self.model_names():
            try:
                status, body = self.get(self.management, f"/models/{name}/all", timeout)
            except OSError as exc:
                return [*waiting, f"management API: {exc}"]
            if status == 404:
                # TorchServe registers load_models before it opens its ports: a model still
                # unknown once the management API answers failed to load (logs/ say why).
                waiting.append(f"model {name}: {NOT_REGISTERED}")
                continue
            workers = (
                [w for v in json.loads(body) for w in v.get("workers", [])] if status == 200 else []
            )
            states = sorted({str(w.get("status")) for w in workers})
            if states != ["READY"]:
                waiting.append(f"model {name}: {', '.join(states) or 'no workers'}")
        for name in self.workflow_names():
            try:
                status, _ = self.get(self.management, f"/workflows/{name}", timeout)
            except OSError as exc:
                return [*waiting, f"management API: {exc}"]
            if status != 200:
                waiting.append(f"workflow {name}: not registered")
        return waiting

    def register_workflow(self, name: str, timeout: float) -> None:
        """`POST /workflows?url=<name>.war` (what an unpatched frontend leaves undone)."""
        status, body = _request(
            "POST", f"{self.management}/workflows?url={name}.war", timeout=timeout
        )
        if status not in (200, 409):  # 409: registered meanwhile
            raise RuntimeError(f"registering workflow {name}: {status} {body.strip()[:500]}")


def _csv(value: str) -> list[str]:
    return [e.strip() for e in value.split(",") if e.strip() and e.strip().lower() != "all"]


def _request(method: str, url: str, timeout: float) -> tuple[int, str]:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------
# serve


def _log(message: str) -> None:
    print(f"[cvserve-entrypoint] {message}", file=sys.stderr, flush=True)


def _remove_stale_pid_file() -> None:
    """A pid file left by a killed server makes `torchserve --start` refuse to start."""
    tmp = Path(os.environ.get("TMPDIR") or "/tmp")
    pid_file = tmp / TS_PID_FILE
    try:
        pid = int(pid_file.read_text().strip() or 0)
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, 0)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"org.pytorch.serve.ModelServer" in cmdline:
            return  # a live server: let torchserve say so
    except OSError:
        pass
    pid_file.unlink(missing_ok=True)


def _children(pid: int) -> list[int]:
    """Direct children of `pid` (from /proc, no psutil in a probe's import path)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


class Foreground:
    """The `torchserve --foreground` launcher and the Java frontend it waits on."""

    def __init__(self, server: Server, grace: float) -> None:
        self.server, self.grace = server, grace
        self.stopping = False
        torchserve = shutil.which("torchserve") or str(Path(sys.executable).parent / "torchserve")
        cmd = [
            torchserve, "--start", "--foreground", "--ncs",
            "--ts-config", str(server.config), "--model-store", str(server.model_store),
        ]  # fmt: skip
        _remove_stale_pid_file()
        (server.workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(cmd, cwd=server.workdir)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self, *_: object) -> None:
        """SIGTERM the Java frontend (it stops its workers); kill what is left after `grace`."""
        if self.stopping:
            return
        self.stopping = True
        _log("stopping TorchServe")
        for pid in _children(self.proc.pid) or [self.proc.pid]:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)

    def wait(self) -> int:
        """Wait for the launcher; after a stop, kill stragglers of the process group."""
        while True:
            try:
                code = self.proc.wait(timeout=POLL_S)
                break
            except subprocess.TimeoutExpired:
                continue
        if self.stopping:
            deadline = time.monotonic() + self.grace
            while time.monotonic() < deadline and _workers_left(self.server):
                time.sleep(POLL_S)
            for pid in _workers_left(self.server):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        return code


def _workers_left(server: Server) -> list[int]:
    """Model workers of THIS server (their command line names its model store's temp copies).

    Workers are started by Java with `--sock-name <TMPDIR>/.ts.sock.<port>`; their TMPDIR is
    ours, so they are found by that marker and never another server's.
    """
    tmp = os.environ.get("TMPDIR") or "/tmp"
    marker = f"{tmp.rstrip('/')}/.ts.sock.".encode()
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return [pid for pid in found if pid != os.getpid()]


def serve(server: Server, timeout: float, grace: float) -> int:
    """Start TorchServe, wait until ready (register workflows if needed), stay until it exits."""
    ts = Foreground(server, grace)
    signal.signal(signal.SIGTERM, ts.terminate)
    signal.signal(signal.SIGINT, ts.terminate)
    deadline = time.monotonic() + timeout
    waiting: list[str] = ["start-up"]
    models_ready_at: float | None = None
    while ts.alive() and not ts.stopping and time.monotonic() < deadline:
        waiting = server.unready()
        if not waiting:
            break
        failed = [w for w in waiting if w.startswith("model ") and NOT_REGISTERED in w]
        if failed:
            waiting = failed
            break
        if all(w.startswith("workflow ") for w in waiting):
            models_ready_at = models_ready_at or time.monotonic()
            # The patched frontend registers load_workflows right after load_models; one still
            # missing a while after the models are READY means an unpatched frontend.
            if time.monotonic() - models_ready_at > WORKFLOW_WAIT_S:
                missing = [
                    n for n in server.workflow_names() if f"workflow {n}: not registered" in waiting
                ]
                try:
                    for name in missing:
                        _log(f"registering workflow {name} (the frontend did not)")
                        server.register_workflow(name, timeout=max(deadline - time.monotonic(), 1))
                except (RuntimeError, OSError) as exc:
                    _log(f"FAILED: {exc}")
                    ts.terminate()
                    ts.wait()
                    return 1
        time.sleep(POLL_S)
    if ts.stopping:
        return ts.wait()
    if not ts.alive():
        _log(f"TorchServe exited during start-up (status {ts.proc.returncode}); see logs/")
        ts.terminate()
        ts.wait()
        return ts.proc.returncode or 1
    if waiting:
        _log(f"FAILED, not ready: {'; '.join(waiting)}")
        ts.terminate()
        ts.wait()
        return 1
    models, workflows = server.model_names(), server.workflow_names()
    _log(f"ready: models {', '.join(models)}; workflows {', '.join(workflows) or 'none'}")
    code = ts.wait()
    if not ts.stopping:
        _log(f"TorchServe exited on its own (status {code})")
        return code or 1
    return 0


# ---------------------------------------------------------------------------------------------
# CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("serve", "ready", "live"))
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="TorchServe config.properties")
    parser.add_argument("--timeout", type=float, default=600, help="start-up limit (serve)")
    parser.add_argument("--grace", type=float, default=20, help="stop: seconds before SIGKILL")
    args = parser.parse_args(argv)
    server = Server(args.config)
    if args.command == "serve":
        return serve(server, args.timeout, args.grace)
    if args.command == "ready":
        waiting = server.unready(timeout=3)
        if waiting:
            print("; ".join(waiting))
        return 1 if waiting else 0
    try:  # live: the frontend answers at all (a worker restarting is not a reason to kill it)
        server.get(server.inference, "/ping", timeout=3)
    except OSError as exc:
        print(f"/ping: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
