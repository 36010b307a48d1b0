"""Session fixtures shared by tests/integration and tests/robustness: ONE real TorchServe.

The server is built the way `make serve` builds it, in miniature: tiny checkpoints trained
for a few seconds (tests/integration/tiny_models.py), archived with `tools.archive`, served
from a copy of `config.properties` on free loopback ports with a private TMPDIR/TEMP
(`tools.sandbox`), the workflow registered. It is stopped at the end of the session even
when tests fail, and leftover workers of that server are killed.

Nothing here runs unless a test asks for `ts_server` (unit tests never start Java).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
INTEGRATION_DIR = Path(__file__).resolve().parent / "integration"
PIPELINE_FILE = REPO_ROOT / "workflows" / "digit_pipeline" / "pipeline.py"
SERVER_START_TIMEOUT = 300
SCREENSHOTS_ENV = "CVSERVE_SCREENSHOTS"
"""`CVSERVE_SCREENSHOTS=1 pytest tests/integration/test_demo_browser.py` rewrites docs/demo/."""


def load_module(name: str, path: Path) -> ModuleType:
    """Import a file by path (test helpers and workflow files are not installed packages)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_models() -> ModuleType:
    return load_module("cvserve_tiny_models", INTEGRATION_DIR / "tiny_models.py")


@pytest.fixture(scope="session")
def pipeline_module() -> ModuleType:
    """workflows/digit_pipeline/pipeline.py: the same cut functions the server runs."""
    return load_module("cvserve_digit_pipeline", PIPELINE_FILE)


@pytest.fixture(scope="session")
def checkpoint_root(tmp_path_factory: pytest.TempPathFactory, tiny_models: ModuleType) -> Path:
    """checkpoints/<name>/<version>/model.pt for both default models, version 1.0."""
    root = tmp_path_factory.mktemp("checkpoints")
    if os.environ.get(SCREENSHOTS_ENV) == "1":
        # The README's pictures (tests/integration/test_demo_browser.py) show what users get:
        # the shipped defaults, not the tiny models. Run only the browser test with it.
        for name in ("digit_classifier", "digit_segmenter"):
            shutil.copytree(REPO_ROOT / "defaults" / name, root / name)
        return root
    tiny_models.train_classifier(root / "digit_classifier" / "1.0" / "model.pt")
    tiny_models.train_segmenter(root / "digit_segmenter" / "1.0" / "model.pt")
    return root


@pytest.fixture(scope="session")
def model_store(tmp_path_factory: pytest.TempPathFactory, checkpoint_root: Path) -> Path:
    """The archives `make archive` would build (tools.archive), one worker per model."""
    from tools.archive import archive_checkpoint, archive_workflow, workflow_dirs

    store = tmp_path_factory.mktemp("model_store")
    for name in ("digit_classifier", "digit_segmenter"):
        archive_checkpoint(
            checkpoint_root / name / "1.0" / "model.pt", store, min_workers=1, max_workers=1
        )
    for folder in workflow_dirs():
        archive_workflow(folder, store)
    return store


@pytest.fixture(scope="session")
def ts_server(tmp_path_factory: pytest.TempPathFactory, model_store: Path) -> Iterator[object]:
    """A running TorchServe (tools.sandbox.Sandbox) with both models and the workflow."""
    if shutil.which("java") is None:
        pytest.skip("Java 17+ is needed for TorchServe (tools/check_java.sh)")
    from tools.sandbox import sandbox_server

    workdir = tmp_path_factory.mktemp("ts")
    with sandbox_server(model_store, workdir, timeout=SERVER_START_TIMEOUT) as box:
        yield box


@pytest.fixture(scope="session")
def ts_client(ts_server: object) -> object:
    """tools.client.Client for the session server (refreshes tokens by itself)."""
    return ts_server.client()


@pytest.fixture
def auth_header(ts_server: object) -> Callable[[str], dict[str, str]]:
    """`auth_header("inference")`: a header with the CURRENT key (keys can be rotated)."""

    def make(kind: str) -> dict[str, str]:
        keys = json.loads(Path(ts_server.key_file).read_text())
        return {"Authorization": f"Bearer {keys[kind]['key']}"}

    return make
