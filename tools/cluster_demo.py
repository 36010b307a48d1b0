"""A cluster rehearsed on one machine: TorchServe replicas behind HAProxy, as Kubernetes runs them.

    python -m tools.cluster_demo [--replicas 2] [--requests 400]      (`make cluster-demo`)

Each replica is `deploy/entrypoint.py serve` (the image's entrypoint) with the cluster config
(`deploy/k8s/config/config.properties`: token auth off, workflows registered at start) on its
own free loopback ports, private TMPDIR and working directory: a pod. HAProxy from Debian is
the Service and front door: round robin, health checks on `/ping`, and retries of failed
connections and empty answers on the other replica (predictions are idempotent). A
`Supervisor` plays the kubelet and the endpoints controller: a replica whose process died is
taken out of the balancer, restarted, and put back once `entrypoint.py ready` passes (the
readiness probe); a rolling update drains one replica at a time (readiness off, in-flight
requests finish, SIGTERM, new archives, ready, back in), like a Deployment with
maxUnavailable 1.

tests/integration/test_cluster_rehearsal.py proves the claims of docs/scaling.md with it;
`make cluster-demo` prints the same figures for a bigger request count.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import http.client
import importlib.util
import io
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from tools.sandbox import free_ports, sandbox_config
from tools.tsconfig import port_of, read_properties, rewrite_properties

log = logging.getLogger("tools.cluster_demo")

REPO_ROOT = Path(__file__).resolve().parents[1]
ENTRYPOINT = REPO_ROOT / "deploy" / "entrypoint.py"
CLUSTER_CONFIG = REPO_ROOT / "deploy" / "k8s" / "config" / "config.properties"
HAPROXY_HINT = "HAProxy is needed: `apt-get install -y haproxy` (Debian/Ubuntu)"


def load_entrypoint() -> ModuleType:
    """deploy/entrypoint.py as a module (a script in the image, not a package here)."""
    spec = importlib.util.spec_from_file_location("cvserve_entrypoint", ENTRYPOINT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------
# Replicas


@dataclass
class Replica:
    """One pod: the entrypoint in its own process group, on its own ports and TMPDIR."""

    name: str
    workdir: Path
    config: Path
    process: subprocess.Popen | None = None
    restarts: int = 0

    @classmethod
    def create(cls, name: str, root: Path, model_store: Path) -> Replica:
        workdir = (root / name).resolve()
        (workdir / "tmp").mkdir(parents=True, exist_ok=True)
        config = sandbox_config(
            CLUSTER_CONFIG, workdir / "config.properties", model_store,
            overrides={"metrics_config": str(REPO_ROOT / "metrics.yaml")},
        )  # fmt: skip
        return cls(name, workdir, config)

    @property
    def port(self) -> int:
        return port_of(read_properties(self.config)["inference_address"])

    @property
    def model_store(self) -> Path:
        return Path(read_properties(self.config)["model_store"])

    def use_model_store(self, store: Path) -> None:
        """Point this replica at other archives (takes effect at its next start): a new image."""
        text = rewrite_properties(self.config.read_text(), {"model_store": str(store)})
        self.config.write_text(text)

    def start(self, timeout: float = 300) -> None:
        """Start the entrypoint (not waiting for READY: see `wait_ready`)."""
        env = {**os.environ, "TMPDIR": str(self.workdir / "tmp"), "TEMP": str(self.workdir / "tmp")}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        out = (self.workdir / "entrypoint.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, str(ENTRYPOINT), "serve", "--config", str(self.config),
             "--timeout", str(timeout)],
            cwd=self.workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: Java and workers die with it
        )  # fmt: skip
        out.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def unready(self) -> list[str]:
        """What `entrypoint.py ready` (the readiness probe) would report; empty when ready."""
        return load_entrypoint().Server(self.config, self.workdir).unready()

    def wait_ready(self, timeout: float = 300) -> float:
        """Seconds until ready; raises with the log tail if it dies or times out."""
        started = time.monotonic()
        entry = load_entrypoint().Server(self.config, self.workdir)
        waiting: list[str] = []
        while time.monotonic() - started < timeout:
            if not self.alive():
                raise RuntimeError(f"replica {self.name} exited:\n{self.log_tail()}")
            waiting = entry.unready(timeout=3)
            if not waiting:
                return time.monotonic() - started
            time.sleep(0.5)
        raise RuntimeError(f"replica {self.name} not ready after {timeout:.0f} s: {waiting}")

    def kill(self) -> None:
        """SIGKILL the whole TorchServe: entrypoint, launcher, Java and every worker."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM the entrypoint (what the kubelet sends after preStop); SIGKILL after timeout."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("replica %s ignored SIGTERM for %.0f s: killed", self.name, timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # anything left in its group
        return self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        path = self.workdir / "entrypoint.log"
        text = path.read_text(errors="replace").splitlines() if path.is_file() else []
        return "\n".join(text[-lines:])


# ---------------------------------------------------------------------------------------------
# The load balancer


HAPROXY_CONFIG = """\
# Written by tools/cluster_demo.py: the rehearsal's front door (a Service / ingress).
global
    maxconn 2000
    stats socket {socket} mode 600 level admin
    log stdout format raw local0 info

defaults
    mode http
    log global
    # Log only what went wrong (errors, retries, redispatches), not every request.
    option httplog
    option dontlog-normal
    # The whole request is read before a server is chosen, so it is still there to be sent
    # again when the first server fails.
    option http-buffer-request
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    # Predictions are idempotent: a request whose connection failed, or that got an empty
    # answer (the replica died with it in flight) or a 503 (a replica's queue is full, or it
    # is stopping), is sent again, to ANOTHER replica (redispatch).
    retries 3
    retry-on conn-failure empty-response response-timeout 503
    option redispatch 1

frontend cvserve
    bind 127.0.0.1:{port}
    default_backend torchserve
    # Which replica answered (the rehearsal counts them; a real front door would not say).
    http-response set-header X-Served-By %s

backend torchserve
    balance roundrobin
    option httpchk GET /ping
    http-check expect status 200
    # A slow /ping on a busy machine is not a dead replica: 5 s to answer, 3 misses to go DOWN
    # (a killed replica refuses connections at once and is DOWN within a second).
    timeout check 5s
    default-server check inter 1s fastinter 250ms downinter 500ms fall 3 rise 2
{servers}
"""


@dataclass
class LoadBalancer:
    """HAProxy in the foreground with an admin socket (the endpoints controller's lever)."""

    workdir: Path
    replicas: Sequence[Replica]
    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def socket_path(self) -> Path:
        return self.workdir / "haproxy.sock"

    def start(self) -> None:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(binary).exists():
            raise FileNotFoundError(HAPROXY_HINT)
        self.port = self.port or free_ports(1)[0]
        servers = "\n".join(f"    server {r.name} 127.0.0.1:{r.port}" for r in self.replicas)
        cfg = self.workdir / "haproxy.cfg"
        cfg.write_text(
            HAPROXY_CONFIG.format(socket=self.socket_path, port=self.port, servers=servers)
        )
        out = (self.workdir / "haproxy.log").open("ab")
        self.process = subprocess.Popen(
            [binary, "-db", "-f", str(cfg)], stdout=out, stderr=subprocess.STDOUT
        )
        out.close()
        deadline = time.monotonic() + 10
        while not self.socket_path.exists() or not _port_open(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"haproxy did not start: {(self.workdir / 'haproxy.log').read_text()}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def command(self, line: str) -> str:
        """One command on HAProxy's runtime API (admin socket)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(self.socket_path))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def set_state(self, replica: Replica, state: str) -> None:
        """ "ready", "drain" or "maint": in or out of the rotation (readiness, in effect)."""
        self.command(f"set server torchserve/{replica.name} state {state}")

    def stats(self) -> dict[str, dict[str, str]]:
        """`show stat` per server: status, current sessions (scur), total (stot), retries..."""
        text = self.command("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {r["svname"]: r for r in rows if r["pxname"] == "torchserve"}

    def wait_idle(self, replica: Replica, timeout: float = 30) -> None:
        """Until no request is in flight to `replica` (after it left the rotation)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if int(self.stats()[replica.name]["scur"] or 0) == 0:
                return
            time.sleep(0.1)

    def wait_up(self, replica: Replica, timeout: float = 30) -> None:
        """Until HAProxy's health check sees `replica` UP."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stats()[replica.name]["status"].startswith("UP"):
                return
            time.sleep(0.1)
        raise RuntimeError(f"{replica.name} not UP in haproxy: {self.stats()[replica.name]}")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


# ---------------------------------------------------------------------------------------------
# The kubelet and the endpoints controller


@dataclass
class Supervisor:
    """Restarts dead replicas and puts a replica in rotation only when it is ready."""

    lb: LoadBalancer
    replicas: Sequence[Replica]
    events: list[tuple[float, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _updating: set[str] = field(default_factory=set)
    _thread: threading.Thread | None = None

    def note(self, what: str) -> None:
        self.events.append((time.monotonic(), what))
        log.info(what)

    def __enter__(self) -> Supervisor:
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=330)

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            for replica in self.replicas:
                if replica.name in self._updating or replica.alive():
                    continue
                self.note(
                    f"{replica.name} died (status {replica.process.returncode}): out, restart"
                )
                self.lb.set_state(replica, "maint")
                replica.restarts += 1
                replica.start()
                self.bring_in(replica)

    def bring_in(self, replica: Replica) -> None:
        seconds = replica.wait_ready()
        self.lb.set_state(replica, "ready")
        self.lb.wait_up(replica)
        self.note(f"{replica.name} ready after {seconds:.1f} s: back in rotation")

    def replace(self, replica: Replica, model_store: Path) -> None:
        """One step of a rolling update: drain, stop gracefully, new archives, ready, in."""
        self._updating.add(replica.name)
        try:
            self.lb.set_state(replica, "maint")  # readiness off: no new requests
            self.lb.wait_idle(replica)  # preStop: in-flight requests finish
            status = replica.stop()
            self.note(f"{replica.name} stopped for the update (status {status})")
            replica.use_model_store(model_store)
            replica.start()
            self.bring_in(replica)
        finally:
            self._updating.discard(replica.name)


# ---------------------------------------------------------------------------------------------
# Load


@dataclass
class Result:
    started: float
    seconds: float
    status: int  # 0: no HTTP answer at all
    served_by: str
    version: str
    error: str = ""


@dataclass
class Load:
    """Client threads sending one request after another through the load balancer."""

    port: int
    body: bytes
    path: str = "/predictions/digit_classifier"
    threads: int = 4
    pause: float = 0.0
    #: A cap, so a scenario that hangs cannot flood the machine (~4 threads x 50/s x 100 s).
    max_requests: int = 20_000
    results: list[Result] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def one(self, conn: http.client.HTTPConnection) -> Result:
        started = time.monotonic()
        try:
            conn.request("POST", self.path, body=self.body)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            return Result(started, time.monotonic() - started, 0, "", "", repr(exc))
        version = ""
        with contextlib.suppress(ValueError, AttributeError):
            version = str(json.loads(data).get("version", ""))
        error = "" if resp.status == 200 else data[:200].decode(errors="replace")
        return Result(
            started, time.monotonic() - started, resp.status,
            resp.getheader("X-Served-By", ""), version, error,
        )  # fmt: skip

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            while not self._stop.is_set():
                result = self.one(conn)
                with self._lock:
                    if len(self.results) >= self.max_requests:
                        return
                    self.results.append(result)
                if self.pause:
                    time.sleep(self.pause)
        finally:
            conn.close()

    def start(self) -> Load:
        self._workers = [
            threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)
        ]
        for worker in self._workers:
            worker.start()
        return self

    def stop(self) -> Load:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=180)
        return self

    def run_count(self, count: int) -> Load:
        """Exactly `count` requests (split over the threads), then stop."""
        self.max_requests = count
        self.start()
        for worker in self._workers:
            worker.join(timeout=600)
        self._stop.set()
        return self


@dataclass
class Summary:
    """What a client saw: counts, failures, latency percentiles, who answered."""

    requests: int
    failed: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    seconds: float
    per_replica: dict[str, int]
    versions: dict[str, int]
    errors: list[str]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @classmethod
    def of(cls, results: Sequence[Result]) -> Summary:
        lat = sorted(r.seconds * 1000 for r in results) or [0.0]
        failed = [r for r in results if r.status != 200]
        span = (
            max(r.started + r.seconds for r in results) - min(r.started for r in results)
            if results
            else 0.0
        )
        return cls(
            requests=len(results),
            failed=len(failed),
            p50_ms=round(_pct(lat, 50), 1),
            p99_ms=round(_pct(lat, 99), 1),
            max_ms=round(lat[-1], 1),
            seconds=round(span, 2),
            per_replica=dict(Counter(r.served_by for r in results)),
            versions=dict(Counter(r.version for r in results)),
            errors=sorted({f"{r.status} {r.error}" for r in failed})[:5],
        )

    def line(self) -> str:
        return (
            f"{self.requests} requests, {self.failed} failed, p50 {self.p50_ms} ms, "
            f"p99 {self.p99_ms} ms, max {self.max_ms} ms, {self.rps:.1f} req/s; "
            f"by replica {self.per_replica}; versions {self.versions}"
            + (f"; errors {self.errors}" if self.errors else "")
        )


def _pct(sorted_values: Sequence[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


# ---------------------------------------------------------------------------------------------
# The cluster


@dataclass
class Cluster:
    """Replicas + load balancer + supervisor, started together, always stopped together."""

    replicas: list[Replica]
    lb: LoadBalancer
    supervisor: Supervisor


@contextlib.contextmanager
def running_cluster(model_store: Path, workdir: Path, replicas: int = 2) -> Iterator[Cluster]:
    """Start `replicas` entrypoints on `model_store` and HAProxy in front; stop all on exit."""
    workdir = Path(workdir)
    members = [Replica.create(chr(ord("a") + i), workdir, model_store) for i in range(replicas)]
    lb = LoadBalancer(workdir, members)
    try:
        for replica in members:
            replica.start()
        for replica in members:
            replica.wait_ready()
        lb.start()
        for replica in members:
            lb.wait_up(replica)
        with Supervisor(lb, members) as supervisor:
            yield Cluster(members, lb, supervisor)
    finally:
        lb.stop()
        for replica in members:
            replica.stop(timeout=30)


def build_version(checkpoint_root: Path, store: Path, version: str) -> Path:
    """A model store whose default archives are `version` of the default models.

    The weights are those of `checkpoint_root/<name>/1.0/model.pt` with the card's version
    set to `version`: what a retrained model's new image looks like to the cluster.
    """
    from model_src import build_model, read_checkpoint, save_checkpoint
    from tools.archive import archive_checkpoint, archive_workflow, workflow_dirs

    store.mkdir(parents=True, exist_ok=True)
    for name in ("digit_classifier", "digit_segmenter"):
        card, state = read_checkpoint(checkpoint_root / name / "1.0" / "model.pt")
        model = build_model(card.arch, **card.arch_kwargs)
        model.load_state_dict(state)
        ckpt = save_checkpoint(
            store.parent / f"checkpoints-{version}" / name / version / "model.pt",
            model,
            dataclasses.replace(card, version=version),
        )
        archive_checkpoint(ckpt, store, default_version=version, min_workers=1, max_workers=1)
    for folder in workflow_dirs():
        archive_workflow(folder, store)
    return store


# ---------------------------------------------------------------------------------------------
# Scenarios (the test and `make cluster-demo` run the same ones)


def spread(cluster: Cluster, body: bytes, count: int = 100) -> Summary:
    """`count` predictions through the balancer: who answered them."""
    return Summary.of(Load(cluster.lb.port, body, threads=2).run_count(count).results)


def kill_under_load(
    cluster: Cluster, body: bytes, victim: int = 0, threads: int = 4, pause: float = 0.02
) -> tuple[Summary, Summary]:
    """SIGKILL one replica's whole TorchServe under load, until it is back in rotation.

    Returns (everything the clients saw, what the victim answered after it rejoined).
    """
    replica = cluster.replicas[victim]
    load = Load(cluster.lb.port, body, threads=threads, pause=pause).start()
    time.sleep(2)
    restarts = replica.restarts
    killed_at = time.monotonic()
    replica.kill()
    cluster.supervisor.note(f"{replica.name} SIGKILLed (process group)")
    deadline = killed_at + 300
    while not _rejoined(cluster, replica, killed_at, restarts) and time.monotonic() < deadline:
        time.sleep(0.2)
    rejoined_at = time.monotonic()
    time.sleep(3)  # traffic on the restarted replica
    load.stop()
    after = [r for r in load.results if r.started > rejoined_at and r.served_by == replica.name]
    return Summary.of(load.results), Summary.of(after)


def _rejoined(cluster: Cluster, replica: Replica, since: float, restarts: int) -> bool:
    return replica.restarts > restarts and any(
        t > since and what.startswith(f"{replica.name} ready")
        for t, what in cluster.supervisor.events
    )


def rolling_update(
    cluster: Cluster, body: bytes, store: Path, threads: int = 4, pause: float = 0.02
) -> tuple[Summary, Summary]:
    """Replace every replica, one at a time, with `store`'s archives, under load.

    Returns (everything the clients saw, the last second of answers after the update).
    """
    load = Load(cluster.lb.port, body, threads=threads, pause=pause).start()
    time.sleep(2)
    for replica in cluster.replicas:
        cluster.supervisor.replace(replica, store)
    done = time.monotonic()
    time.sleep(2)
    load.stop()
    return Summary.of(load.results), Summary.of([r for r in load.results if r.started > done])


def pipeline_answers(cluster: Cluster, scene: bytes, count: int = 4) -> list[tuple[int, str, dict]]:
    """`count` pipeline requests through the balancer: (status, replica, body) each."""
    answers = []
    conn = http.client.HTTPConnection("127.0.0.1", cluster.lb.port, timeout=120)
    try:
        for _ in range(count):
            conn.request("POST", "/wfpredict/digit_pipeline", body=scene)
            resp = conn.getresponse()
            data, payload = resp.read(), {}
            with contextlib.suppress(ValueError):
                payload = json.loads(data)
            answers.append((resp.status, resp.getheader("X-Served-By", ""), payload))
    finally:
        conn.close()
    return answers


def one_vs_all(
    cluster: Cluster, body: bytes, count: int, threads: int = 8
) -> tuple[Summary, Summary]:
    """Throughput with one replica in rotation, then all of them: the same load, one run."""
    others = cluster.replicas[1:]
    for replica in others:
        cluster.lb.set_state(replica, "maint")
    one = Summary.of(Load(cluster.lb.port, body, threads=threads).run_count(count).results)
    for replica in others:
        cluster.lb.set_state(replica, "ready")
        cluster.lb.wait_up(replica)
    both = Summary.of(Load(cluster.lb.port, body, threads=threads).run_count(count).results)
    return one, both


# ---------------------------------------------------------------------------------------------
# CLI: make cluster-demo


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.cluster_demo", description=__doc__)
    parser.add_argument("--model-store", type=Path, default=REPO_ROOT / "model_store")
    parser.add_argument("--checkpoint-root", type=Path, default=REPO_ROOT / "checkpoints")
    parser.add_argument("--image", type=Path, default=REPO_ROOT / "docs" / "examples" / "digit.png")
    parser.add_argument("--scene", type=Path, default=REPO_ROOT / "docs" / "examples" / "scene.png")
    parser.add_argument("--requests", type=int, default=400, help="per throughput measurement")
    parser.add_argument("--workdir", type=Path, help="keep replicas' logs here (default: tmp)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").exists():
        print(HAPROXY_HINT, file=sys.stderr)
        return 2
    body, scene = args.image.read_bytes(), args.scene.read_bytes()
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        workdir.mkdir(parents=True, exist_ok=True)
        v2 = build_version(args.checkpoint_root, workdir / "model_store-2.0", "2.0")
        started = time.monotonic()
        cluster = stack.enter_context(running_cluster(args.model_store, workdir))
        ready_s = time.monotonic() - started
        print(f"2 replicas ready behind haproxy :{cluster.lb.port} in {ready_s:.0f} s")
        print("spread:       ", spread(cluster, body).line())
        for status, served_by, payload in pipeline_answers(cluster, scene):
            objects = len(payload.get("objects", []))
            print(f"pipeline:      {status} from {served_by}: {objects} objects")
        one, both = one_vs_all(cluster, body, args.requests)
        print("1 replica:    ", one.line())
        print("2 replicas:   ", both.line())
        print(f"throughput 2/1: {both.rps / one.rps:.2f}")
        total, after = kill_under_load(cluster, body)
        print("kill:         ", total.line())
        print("  rejoined:   ", after.line())
        total, after = rolling_update(cluster, body, v2)
        print("rolling 2.0:  ", total.line())
        print("  after:      ", after.line())
        for t, what in cluster.supervisor.events:
            print(f"  event +{t - started:6.1f} s  {what}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
