"""`python -m tools.bench.served_models` against a real TorchServe: every model it is given is
archived, served and loaded, and the table says so (the figures are for the bench, not here)."""

from __future__ import annotations

import json
import shutil

import pytest

from tools.bench import served_models

pytestmark = pytest.mark.integration


def test_served_models_measures_each_checkpoint(checkpoint_root, tmp_path, capsys) -> None:
    if shutil.which("java") is None:
        pytest.skip("Java 17+ is needed for TorchServe (tools/check_java.sh)")
    from dataclasses import replace

    from model_src import load_checkpoint, save_checkpoint

    # A version other than the default one: its archive is `<model>-<version>.mar`.
    model, card = load_checkpoint(checkpoint_root / "digit_segmenter" / "1.0" / "model.pt")
    other = save_checkpoint(tmp_path / "v2" / "model.pt", model, replace(card, version="2.0"))
    checkpoints = [checkpoint_root / "digit_classifier" / "1.0" / "model.pt", other]
    out = tmp_path / "served.json"
    args = [*map(str, checkpoints), "--duration", "0.5", "--repeats", "2", "--concurrency", "2"]
    assert served_models.main([*args, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["models"]) == {"digit_classifier", "digit_segmenter"}
    for row in result["models"].values():
        assert row["failed"] == 0 and row["rps"]["min"] > 0
    table = out.with_suffix(".md").read_text()
    assert "| digit_segmenter |" in table and table in capsys.readouterr().out


def test_two_checkpoints_of_one_name_are_refused(checkpoint_root, tmp_path) -> None:
    same = checkpoint_root / "digit_classifier" / "1.0" / "model.pt"
    with pytest.raises(SystemExit, match="share a model name"):
        served_models.measure([same, same], b"", duration=0.1, repeats=1)
