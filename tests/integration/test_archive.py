"""tools.archive: names and versions from the card, contents, serving rule, skip-if-unchanged.

Real torch-model-archiver / torch-workflow-archiver runs, no server.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import yaml

from model_src import read_checkpoint
from tools.archive import (
    Machine,
    archive_checkpoint,
    archive_file_name,
    archive_workflow,
    choose_serving_config,
    count_parameters,
)

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
CLASSIFIER = Path("digit_classifier") / "1.0" / "model.pt"


def test_archive_contents(checkpoint_root, tmp_path) -> None:
    result = archive_checkpoint(checkpoint_root / CLASSIFIER, tmp_path, workers=None)
    assert result.path == tmp_path / "digit_classifier.mar" and result.built
    with zipfile.ZipFile(result.path) as z:
        names = set(z.namelist())
        manifest = json.loads(z.read("MAR-INF/MANIFEST.json"))["model"]
        labels = json.loads(z.read("index_to_name.json"))
        config = yaml.safe_load(z.read("model-config.yaml"))
    assert {
        "model.pt",
        "classifier.py",
        "handlers/__init__.py",
        "handlers/request.py",
        "model_src/__init__.py",
        "model_src/checkpoint.py",
    } <= names
    assert "__init__.py" not in names  # the packages are not flattened into the root
    assert manifest["modelName"] == "digit_classifier" and manifest["modelVersion"] == "1.0"
    assert manifest["handler"] == "classifier.py" and manifest["serializedFile"] == "model.pt"
    card, _ = read_checkpoint(checkpoint_root / CLASSIFIER)
    assert labels == {str(i): c for i, c in enumerate(card.classes)}
    assert set(config) == {
        "minWorkers",
        "maxWorkers",
        "batchSize",
        "maxBatchDelay",
        "responseTimeout",
        "startupTimeout",
        "handler",  # our handler's own section: images per request
    }  # no deviceType and no threads: the serving host decides them (unless pinned)


def test_skip_when_unchanged_and_rebuild_when_changed(checkpoint_root, tmp_path) -> None:
    ckpt = checkpoint_root / CLASSIFIER
    assert archive_checkpoint(ckpt, tmp_path).built
    assert not archive_checkpoint(ckpt, tmp_path).built
    assert archive_checkpoint(ckpt, tmp_path, batch_size=3).built  # a flag changes the config
    assert not archive_checkpoint(ckpt, tmp_path, batch_size=3).built
    (tmp_path / "digit_classifier.mar").write_bytes(b"tampered")
    assert archive_checkpoint(ckpt, tmp_path, batch_size=3).built
    assert archive_checkpoint(ckpt, tmp_path, batch_size=3, force=True).built
    with zipfile.ZipFile(tmp_path / "digit_classifier.mar") as z:
        assert yaml.safe_load(z.read("model-config.yaml"))["batchSize"] == 3
    assert not list(tmp_path.glob(".build-*"))  # build folders are cleaned up


def test_archive_without_model_config(checkpoint_root, tmp_path) -> None:
    """The benchmark's TorchServe-defaults archive: no model-config.yaml at all."""
    result = archive_checkpoint(checkpoint_root / CLASSIFIER, tmp_path, with_model_config=False)
    with zipfile.ZipFile(result.path) as z:
        assert "model-config.yaml" not in z.namelist() and "model.pt" in z.namelist()
        assert "configFile" not in json.loads(z.read("MAR-INF/MANIFEST.json"))["model"]


def test_version_names(checkpoint_root) -> None:
    card, _ = read_checkpoint(checkpoint_root / CLASSIFIER)
    assert archive_file_name(card) == "digit_classifier.mar"
    assert archive_file_name(card, default_version="2.0") == "digit_classifier-1.0.mar"


def test_serving_rule(checkpoint_root, pipeline_module) -> None:
    classifier, state = read_checkpoint(checkpoint_root / CLASSIFIER)
    segmenter, seg_state = read_checkpoint(checkpoint_root / "digit_segmenter/1.0/model.pt")
    two_cores = Machine(cpu_count=2, gpu_count=0)
    small = choose_serving_config(classifier, count_parameters(state), two_cores)
    assert (small.min_workers, small.max_workers, small.batch_size) == (2, 2, 16)
    assert (small.max_batch_delay_ms, small.device_type, small.torch_threads) == (1, None, None)
    seg = choose_serving_config(segmenter, count_parameters(seg_state), two_cores)
    assert seg.batch_size == 16  # small: same as a classifier
    mid = choose_serving_config(classifier, 11_000_000, two_cores)
    # one worker per core whatever the size (2 x 1 thread served resnet18 1.4x 1 x 2 threads)
    assert (mid.max_workers, mid.batch_size, mid.max_batch_delay_ms) == (2, 4, 5)
    assert mid.torch_threads is None  # each worker: cores // workers, on its host
    assert mid.backend == "onnxruntime" and mid.startup_timeout_s == 120
    assert small.backend == "eager"
    compiled = choose_serving_config(classifier, 11_000_000, two_cores, backend="compile")
    assert compiled.startup_timeout_s == 300  # compiling at load takes minutes
    big = choose_serving_config(classifier, 50_000_000, Machine(cpu_count=32, gpu_count=0))
    assert (big.max_workers, big.batch_size, big.response_timeout_s) == (4, 2, 300)
    gpu = choose_serving_config(classifier, 1000, Machine(cpu_count=8, gpu_count=2))
    assert (gpu.device_type, gpu.max_workers, gpu.batch_size) == (None, 2, 32)
    assert "deviceType" not in gpu.to_yaml_dict()  # the serving host's GPU, if it has one
    assert choose_serving_config(classifier, 11_000_000, Machine(8, 1)).backend == "eager"
    eager = choose_serving_config(classifier, 11_000_000, two_cores, backend="eager")
    assert eager.backend == "eager" and eager.startup_timeout_s == 120
    forced = choose_serving_config(classifier, 1000, two_cores, device="gpu", min_workers=2)
    assert (forced.device_type, forced.min_workers, forced.max_workers) == ("gpu", 2, 2)
    with pytest.raises(ValueError, match="workers"):
        choose_serving_config(classifier, 1000, two_cores, min_workers=3, max_workers=2)
    assert small.to_yaml_dict()["handler"] == {"max_images": 128}
    pinned = choose_serving_config(classifier, 1000, two_cores, torch_threads=2, max_images=9)
    assert pinned.to_yaml_dict()["handler"] == {"torch_threads": 2, "max_images": 9}
    fast = choose_serving_config(segmenter, 1000, two_cores, backend="compile")
    assert fast.to_yaml_dict()["handler"] == {"backend": "compile"}
    # The pipeline's cut-outs go to the classifier in one request: its limit admits them.
    assert small.max_images >= pipeline_module.MAX_CUTS
    with pytest.raises(ValueError, match="max-images"):
        choose_serving_config(classifier, 1000, two_cores, max_images=0)
    with pytest.raises(ValueError, match="threads"):
        choose_serving_config(classifier, 1000, two_cores, torch_threads=0)
    # TorchServe reads a delay of 0 as its 100 ms default: refused, with the fix.
    with pytest.raises(ValueError, match=r"100 ms.*use 1"):
        choose_serving_config(classifier, 1000, two_cores, max_batch_delay=0)
    assert choose_serving_config(classifier, 1000, two_cores, max_batch_delay=0, batch_size=1)


def test_workflow_archive(tmp_path) -> None:
    result = archive_workflow(REPO_ROOT / "workflows" / "digit_pipeline", tmp_path)
    assert result.path == tmp_path / "digit_pipeline.war" and result.built
    with zipfile.ZipFile(result.path) as z:
        names = set(z.namelist())
    assert {
        "spec.yaml",
        "pipeline.py",
        "WAR-INF/MANIFEST.json",
        "handlers/request.py",
        "model_src/__init__.py",
    } <= names
    assert not archive_workflow(REPO_ROOT / "workflows" / "digit_pipeline", tmp_path).built
