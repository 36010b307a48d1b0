"""tools.bench.pipeline_memory: the 0.12.0-style copy of the pipeline it compares against."""

from __future__ import annotations

from pathlib import Path

import yaml

from tools.bench.pipeline_memory import legacy_spec

SPEC = Path(__file__).resolve().parents[2] / "workflows" / "digit_pipeline" / "spec.yaml"


def test_legacy_spec_loads_private_copies_of_the_same_models() -> None:
    shared = yaml.safe_load(SPEC.read_text())
    legacy = yaml.safe_load(legacy_spec(SPEC.read_text()))
    assert legacy["dag"] == shared["dag"]
    for node in ("segmenter", "classifier"):
        assert "model" in shared["models"][node] and "url" not in shared["models"][node]
        assert legacy["models"][node]["url"] == f"{shared['models'][node]['model']}.mar"
        assert "model" not in legacy["models"][node]
        assert legacy["models"][node]["timeout-ms"] == shared["models"][node]["timeout-ms"]
