"""deploy/entrypoint.py, outside a container: it fails loudly when a model does not come up.

The happy path (start, READY, workflow registered, probes, SIGTERM) runs in
test_cluster_rehearsal.py on two replicas; here the other half of its contract: a pod whose
model fails to load must exit non-zero (so the kubelet restarts it and the rollout stops),
leaving no TorchServe process behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools.cluster_demo import CLUSTER_CONFIG, ENTRYPOINT, REPO_ROOT
from tools.sandbox import sandbox_config


def test_entrypoint_exits_non_zero_when_a_model_fails_to_load(
    tmp_path: Path, model_store: Path
) -> None:
    if shutil.which("java") is None:
        pytest.skip("Java 17+ is needed for TorchServe (tools/check_java.sh)")
    (tmp_path / "tmp").mkdir()
    config = sandbox_config(
        CLUSTER_CONFIG, tmp_path / "config.properties", model_store,
        overrides={
            "load_models": "digit_classifier.mar,no_such_model.mar",
            "metrics_config": str(REPO_ROOT / "metrics.yaml"),
        },
    )  # fmt: skip
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp"), "TEMP": str(tmp_path / "tmp")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    out = subprocess.run(
        [sys.executable, str(ENTRYPOINT), "serve", "--config", str(config), "--timeout", "240"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode != 0
    assert "FAILED" in out.stderr and "no_such_model" in out.stderr, out.stderr[-2000:]
    marker = str(tmp_path / "tmp")
    left = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker.encode() in cmdline.read_bytes():
                left.append(cmdline.parent.name)
        except OSError:
            continue
    assert not left, f"TorchServe processes left behind: {left}"
