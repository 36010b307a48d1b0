"""A cluster rehearsed on one machine (issue 18): 2 replicas of the image's entrypoint with the
cluster config, behind HAProxy with /ping health checks and retries (tools/cluster_demo.py).

The claims of docs/scaling.md, each proved under real load through a real load balancer:
load spreads over both replicas; SIGKILL of one replica's whole TorchServe fails no client
request and the replica is restarted and rejoins; a rolling update to 2.0 archives fails no
request and every answer comes from 1.0 or 2.0; the pipeline answers on either replica.
The entrypoint itself runs here outside a container, as the image runs it.

Tiny models, request counts bounded (a pause between requests, a cap per scenario): about
two minutes on 2 cores, most of it TorchServe start-ups (2 at first, 1 after the kill, 2 in
the update). Needs HAProxy (`.ci/run` installs Debian's); skipped with the hint without it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tools.cluster_demo import (
    ENTRYPOINT,
    HAPROXY_HINT,
    Cluster,
    build_version,
    kill_under_load,
    pipeline_answers,
    rolling_update,
    running_cluster,
    spread,
)
from tools.tsconfig import read_properties

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def digit_png(digits: list[tuple[bytes, str]]) -> bytes:
    return digits[0][0]


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, model_store: Path, tiny_models: ModuleType
) -> Iterator[Cluster]:
    if shutil.which("java") is None:
        pytest.skip("Java 17+ is needed for TorchServe (tools/check_java.sh)")
    if shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").exists():
        pytest.skip(HAPROXY_HINT)
    workdir = tmp_path_factory.mktemp("cluster")
    with running_cluster(model_store, workdir) as running:
        yield running


@pytest.fixture(scope="module")
def store_2_0(tmp_path_factory: pytest.TempPathFactory, checkpoint_root: Path) -> Path:
    """The same default models as version 2.0: the archives of a new image."""
    return build_version(checkpoint_root, tmp_path_factory.mktemp("v2") / "model_store", "2.0")


def test_replicas_run_the_cluster_config(cluster: Cluster) -> None:
    """Token auth off (no key file, calls without a token), probes pass, metrics in Prometheus."""
    for replica in cluster.replicas:
        assert not (replica.workdir / "key_file.json").exists()
        for probe in ("ready", "live"):
            out = subprocess.run(
                [sys.executable, str(ENTRYPOINT), probe, "--config", str(replica.config)],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert out.returncode == 0, (probe, out.stdout, out.stderr)
    entry = cluster.replicas[0]
    props = read_properties(entry.config)
    with urllib.request.urlopen(props["management_address"] + "/workflows", timeout=30) as resp:
        names = [w["workflowName"] for w in json.load(resp)["workflows"]]
    assert names == ["digit_pipeline"]  # registered at start, by the replica itself
    with urllib.request.urlopen(props["metrics_address"] + "/metrics", timeout=30) as resp:
        assert b"# TYPE" in resp.read()


def test_load_spreads_over_both_replicas(cluster: Cluster, digit_png: bytes) -> None:
    summary = spread(cluster, digit_png, count=60)
    assert summary.failed == 0, summary.errors
    assert set(summary.per_replica) == {"a", "b"}
    assert min(summary.per_replica.values()) >= 20, summary.per_replica


def test_pipeline_answers_on_either_replica(cluster: Cluster, scene: tuple[bytes, list]) -> None:
    answers = pipeline_answers(cluster, scene[0], count=4)
    assert {status for status, _, _ in answers} == {200}, answers
    assert {served_by for _, served_by, _ in answers} == {"a", "b"}
    bodies = [json.dumps(body.get("objects"), sort_keys=True) for _, _, body in answers]
    assert json.loads(bodies[0]), "the pipeline found no object in the scene"
    assert len(set(bodies)) == 1, "replicas answered the same scene differently"


@pytest.mark.parametrize("victim", [0])
def test_sigkill_of_a_replica_fails_no_request(
    cluster: Cluster, digit_png: bytes, victim: int
) -> None:
    replica = cluster.replicas[victim]
    restarts = replica.restarts
    total, after = kill_under_load(cluster, digit_png, victim=victim)
    print(f"\nkill {replica.name}: {total.line()}\n  rejoined: {after.line()}")
    assert total.requests > 0 and total.failed == 0, total.errors
    assert replica.restarts == restarts + 1 and replica.alive()
    assert after.requests > 0 and after.failed == 0  # it serves again
    assert not replica.unready()


def test_rolling_update_to_2_0_fails_no_request(
    cluster: Cluster, digit_png: bytes, store_2_0: Path
) -> None:
    total, after = rolling_update(cluster, digit_png, store_2_0)
    print(f"\nrolling update to 2.0: {total.line()}\n  after: {after.line()}")
    assert total.failed == 0, total.errors
    assert set(total.versions) == {"1.0", "2.0"}, total.versions
    assert set(after.versions) == {"2.0"} and set(after.per_replica) == {"a", "b"}
    stops = [what for _, what in cluster.supervisor.events if "stopped for the update" in what]
    assert stops == ["a stopped for the update (status 0)", "b stopped for the update (status 0)"]
