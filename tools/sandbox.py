"""An isolated TorchServe for tests and benchmarks: a config copy on free loopback ports.

    with sandbox_server(model_store, workdir) as box:
        box.client().predict("digit.png", "digit_classifier")

The server runs `config.properties` exactly as shipped except for what must differ to run
next to another TorchServe on the same machine: the HTTP and gRPC ports (free ones), the
model store, absolute paths, and a private `TMPDIR`/`TEMP` (TorchServe keeps its pid file,
its worker sockets and its unpacked archives there; with the defaults two servers would
refuse to start or steal each other's sockets). It is always stopped on exit, and any process
still referring to its private temp folder (orphaned workers) is killed.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from tools.client import Client
from tools.serve import DEFAULT_WORKFLOWS, REPO_ROOT, ServerSpec, start, stop
from tools.tsconfig import ServerAddresses, read_properties, rewrite_properties

log = logging.getLogger("tools.sandbox")


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports free right now (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def sandbox_config(
    source: Path, dest: Path, model_store: Path, *, overrides: dict[str, str] | None = None
) -> Path:
    """Copy `source` to `dest` with free ports, absolute paths and the given model store."""
    http, mgmt, metrics, grpc_inf, grpc_mgmt = free_ports(5)
    props = read_properties(source)
    updates = {
        "inference_address": f"http://127.0.0.1:{http}",
        "management_address": f"http://127.0.0.1:{mgmt}",
        "metrics_address": f"http://127.0.0.1:{metrics}",
        "grpc_inference_port": str(grpc_inf),
        "grpc_management_port": str(grpc_mgmt),
        "model_store": str(model_store),
    }
    metrics_config = props.get("metrics_config")
    if metrics_config and "metrics_config" not in (overrides or {}):
        path = Path(metrics_config)
        path = path if path.is_absolute() else source.parent / path
        if path.is_file():
            updates["metrics_config"] = str(path)
        else:
            log.warning("%s (metrics_config) is missing: using TorchServe's own", path)
            updates["metrics_config"] = str(_ts_metrics_yaml())
    updates.update(overrides or {})
    text = rewrite_properties(source.read_text(encoding="utf-8"), updates)
    dest.write_text(f"# Sandbox copy of {source} (tools/sandbox.py)\n{text}", encoding="utf-8")
    return dest


def _ts_metrics_yaml() -> Path:
    import ts

    return Path(ts.__file__).parent / "configs" / "metrics.yaml"


@dataclass
class Sandbox:
    """A running sandboxed server: its spec (paths, env) and addresses."""

    spec: ServerSpec
    state: dict

    @property
    def addresses(self) -> ServerAddresses:
        return self.spec.addresses

    @property
    def key_file(self) -> Path:
        return self.spec.key_file

    def client(self, timeout: float = 120) -> Client:
        return Client(self.spec.config, self.spec.key_file, timeout=timeout)


def sandbox_spec(
    model_store: Path,
    workdir: Path,
    config: Path | None = None,
    overrides: dict[str, str] | None = None,
) -> ServerSpec:
    """A ServerSpec for a sandbox in `workdir` (config copy written there, with `overrides`)."""
    workdir = Path(workdir).resolve()
    tmp = workdir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    copy = sandbox_config(
        Path(config or REPO_ROOT / "config.properties"), workdir / "config.properties",
        Path(model_store).resolve(), overrides=overrides,
    )  # fmt: skip
    return ServerSpec(
        workdir=workdir,
        config=copy,
        model_store=Path(model_store).resolve(),
        env={"TMPDIR": str(tmp), "TEMP": str(tmp)},
    )


def kill_strays(spec: ServerSpec) -> list[int]:
    """Kill processes whose command line mentions this sandbox's private temp folder.

    Workers are started with `--sock-name <TEMP>/.ts.sock.N`, so this finds exactly this
    sandbox's workers (and its Java frontend's children), never another server's.
    """
    marker = spec.env.get("TEMP")
    killed: list[int] = []
    if not marker:
        return killed
    me = psutil.Process()
    spared = {me.pid, *(p.pid for p in me.parents())}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if proc.pid in spared:
                continue
            if any(marker in part for part in proc.info["cmdline"] or ()):
                proc.kill()
                killed.append(proc.pid)
    return killed


@contextlib.contextmanager
def sandbox_server(
    model_store: Path,
    workdir: Path,
    *,
    config: Path | None = None,
    timeout: float = 300,
    workflows: Sequence[str] = DEFAULT_WORKFLOWS,
    overrides: dict[str, str] | None = None,
) -> Iterator[Sandbox]:
    """Start a sandboxed TorchServe, wait for READY, register workflows; always stop it."""
    spec = sandbox_spec(model_store, workdir, config, overrides)
    try:
        state = start(spec, timeout=timeout, workflows=workflows)
        yield Sandbox(spec, state)
    finally:
        stop(spec)
        strays = kill_strays(spec)
        if strays:
            log.warning("killed %d leftover TorchServe processes: %s", len(strays), strays)
