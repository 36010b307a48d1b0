"""Start, check and stop cvserve's TorchServe: what `make serve` / `make stop` run.

    python -m tools.serve start [--config config.properties] [--timeout 300]
    python -m tools.serve status
    python -m tools.serve stop

`start` runs exactly the README's command from the working directory (the repo root by
default, where TorchServe writes `logs/` and `key_file.json`):

    torchserve --start --ncs --ts-config config.properties --model-store model_store

then waits until every model's workers are READY (printing the log tails if they do not come
up), registers the workflows (TorchServe 0.12 forgets them at every start) and prints example
calls with the current token. A second `start` while this server runs does nothing but say
so; another process on the ports is reported, not fought with.

The server's pid and addresses are kept in `<workdir>/.cvserve/server.json`, which is how
`stop` and `status` find it. TorchServe's own pid file lives in `$TMPDIR`, so plain
`torchserve --stop` also works; tests run isolated servers by giving each its own `TMPDIR`
and `TEMP` (pid file, worker sockets, unpacked archives) and their own ports.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests

from handlers import contract
from tools import frontend_patch
from tools.tsconfig import ServerAddresses, host_of, port_of, read_keys, read_properties

log = logging.getLogger("tools.serve")

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WORKFLOWS = contract.DEFAULT_WORKFLOWS
STATE_FILE = Path(".cvserve") / "server.json"
TS_PID_FILE = ".model_server.pid"
TS_MAIN_CLASS = "org.pytorch.serve.ModelServer"
LOG_FILES = ("logs/model_log.log", "logs/ts_log.log")


class ServeError(RuntimeError):
    """A start/stop that could not be done, with what to do about it."""


@dataclass
class ServerSpec:
    """Where one TorchServe runs from and with what: enough to start, find and stop it."""

    workdir: Path = REPO_ROOT
    config: Path = REPO_ROOT / "config.properties"
    model_store: Path | None = None
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir).resolve()
        self.config = Path(self.config).resolve()
        if self.model_store is None:
            store = read_properties(self.config).get("model_store", "model_store")
            self.model_store = self.workdir / store
        self.model_store = Path(self.model_store).resolve()

    @property
    def addresses(self) -> ServerAddresses:
        return ServerAddresses.from_config(self.config)

    @property
    def key_file(self) -> Path:
        return self.workdir / "key_file.json"

    @property
    def state_file(self) -> Path:
        return self.workdir / STATE_FILE

    @property
    def tmpdir(self) -> Path:
        """Where TorchServe's launcher keeps its pid file (`$TMPDIR` as the server sees it)."""
        return Path(self.env.get("TMPDIR") or os.environ.get("TMPDIR") or tempfile.gettempdir())

    def process_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}


# ---------------------------------------------------------------------------------------------
# Finding a running server


def _is_model_server(proc: psutil.Process) -> bool:
    try:
        return TS_MAIN_CLASS in proc.cmdline()
    except psutil.Error:
        return False


def _alive(pid: int | None) -> psutil.Process | None:
    if not pid:
        return None
    try:
        proc = psutil.Process(pid)
    except psutil.Error:
        return None
    return proc if proc.is_running() and _is_model_server(proc) else None


def read_state(spec: ServerSpec) -> dict[str, Any] | None:
    try:
        return json.loads(spec.state_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def running_server(spec: ServerSpec) -> psutil.Process | None:
    """The TorchServe started from `spec.workdir`, if it is still running.

    Found from our state file, else from TorchServe's own pid file when that process runs in
    this working directory (a server started with the README's raw command).
    """
    state = read_state(spec)
    proc = _alive(state.get("pid") if state else None)
    if proc:
        return proc
    proc = _pid_file_server(spec)
    with contextlib.suppress(OSError, psutil.Error):
        if proc and Path(proc.cwd()).resolve() == spec.workdir:
            return proc
    return None


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def busy_ports(addresses: ServerAddresses) -> list[str]:
    return [
        url
        for url in (addresses.inference, addresses.management, addresses.metrics)
        if port_in_use(host_of(url), port_of(url))
    ]


# ---------------------------------------------------------------------------------------------
# Talking to it


def _auth(spec: ServerSpec, kind: str) -> dict[str, str]:
    keys = read_keys(spec.key_file)
    return {"Authorization": f"Bearer {keys[kind]}"}


def management_get(spec: ServerSpec, path: str, timeout: float = 10) -> requests.Response:
    return requests.get(
        spec.addresses.management + path, headers=_auth(spec, "management"), timeout=timeout
    )


def ping(spec: ServerSpec, timeout: float = 5) -> bool:
    try:
        resp = requests.get(
            spec.addresses.inference + "/ping", headers=_auth(spec, "inference"), timeout=timeout
        )
    except (requests.RequestException, FileNotFoundError, KeyError):
        return False
    return resp.status_code == 200


def load_model_names(spec: ServerSpec) -> list[str]:
    """Model names the config loads at start (read from each archive's manifest)."""
    value = read_properties(spec.config).get("load_models", "").strip()
    if not value or value.lower() == "standalone":
        return []
    if value.lower() == "all":
        return [archive_model_name(p) for p in sorted(spec.model_store.glob("*.mar"))]
    names = []
    for entry in (e.strip() for e in value.split(",") if e.strip()):
        if "=" in entry:  # name=file.mar
            names.append(entry.split("=", 1)[0].strip())
        else:
            names.append(archive_model_name(spec.model_store / entry))
    return names


def archive_model_name(path: Path) -> str:
    """`modelName` from a .mar's manifest (falls back to the file name)."""
    try:
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read("MAR-INF/MANIFEST.json"))["model"]["modelName"]
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError):
        return path.stem


def model_workers(spec: ServerSpec, name: str) -> list[dict[str, Any]]:
    """Workers of every version of `name` (empty when it is not registered yet)."""
    resp = management_get(spec, f"/models/{name}/all")
    if resp.status_code != 200:
        return []
    return [w for version in resp.json() for w in version.get("workers", [])]


def models_ready(spec: ServerSpec, names: Sequence[str]) -> dict[str, str]:
    """name -> "READY" or what it is waiting for."""
    states = {}
    for name in names:
        workers = model_workers(spec, name)
        if not workers:
            states[name] = "no workers yet"
        elif all(w.get("status") == "READY" for w in workers):
            states[name] = "READY"
        else:
            states[name] = ", ".join(sorted({str(w.get("status")) for w in workers}))
    return states


def log_tail(spec: ServerSpec, lines: int = 40) -> str:
    """The end of TorchServe's logs (Python tracebacks are in model_log.log)."""
    parts = []
    for rel in LOG_FILES:
        path = spec.workdir / rel
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path} (last {len(text)} lines) ---\n" + "\n".join(text))
        else:
            parts.append(f"--- {path}: not written ---")
    return "\n".join(parts)


def wait_until_ready(
    spec: ServerSpec, names: Sequence[str], timeout: float, proc: psutil.Process | None = None
) -> None:
    """Poll until every model in `names` has workers and all are READY.

    Raises ServeError with the log tails on timeout or when the server process dies.
    """
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        if proc is not None and not proc.is_running():
            raise ServeError(f"TorchServe exited during start-up.\n{log_tail(spec)}")
        with contextlib.suppress(requests.RequestException, OSError, KeyError, ValueError):
            states = models_ready(spec, names)
            if all(state == "READY" for state in states.values()):
                return
        time.sleep(0.5)
    waiting = {n: s for n, s in states.items() if s != "READY"} or "the management API"
    raise ServeError(
        f"models not READY after {timeout:.0f} s (waiting for {waiting}).\n{log_tail(spec)}"
    )


def register_workflow(spec: ServerSpec, name: str, timeout: float = 300) -> bool:
    """`POST /workflows?url=<name>.war` unless already registered. True if it registered now."""
    mgmt = spec.addresses.management
    headers = _auth(spec, "management")
    if requests.get(f"{mgmt}/workflows/{name}", headers=headers, timeout=10).status_code == 200:
        return False
    resp = requests.post(
        f"{mgmt}/workflows", params={"url": f"{name}.war"}, headers=headers, timeout=timeout
    )
    if resp.status_code == 409:  # registered by someone else meanwhile
        return False
    if resp.status_code != 200:
        raise ServeError(
            f"registering workflow {name} failed: {resp.status_code} {resp.text.strip()}\n"
            f"{log_tail(spec)}"
        )
    return True


# ---------------------------------------------------------------------------------------------
# Start / stop


def _torchserve() -> str:
    local = Path(sys.executable).with_name("torchserve")
    if local.is_file():
        return str(local)
    found = shutil.which("torchserve")
    if not found:
        raise ServeError("torchserve not found; run `make install`")
    return found


def _check_prerequisites(spec: ServerSpec) -> None:
    if shutil.which("java", path=spec.process_env().get("PATH")) is None:
        raise ServeError(
            "java not found: TorchServe needs Java 17+ (Debian/Ubuntu: "
            "sudo apt-get install -y openjdk-17-jre-headless); see tools/check_java.sh"
        )
    if not spec.config.is_file():
        raise ServeError(f"config file {spec.config} not found")
    if not spec.model_store.is_dir():
        raise ServeError(f"model store {spec.model_store} not found; run `make archive`")
    value = read_properties(spec.config).get("load_models", "")
    if value and value.lower() not in ("all", "standalone"):
        missing = [
            f
            for f in (i.split("=", 1)[-1].strip() for i in value.split(","))
            if not (spec.model_store / f).is_file()
        ]
        if missing:
            raise ServeError(
                f"{', '.join(missing)} not in {spec.model_store}; run `make archive` first"
            )


def start(
    spec: ServerSpec,
    *,
    timeout: float = 300,
    workflows: Sequence[str] = DEFAULT_WORKFLOWS,
) -> dict[str, Any]:
    """Start TorchServe (or find it running), wait for READY, register workflows.

    Returns the state dict (pid, addresses, models, workflows). Raises ServeError.
    """
    started = time.monotonic()
    proc = running_server(spec)
    already_running = proc is not None
    if proc is None:
        proc = _launch(spec)
    else:
        log.info("TorchServe is already running from %s (pid %d)", spec.workdir, proc.pid)
    state = read_state(spec) or {}
    state.update(
        pid=proc.pid,
        config=str(spec.config),
        model_store=str(spec.model_store),
        workdir=str(spec.workdir),
        inference=spec.addresses.inference,
        management=spec.addresses.management,
        metrics=spec.addresses.metrics,
    )
    spec.state_file.parent.mkdir(parents=True, exist_ok=True)
    spec.state_file.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    try:
        names = load_model_names(spec)
        wait_until_ready(spec, names, timeout, proc)
        # Also when it was already running: a server restarted with the raw command has
        # forgotten its workflows, and registering is idempotent. With the patched frontend
        # `load_workflows` has registered them already. Registration is synchronous (the
        # function nodes' workers are up when it returns) and the model nodes are the models
        # waited for above, so there is nothing more to wait for.
        registered = []
        for name in workflows:
            if not (spec.model_store / f"{name}.war").is_file():
                log.warning(
                    "%s.war not in %s: workflow %s not registered", name, spec.model_store, name
                )
                continue
            register_workflow(spec, name, timeout=timeout)
            registered.append(name)
    except BaseException:
        if not already_running:
            stop(spec)  # no half-started server left behind; the logs stay
        raise
    state.update(models=names, workflows=registered)
    if not already_running:
        state["start_seconds"] = round(time.monotonic() - started, 1)
    spec.state_file.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    state["already_running"] = already_running
    return state


def _launch(spec: ServerSpec) -> psutil.Process:
    """Run the README's torchserve command from the working directory; return the Java pid."""
    _check_prerequisites(spec)
    other = _pid_file_server(spec)
    if other is not None:
        raise ServeError(
            f"another TorchServe (pid {other.pid}, started in {other.cwd()}) owns "
            f"{spec.tmpdir / TS_PID_FILE}; TorchServe allows one server per TMPDIR. Stop it "
            "(`torchserve --stop` from its directory) or start this one with another TMPDIR."
        )
    busy = busy_ports(spec.addresses)
    if busy:
        raise ServeError(
            f"address(es) {', '.join(busy)} already in use by another process: stop it "
            f"(`make stop`, `torchserve --stop`, or find it with `ss -ltnp`) or change the "
            f"addresses in {spec.config}"
        )
    (spec.workdir / "logs").mkdir(parents=True, exist_ok=True)
    spec.key_file.unlink(missing_ok=True)  # a stale file from a crashed run has dead keys
    cmd = [
        _torchserve(), "--start", "--ncs",
        "--ts-config", str(spec.config),
        "--model-store", str(spec.model_store),
    ]  # fmt: skip
    # Java inherits the launcher's stdout and copies its whole INFO log there for as long as
    # it runs, without the size-based rolling of logs/ts_log.log: discard it. Everything in
    # it is in logs/; the launcher's own refusals are pre-checked above.
    launcher = subprocess.run(
        cmd, cwd=spec.workdir, env=spec.process_env(), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    proc = _wait_for_pid_file(spec, timeout=15)
    if launcher.returncode != 0 or proc is None:
        raise ServeError(
            f"`{' '.join(cmd)}` (run in {spec.workdir}) did not start TorchServe (exit code "
            f"{launcher.returncode}); run it yourself to see its message.\n{log_tail(spec)}"
        )
    return proc


def _pid_file_server(spec: ServerSpec) -> psutil.Process | None:
    """The running TorchServe named by the launcher's pid file in `spec.tmpdir`, if any."""
    with contextlib.suppress(OSError, ValueError, psutil.Error):
        return _alive(int((spec.tmpdir / TS_PID_FILE).read_text().split()[0]))
    return None


def _wait_for_pid_file(spec: ServerSpec, timeout: float) -> psutil.Process | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc = _pid_file_server(spec)
        if proc:
            return proc
        time.sleep(0.2)
    return None


def stop(spec: ServerSpec, timeout: float = 60) -> bool:
    """Stop the server started from `spec.workdir` and every worker it left. True if it ran."""
    proc = running_server(spec)
    if proc is None:
        _cleanup(spec, None)
        return False
    try:
        children = proc.children(recursive=True)
    except psutil.Error:
        children = []
    with contextlib.suppress(psutil.Error):
        proc.terminate()  # what `torchserve --stop` does: Java stops its workers itself
    _, alive = psutil.wait_procs([proc], timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    # Workers normally exit with their frontend; kill any left (they hold the model memory).
    leftovers = [c for c in children if c.is_running()]
    for c in leftovers:
        with contextlib.suppress(psutil.Error):
            c.terminate()
    _, alive = psutil.wait_procs(leftovers, timeout=10)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    _cleanup(spec, proc.pid)
    return True


def _cleanup(spec: ServerSpec, pid: int | None) -> None:
    spec.key_file.unlink(missing_ok=True)
    spec.state_file.unlink(missing_ok=True)
    pid_file = spec.tmpdir / TS_PID_FILE
    with contextlib.suppress(OSError, ValueError):
        if pid is not None and int(pid_file.read_text().split()[0]) == pid:
            pid_file.unlink()


def status(spec: ServerSpec) -> dict[str, Any]:
    """Whether it runs, and each model's and workflow's state."""
    proc = running_server(spec)
    info: dict[str, Any] = {"running": proc is not None, "workdir": str(spec.workdir)}
    info["frontend"] = frontend_patch.describe()
    if proc is None:
        return info
    info["pid"] = proc.pid
    info["healthy"] = ping(spec)
    with contextlib.suppress(requests.RequestException, FileNotFoundError, KeyError):
        models = management_get(spec, "/models?limit=1000").json().get("models", [])
        info["models"] = models_ready(spec, [m["modelName"] for m in models])
        info["workflows"] = [
            w["workflowName"]
            for w in management_get(spec, "/workflows").json().get("workflows", [])
        ]
    return info


# ---------------------------------------------------------------------------------------------
# CLI


def examples(spec: ServerSpec, workflows: Sequence[str] = DEFAULT_WORKFLOWS) -> str:
    """Example calls with the current inference token (printed after start)."""
    addr = spec.addresses
    try:
        token = read_keys(spec.key_file).get("inference", "<inference key>")
    except FileNotFoundError:
        token = "<inference key from key_file.json>"
    auth = f'-H "Authorization: Bearer {token}"'
    lines = [
        f"TorchServe is serving on {addr.inference} (inference), {addr.management} "
        f"(management), {addr.metrics} (metrics).",
        f"Tokens are in {spec.key_file}; inference and management keys expire (see "
        "token_expiration_min in the config).",
        "",
        "Examples (curl -T sends the file as the body):",
        f"  curl {auth} -T docs/examples/digit.png {addr.inference}/predictions/digit_classifier",
        f"  curl {auth} -T docs/examples/digit.png {addr.inference}/explanations/digit_classifier",
        f"  curl {auth} -T docs/examples/scene.png {addr.inference}/predictions/digit_segmenter",
    ]
    lines += [
        f"  curl {auth} -T docs/examples/scene.png {addr.inference}/wfpredict/{w}"
        for w in workflows
    ]
    lines += [
        f"  curl {addr.metrics}/metrics",
        "",
        "Or with the Python client (reads the addresses and tokens itself):",
        "  python -m tools.client predict docs/examples/digit.png --model digit_classifier",
        "  python -m tools.client explain docs/examples/digit.png --model digit_classifier "
        "--method gradcam --save-dir out/",
        "  python -m tools.client pipeline docs/examples/scene.png --save-dir out/",
        "  python -m tools.client models",
        "",
        "Stop with `make stop` (or `python -m tools.serve stop`).",
    ]
    return "\n".join(lines)


def _spec_from_args(args: argparse.Namespace) -> ServerSpec:
    workdir = Path(args.workdir)
    config = Path(args.config) if args.config else workdir / "config.properties"
    return ServerSpec(workdir=workdir, config=config, model_store=args.model_store)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.serve", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("command", choices=("start", "stop", "status"))
    parser.add_argument(
        "--workdir",
        default=str(REPO_ROOT),
        help="where logs/ and key_file.json go (default: the repo root)",
    )
    parser.add_argument("--config", help="default: <workdir>/config.properties")
    parser.add_argument("--model-store", type=Path, help="default: model_store from the config")
    parser.add_argument(
        "--timeout", type=float, default=300, help="seconds to wait for READY workers (default 300)"
    )
    parser.add_argument(
        "--workflow",
        action="append",
        dest="workflows",
        help=f"workflow to register (repeatable; default {DEFAULT_WORKFLOWS})",
    )
    parser.add_argument("--no-workflows", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    spec = _spec_from_args(args)
    workflows = [] if args.no_workflows else (args.workflows or list(DEFAULT_WORKFLOWS))
    try:
        if args.command == "start":
            state = start(spec, timeout=args.timeout, workflows=workflows)
            if state.get("already_running"):
                print(f"TorchServe already running (pid {state['pid']}); not starting another.")
            else:
                print(
                    f"TorchServe started (pid {state['pid']}) in {state['start_seconds']} s: "
                    f"models {', '.join(state['models'])}; workflows "
                    f"{', '.join(state['workflows']) or 'none'}."
                )
            print(f"TorchServe frontend: {frontend_patch.describe()}")
            if not frontend_patch.is_patched():
                print(f"WARNING: {frontend_patch.UNPATCHED_CONSEQUENCES}")
            print(examples(spec, state.get("workflows", workflows)))
        elif args.command == "stop":
            print("TorchServe stopped." if stop(spec) else "TorchServe was not running here.")
        else:
            print(json.dumps(status(spec), indent=2))
    except ServeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
