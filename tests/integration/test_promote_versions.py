"""Promote behind the canary gate, roll back and retire on the session server (issue 6).

A good candidate (the 1.0 classifier trained a little longer) is promoted while a load
generator sends requests to `/predictions/digit_classifier` without a version, then rolled
back: every request must get a 200 from one of the two versions. A bad candidate (random
weights) is refused by the gate through the CLI, unregistered, and the default is unchanged.

Versions 2.1 and 3.0 (not 2.0: test_versions.py builds digit_classifier-2.0.mar itself and
checks that its build is fresh). The session server's defaults are restored even on failure:
other tests expect 1.0.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest
import requests
import torch
from torch.utils.data import DataLoader

from model_src import build_model, load_checkpoint, save_checkpoint
from tools.archive import archive_checkpoint
from tools.client import CvserveError
from tools.validation import score_version, split_validation_set
from tools.versions import (
    History,
    VersionError,
    default_version,
    promote,
    registered_versions,
    retire,
    rollback,
    versions,
)
from training.data import build_splits

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL = "digit_classifier"
GOOD, BAD = "2.1", "3.0"
LIMIT = 100  # validation samples: the gate's decisions here are far from the tolerance
MIN_REQUESTS = 200  # background requests across the switches ("a few hundred")


@pytest.fixture(scope="module")
def candidates(
    tiny_models: ModuleType, checkpoint_root: Path, model_store: Path, tmp_path_factory
) -> dict[str, Path]:
    """digit_classifier-2.1.mar (1.0 + 40 more steps) and -3.0.mar (random weights)."""
    root = tmp_path_factory.mktemp("candidates")
    model, card = load_checkpoint(checkpoint_root / MODEL / "1.0" / "model.pt", "cpu")
    splits = build_splits("digits", seed=0)
    loader = DataLoader(
        tiny_models._Transformed(splits.train, card.input, segmentation=False),
        batch_size=32,
        shuffle=True,
        generator=torch.Generator().manual_seed(7),
    )
    model.requires_grad_(True)
    tiny_models._fit(model, loader, steps=40, lr=1e-3, weight=None)
    good = root / GOOD / "model.pt"
    save_checkpoint(good, model, replace(card, version=GOOD, metrics={"steps": 190}))
    torch.manual_seed(3)
    bad = root / BAD / "model.pt"
    random_model = build_model(card.arch, **card.arch_kwargs)
    save_checkpoint(bad, random_model, replace(card, version=BAD, metrics={"note": "random"}))
    return {
        version: archive_checkpoint(path, model_store, min_workers=1, max_workers=1).path
        for version, path in ((GOOD, good), (BAD, bad))
    }


@pytest.fixture
def restore_versions(ts_client) -> Iterator[None]:
    """Leave digit_classifier as found: 1.0 the default, our candidates unregistered."""
    yield
    if default_version(ts_client, MODEL) != "1.0":
        ts_client.set_default(MODEL, "1.0")
    for version in set(registered_versions(ts_client, MODEL)) & {GOOD, BAD}:
        ts_client.unregister(MODEL, version)


class LoadGenerator:
    """Threads posting one digit to `/predictions/<model>` (no version) until stopped."""

    def __init__(self, ts_server, image: bytes, threads: int = 2) -> None:
        self.ts_server, self.image = ts_server, image
        self.outcomes: Counter[str] = Counter()  # "200 <version>" or the failure
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        client = self.ts_server.client(timeout=30)  # one session per thread
        while not self.stop_event.is_set():
            try:
                outcome = f"200 {client.predict(self.image, MODEL)['version']}"
            except CvserveError as exc:
                outcome = f"{exc.status} {exc.message}"
            except requests.RequestException as exc:
                outcome = f"connection {type(exc).__name__}"
            with self.lock:
                self.outcomes[outcome] += 1

    @property
    def total(self) -> int:
        with self.lock:
            return sum(self.outcomes.values())

    def __enter__(self) -> LoadGenerator:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def wait_for(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.total < count and time.monotonic() < deadline:
            time.sleep(0.05)


def test_promote_and_roll_back_under_load_lose_no_request(
    ts_server, ts_client, candidates, digits, restore_versions
) -> None:
    history = History.for_key_file(ts_server.key_file)
    vset = split_validation_set("digits", limit=LIMIT)
    with LoadGenerator(ts_server, digits[0][0]) as load:
        load.wait_for(20)
        report = promote(
            ts_client, MODEL, GOOD, lambda candidate, default: vset, tolerance=0.02, history=history
        )
        assert report.decision == "promoted", report.to_dict()
        assert report.samples == LIMIT and report.metric == "accuracy"
        assert report.default_after == GOOD and history.previous(MODEL)[-1] == "1.0"
        load.wait_for(load.total + 50)

        rows = {row["version"]: row for row in versions(ts_client, MODEL)}
        assert rows[GOOD]["default"] and not rows["1.0"]["default"]
        assert rows[GOOD]["workers"] == "1/1 READY" and rows[GOOD]["metrics"] == {"steps": 190}
        with pytest.raises(VersionError, match=f"{GOOD} is the default.*rollback"):
            retire(ts_client, MODEL, GOOD, history)

        assert rollback(ts_client, MODEL, history)["to"] == "1.0"
        load.wait_for(max(MIN_REQUESTS, load.total + 50))
    assert default_version(ts_client, MODEL) == "1.0"
    assert retire(ts_client, MODEL, GOOD, history)["retired"] == GOOD

    outcomes = dict(load.outcomes)
    assert set(outcomes) == {"200 1.0", f"200 {GOOD}"}, outcomes  # both served, nothing failed
    assert sum(outcomes.values()) >= MIN_REQUESTS, outcomes


def test_cli_refuses_a_bad_candidate_and_unregisters_it(
    ts_server, ts_client, candidates, tmp_path, restore_versions
) -> None:
    report_path = tmp_path / "report.json"
    cmd = [
        sys.executable, "-m", "tools.client",
        "--config", str(ts_server.spec.config), "--key-file", str(ts_server.key_file),
        "promote", MODEL, BAD, "--limit", str(LIMIT), "--report", str(report_path),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    report = json.loads(report_path.read_text())
    assert json.loads(proc.stdout) == report  # printed and saved
    assert report["decision"] == "rejected" and f"{BAD} unregistered" in report["reason"]
    assert report["scores"]["candidate"]["value"] < report["scores"]["default"]["value"] - 0.01
    assert report["samples"] == LIMIT and report["default_after"] == "1.0"
    assert set(report["timings_s"]) >= {"register", "score_candidate", "score_default", "total"}
    assert registered_versions(ts_client, MODEL) == ["1.0"]


def test_segmenter_is_scored_by_mean_dice(ts_client) -> None:
    vset = split_validation_set("digit_scenes", limit=8)
    assert vset.task == "segmentation" and len(vset) == 8
    score = score_version(ts_client, "digit_segmenter", "1.0", vset, num_classes=11)
    assert score.metric == "mean_dice" and score.samples == 8
    assert 0.0 <= score.value <= 1.0 and 0.0 <= score.details["foreground_dice"] <= 1.0
