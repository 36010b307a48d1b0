"""`python -m tools.bench` wiring: target selection, and a smoke run that measures only the
in-process limit of the tiny digit classifier for a fraction of a second (no servers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.bench.__main__ import main, select_targets
from tools.bench.subjects import Target


def _targets() -> list[Target]:
    names = ["digit_classifier", "digit_segmenter", "explain_saliency", "explain_gradcam"]
    return [Target(n, n, "predictions", b"{}") for n in names]


def test_select_targets_by_name_and_group() -> None:
    assert [t.name for t in select_targets(_targets(), "classifier", False)] == ["digit_classifier"]
    picked = select_targets(_targets(), "segmenter,explain_gradcam", False)
    assert [t.name for t in picked] == ["digit_segmenter", "explain_gradcam"]
    assert len(select_targets(_targets(), None, False)) == 4
    with pytest.raises(SystemExit):
        select_targets(_targets(), "nope", False)


def test_smoke_run_writes_json_and_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = [
        "--quick",
        "--only",
        "classifier",
        "--duration",
        "0.1",
        "--repeats",
        "2",
        "--levels",
        "1",
        "--skip",
        "peers,torchserve,training",
        "--out",
        str(tmp_path),
        "--no-publish",
        "--backends",
        "eager,onnxruntime",
    ]
    assert main(argv) == 0
    [result_file] = tmp_path.glob("*-quick*.json")
    result = json.loads(result_file.read_text())
    assert result["targets"] == ["digit_classifier"]
    limit = result["limits"]["digit_classifier"]["eager"]  # the archive runs it eagerly
    assert limit["best"]["images_per_s"]["median"] > 0
    assert len(limit["best"]["repeats"]) == 2 and limit["best"]["compiled"] is False
    exported = result["limits"]["digit_classifier"]["onnxruntime"]  # the backend sweep
    assert exported["best"]["backend"] == "onnxruntime"  # read back from the handler
    assert exported["forward"]["backend"] == "onnxruntime"
    assert result["machine"]["cores"] >= 1
    assert len(result["loadavg"]) == 3 and len(result["loadavg_end"]) == 3
    table = result_file.with_suffix(".md").read_text()
    assert "limit: in-process handler" in table and "bare forward" in table
