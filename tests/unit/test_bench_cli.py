"""`python -m tools.bench` wiring: target selection, and a smoke run that measures only the
in-process limit of the tiny digit classifier for a fraction of a second (no servers)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

import tools.bench.__main__ as bench_main
from tools.bench import subjects
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
    assert not list(tmp_path.glob("*.partial.json"))  # a finished run leaves no partial file


def test_a_run_that_dies_keeps_what_it_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_peers(*args: object) -> list[dict[str, object]]:
        raise RuntimeError("the machine went away")

    monkeypatch.setattr(bench_main, "measure_peers", broken_peers)
    argv = ["--quick", "--only", "classifier", "--duration", "0.1", "--levels", "1"]
    argv += ["--skip", "torchserve,training", "--out", str(tmp_path), "--no-publish"]
    argv += ["--backends", "none"]
    with pytest.raises(RuntimeError, match="went away"):
        main(argv)
    [partial] = tmp_path.glob("*.partial.json")
    saved = json.loads(partial.read_text())
    assert saved["partial_after"] == "limits"
    assert saved["limits"]["digit_classifier"]["eager"]["best"]["images_per_s"]["median"] > 0


HEAVY = (subjects.HEAVY_CLASSIFIER, subjects.HEAVY_SEGMENTER)


def test_only_the_model_prediction_routes_have_peers() -> None:
    """The peers (Flask, gunicorn, LitServe) serve one model's predictions; a workflow or an
    explanation target marked with peers crashed the full run at the peers (KeyError
    'digit_pipeline', after 43 minutes of limits)."""
    images = {
        key: Image.new("RGB", (8, 8))
        for key in ("digit_classifier", "digit_segmenter", "digit_page", *HEAVY)
    }
    with_peers = {t.name for t in subjects.build_targets(images) if t.peers}
    assert with_peers == {
        "digit_classifier",
        "digit_segmenter",
        subjects.HEAVY_CLASSIFIER,
        subjects.HEAVY_SEGMENTER,
    }


def test_target_flags_are_keywords() -> None:
    with pytest.raises(TypeError):
        Target("x", "x", "predictions", b"{}", 12)  # type: ignore[misc]


def test_one_torchserve_per_model_and_one_for_the_workflow() -> None:
    from tools.bench.torchserve_runner import variants_for

    variants = variants_for(
        ["digit_classifier", "digit_segmenter"], {"digit_classifier": [("w1", {})]}
    )
    targets = [
        Target("digit_classifier", "digit_classifier", "predictions", b"{}", peers=True),
        Target("explain_saliency", "digit_classifier", "explanations", b"{}"),
        Target("digit_pipeline", "digit_pipeline", "wfpredict", b"{}"),
    ]
    groups = bench_main.server_groups(targets, variants)
    assert [([v.name for v in g], [t.name for t in ts]) for g, ts in groups] == [
        (
            ["digit_classifier", "digit_classifier_tsdefault", "digit_classifier_w1"],
            ["digit_classifier", "explain_saliency"],
        ),
        (["digit_classifier", "digit_segmenter"], ["digit_pipeline"]),
    ]  # the segmenter serves no target of its own here, so it gets no server


def test_in_process_handlers_are_released_when_the_run_moves_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The full run of 2026-12-02 was OOM-killed after 80 minutes: its own process held 17 GB,
    every in-process handler it had loaded (each model x backend x thread count: ONNX Runtime
    and OpenVINO sessions keep their arenas). Only the handlers of the current work stay:
    one model (both digit models for the pipeline) with one forward and thread count."""
    loaded: list[tuple[str, str]] = []
    monkeypatch.setattr(
        subjects, "load_handler", lambda checkpoint, config: loaded.append(checkpoint) or object()
    )
    monkeypatch.setattr(subjects, "exported_checkpoint", lambda ckpt, model, mode, work: model)
    monkeypatch.setattr(subjects, "archive_config", lambda ckpt: {"handler": {}})
    monkeypatch.setattr(bench_main, "mode_of", lambda config: "eager")
    monkeypatch.setattr(subjects, "with_mode", lambda config, mode: config)
    subs = bench_main.Subjects({m: Path(m) for m in (*subjects.DIGIT_MODELS, *HEAVY)}, None)
    seg, cls = subjects.DIGIT_MODELS[1], subjects.DIGIT_MODELS[0]
    pair = (subs.handler(seg, "eager"), subs.handler(cls, "eager"))
    assert subs.handler(seg, "eager") is pair[0]  # the pipeline's pair is kept together
    assert len(subs.held()) == 2
    subs.handler(HEAVY[0], "onnxruntime", 2)
    assert subs.held() == [(HEAVY[0], "onnxruntime", 2)]
    subs.handler(HEAVY[0], "onnxruntime", 1)  # another session: the first one goes
    subs.handler(HEAVY[1], "openvino", 2)
    assert subs.held() == [(HEAVY[1], "openvino", 2)]
    assert subs.handler(seg, "eager") is not pair[0]  # loaded again when needed again
    assert len(loaded) == 6


def test_each_torchserve_saves_its_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rows of every server that finished reach `on_server` (the run's partial file)
    before the next server starts, so a run killed in the TorchServe phase keeps them."""
    from tools.bench import torchserve_runner as tsr

    def no_server(*args: object, **kwargs: object) -> object:
        raise RuntimeError("no TorchServe here")

    monkeypatch.setattr(tsr, "build_store", lambda *args, **kwargs: {})
    monkeypatch.setattr(tsr, "torchserve", no_server)
    subs = SimpleNamespace(sweep=lambda model: [], checkpoints={})
    targets = [
        Target("digit_classifier", "digit_classifier", "predictions", b"{}"),
        Target("digit_pipeline", "digit_pipeline", "wfpredict", b"{}"),
    ]
    saved: list[list[str]] = []
    rows = bench_main.measure_torchserve(
        targets, subs, Path("unused"), lambda rows: saved.append([r["target"] for r in rows])
    )
    assert saved == [["digit_classifier"], ["digit_classifier", "digit_pipeline"]]
    assert all("no TorchServe here" in r["error"] for r in rows)
