"""`python -m tools.client ...` against the session server (what the README shows)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli(ts_server):
    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        cmd = [
            sys.executable,
            "-m",
            "tools.client",
            "--config",
            str(ts_server.spec.config),
            "--key-file",
            str(ts_server.key_file),
            *args,
        ]
        proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        assert (proc.returncode == 0) == ok, proc.stdout + proc.stderr
        return proc

    return run


def test_predict_and_save_pngs(cli, tmp_path, scene) -> None:
    image = tmp_path / "scene.png"
    image.write_bytes(scene[0])
    out = json.loads(
        cli(
            "predict",
            str(image),
            "--model",
            "digit_segmenter",
            "--overlay",
            "--save-dir",
            str(tmp_path / "out"),
        ).stdout
    )
    for field in ("mask_png", "overlay_png"):
        assert Image.open(out[field]).size == (64, 64)
    printed = json.loads(cli("predict", str(image), "--model", "digit_segmenter").stdout)
    assert printed["mask_png"].startswith("<") and "--save-dir" in printed["mask_png"]


def test_classify_explain_pipeline(cli, tmp_path, digits, scene) -> None:
    digit, scene_file = tmp_path / "digit.png", tmp_path / "scene.png"
    digit.write_bytes(digits[0][0])
    scene_file.write_bytes(scene[0])
    body = json.loads(
        cli("predict", str(digit), "--model", "digit_classifier", "--topk", "3").stdout
    )
    assert len(body["topk"]) == 3
    body = json.loads(
        cli(
            "explain",
            str(digit),
            "--model",
            "digit_classifier",
            "--method",
            "saliency",
            "--target",
            "4",
            "--save-dir",
            str(tmp_path),
        ).stdout
    )
    assert body["target"]["index"] == 4 and Path(body["heatmap_png"]).is_file()
    body = json.loads(cli("pipeline", str(scene_file), "--save-dir", str(tmp_path)).stdout)
    assert Path(body["mask_png"]).is_file() and body["labels"]


def test_errors_exit_non_zero(cli, tmp_path, garbage) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(garbage)
    proc = cli("pipeline", str(bad), ok=False)
    assert "error 400" in proc.stderr
    proc = cli("predict", str(bad), "--model", "digit_classifier", ok=False)
    assert "error 400" in proc.stderr and "could not be decoded" in proc.stderr


def test_management_commands(cli) -> None:
    names = {m["modelName"] for m in json.loads(cli("models").stdout)}
    assert {"digit_classifier", "digit_segmenter"} <= names
    (desc,) = json.loads(cli("describe", "digit_classifier", "--customized").stdout)
    assert desc["customizedMetadata"]["task"] == "classification"
    assert json.loads(cli("ping").stdout) == {"status": "Healthy"}
    assert "ts_inference_requests_total" in cli("metrics", "--grep", "^ts_inference").stdout
    proc = cli("set-default", "digit_classifier", "9.9", ok=False)
    assert "error 404" in proc.stderr
