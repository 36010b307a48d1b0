"""Experiment tracking: TensorBoard event files and an offline W&B run, read back from disk.

Each run here is a few optimizer steps. The values in the event files and in the W&B run
file must be the ones in metrics.csv and report.json, and tracking must not change training.
"""

from __future__ import annotations

import csv
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from training.config import load_config
from training.engine import fit
from training.tracking import epoch_scalars, wandb_logged_in, wandb_mode

CONFIG_DIR = Path(__file__).resolve().parents[2] / "training" / "configs"
TINY = [
    "epochs=2",
    "data.limit=48",
    "data.batch_size=16",
    "model.kwargs.hidden_sizes=[16]",
    "tracking.images=3",
]


def tiny_digits(tmp_path: Path, *extra: str):
    return load_config(CONFIG_DIR / "digits_mlp.yaml", [*TINY, f"output_dir={tmp_path}", *extra])


def csv_rows(run_dir: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run_dir / "metrics.csv").open()))


def read_events(folder: Path):
    accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator"
    ).EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def test_epoch_scalars_name_split_and_metric() -> None:
    row = {"epoch": 3, "lr": 0.1, "train_loss": 1.5, "val_mean_dice": float("nan"), "time_s": 2}
    assert epoch_scalars(row) == {"lr": 0.1, "loss/train": 1.5, "time_s": 2.0}


@pytest.mark.slow
def test_tensorboard_logs_scalars_lr_predictions_and_config_without_changing_training(
    tmp_path: Path,
) -> None:
    tracked = fit(tiny_digits(tmp_path / "tracked"))
    plain = fit(tiny_digits(tmp_path / "plain", "tracking.tensorboard=false"))
    # Same seeds, same results: drawing predictions each epoch changes nothing.
    a, b = tracked.model.state_dict(), plain.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert tracked.metrics == plain.metrics
    assert not (plain.run_dir / "tensorboard").exists()

    events = read_events(tracked.run_dir / "tensorboard")
    rows = csv_rows(tracked.run_dir)
    tags = events.Tags()
    for tag, column in [
        ("loss/train", "train_loss"),
        ("accuracy/val", "val_accuracy"),
        ("lr", "lr"),
    ]:
        logged = events.Scalars(tag)
        assert [e.step for e in logged] == [1, 2]
        assert [e.value for e in logged] == pytest.approx([float(r[column]) for r in rows])
    report = json.loads((tracked.run_dir / "report.json").read_text())
    assert events.Scalars("accuracy/test")[0].value == pytest.approx(report["test"]["accuracy"])
    assert [e.step for e in events.Images("predictions/val")] == [1, 2]
    picture = events.Images("predictions/val")[0]
    assert picture.width >= 3 * 96 and picture.height >= 96  # three digits, scaled up
    assert "config/text_summary" in tags["tensors"]
    text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "digits_mlp" in text and "hidden_sizes" in text


@pytest.mark.slow
def test_a_segmenter_logs_mask_overlays(tmp_path: Path) -> None:
    """fashionpedia_unet on a tiny COCO export: class names in the card, crowd pixels ignored
    by the loss and the metrics, prediction overlays in TensorBoard."""
    pytest.importorskip("pycocotools")
    from coco_files import garment_images, write_coco

    root = tmp_path / "fashionpedia"
    images = garment_images()
    write_coco(root, images | {"c.png": images["a.png"]}, "train.json", folder="train")
    write_coco(root, {"v.png": images["b.png"], "w.png": images["a.png"]}, "val.json", "test")
    overrides = [
        f"data.root={root}",
        "data.options.annotations=train.json",
        "data.options.val_annotations=val.json",
        "data.options.test_fraction=0.25",
        "data.batch_size=2",
        "model.kwargs.depth=2",
        "model.kwargs.base_width=4",
        "input.size=[32, 32]",
        "augment=[]",
        "epochs=2",
        "schedule.name=none",
        "amp=none",
        f"output_dir={tmp_path / 'runs'}",
    ]
    result = fit(load_config(CONFIG_DIR / "fashionpedia_unet.yaml", overrides))
    assert result.card.classes == ["background", "shirt", "pocket", "hat"]
    assert [c["name"] for c in result.card.dataset["categories"]] == ["shirt", "pocket", "hat"]
    assert result.card.config["loss"]["ignore_index"] == 255
    report = result.card.dataset["coco_report"]["train"]
    assert report["images_without_annotations_names"] == ["empty.png"]
    events = read_events(result.run_dir / "tensorboard")
    pictures = events.Images("predictions/val")
    assert [e.step for e in pictures] == [1, 2]
    # Two validation items, one row each: input | truth | prediction, scaled to 96 px.
    assert pictures[0].height == 2 * 96 + 4 and pictures[0].width == 3 * 96 + 2 * 4


# --- W&B ----------------------------------------------------------------------------------


@pytest.fixture
def no_wandb_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No W&B mode, key or netrc login, and W&B's own files kept in tmp_path."""
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home"))
    monkeypatch.setenv("WANDB_SILENT", "true")


def test_wandb_is_offline_unless_the_user_chose_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_wandb_login: None
) -> None:
    assert not wandb_logged_in() and wandb_mode() == "offline"
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    assert wandb_logged_in() and wandb_mode() == "online"
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")
    assert wandb_mode() == "offline"  # logged in elsewhere, not on this server
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode() is None  # wandb reads the user's WANDB_MODE itself


@pytest.mark.slow
def test_wandb_offline_run_holds_the_logged_values(tmp_path: Path, no_wandb_login: None) -> None:
    pytest.importorskip("wandb")
    result = fit(tiny_digits(tmp_path, "tracking.wandb=true", "tracking.group=my_study"))
    runs = list((result.run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1, "one offline run, inside the run folder"
    records = read_wandb_records(runs[0])

    by_step: dict[int, dict[str, Any]] = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            values = nested_values(r.history.item)
            by_step.setdefault(values["_step"], {}).update(values)
    rows = csv_rows(result.run_dir)
    for row in rows:
        logged = by_step[int(row["epoch"])]
        assert logged["loss/val"] == pytest.approx(float(row["val_loss"]))
        assert logged["lr"] == pytest.approx(float(row["lr"]))
        assert logged["predictions/val"]["_type"] == "images/separated"
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.run_group == "my_study" and run.display_name == "digits_mlp-1.0"
    config: dict[str, Any] = nested_values(run.config.update)  # at init, then updates
    for r in records:
        if r.WhichOneof("record_type") == "config":
            config.update(nested_values(r.config.update))
    assert config["name"] == "digits_mlp" and config["optim"]["lr"] == 0.002
    assert config["classes"] == [str(d) for d in range(10)]
    summary: dict[str, Any] = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            summary.update(nested_values(r.summary.update))
    report = json.loads((result.run_dir / "report.json").read_text())
    assert summary["accuracy/test"] == pytest.approx(report["test"]["accuracy"])

    # Resuming the training run continues the same W&B run.
    first_id = (result.run_dir / "wandb" / "run-id.txt").read_text().strip()
    fit(tiny_digits(tmp_path, "tracking.wandb=true", "resume=true"))
    ids = {p.name.rsplit("-", 1)[1] for p in (result.run_dir / "wandb").glob("offline-run-*")}
    assert ids == {first_id} == {runs[0].stem.removeprefix("run-")}


def nested_values(items: Any) -> dict[str, Any]:
    """History or summary items as a dict (`nested_key` paths become nested dicts)."""
    out: dict[str, Any] = {}
    for item in items:
        keys = [item.key] if item.key else list(item.nested_key)
        node = out
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = json.loads(item.value_json)
    return out


def read_wandb_records(path: Path) -> list[Any]:
    """The protobuf records of a `.wandb` run file: a 7-byte `:W&B` header, then LevelDB log
    blocks of 32 KiB, each record a chunk header (crc32, length, type) and its bytes."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, header = 32768, 7
    records, pending, pos = [], b"", 7
    while pos + header <= len(data):
        left = block - pos % block
        if left < header:  # block trailer padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + header])
        chunk = data[pos + header : pos + header + length]
        pos += header + length
        if kind == 0 and length == 0:
            continue
        pending += chunk
        if kind in (1, 4):  # FULL or LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def test_read_wandb_records_reads_what_wandb_writes(tmp_path: Path, no_wandb_login) -> None:
    wandb = pytest.importorskip("wandb")
    run = wandb.init(project="p", dir=str(tmp_path), mode="offline", config={"a": 1})
    big = np.arange(20000).tolist()  # spans several 32 KiB blocks
    run.log({"x": 1.5, "big": big})
    run.finish()
    wandb.teardown()  # finish() returns before the service has written the file
    (path,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    records = read_wandb_records(path)
    (history,) = [r.history for r in records if r.WhichOneof("record_type") == "history"]
    values = nested_values(history.item)
    assert values["x"] == 1.5 and values["big"] == big
    assert records[-1].WhichOneof("record_type") == "exit"  # read to the end
