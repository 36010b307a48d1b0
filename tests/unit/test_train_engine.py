"""The fit loop end to end on tiny subsets: every embedded config, the run folder, resume."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model_src import InputSpec, load_checkpoint, read_checkpoint
from training import engine
from training.config import config_from_dict, config_to_dict, load_config
from training.data import Splits, build_splits, register_dataset
from training.engine import evaluate, fit
from training.loaders import build_data, load_splits
from training.losses import build_loss
from training.metrics import build_metrics
from training.reporting import write_json
from training.runtime import Runtime, build_runtime
from training.transforms import TransformedDataset, pair_transform

CONFIG_DIR = Path(__file__).resolve().parents[2] / "training" / "configs"
EMBEDDED = [
    "digits_mlp",
    "digits_skip_mlp",
    "digits_convnet",
    "digits_tinyvgg",
    "scenes_unet",
    "scenes_lraspp",
    "scenes_deeplabv3",
]
# Three optimizer steps of 16 items, 48 items to validate and test on.
SMOKE = ["epochs=1", "data.limit=48", "data.batch_size=16", "data.eval_batch_size=48"]
RUN_FILES = ("model.pt", "last.pt", "config.yaml", "metrics.csv", "curves.png", "report.json")


@pytest.mark.slow
@pytest.mark.parametrize("name", EMBEDDED)
def test_embedded_config_writes_a_run_folder_whose_card_matches(name: str, tmp_path: Path) -> None:
    config = load_config(CONFIG_DIR / f"{name}.yaml", [*SMOKE, f"output_dir={tmp_path}"])
    result = fit(config)
    run_dir = tmp_path / config.name / config.version
    assert result.run_dir == run_dir
    assert all((run_dir / f).is_file() for f in RUN_FILES)

    model, card = load_checkpoint(run_dir / "model.pt")
    splits = build_splits(config.data.name, seed=config.data.seed, **config.data.options)
    assert (card.name, card.version, card.arch) == (config.name, config.version, config.model.arch)
    assert card.task == splits.task and card.classes == splits.classes
    assert config.model.kwargs.items() <= card.arch_kwargs.items()
    assert card.arch_kwargs["in_channels"] == splits.channels
    expected = InputSpec(splits.size, splits.channels, splits.mean, splits.std)
    assert card.input == replace(expected, object_size=splits.object_size)
    resolved = load_config(run_dir / "config.yaml")
    assert card.config == config_to_dict(resolved)
    report = json.loads((run_dir / "report.json").read_text())
    assert card.metrics["test"] == pytest.approx(report["test"], nan_ok=True)
    assert report["config"] == card.config and report["wall_time_s"] > 0
    if card.task == "classification":
        assert len(report["confusion_matrix"]) == len(card.classes)
    else:  # object-level scores of the segmenter served in-process, on the test items
        objects = report["objects"]["test"]
        assert objects["images"] == 48 and objects["objects"] > 0
        assert set(objects) >= {"precision", "recall", "f1", "label_accuracy", "mean_dice"}
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert len(rows) == 1 and f"val_{report['monitor']}" in rows[0]

    # The checkpoint alone reproduces the reported test score through the eval transform.
    test = TransformedDataset(splits.test, pair_transform(card.task, card.input))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(test, [int(i * len(test) / 48) for i in range(48)]),
        batch_size=48,
    )
    loss_fn = build_loss(resolved.loss, card.task)
    metrics = evaluate(model, loader, loss_fn, _cpu(), _metrics(card))
    key = report["monitor"]
    assert metrics.summary()[key] == pytest.approx(report["test"][key], nan_ok=True)


def _cpu() -> Runtime:
    from training.distributed import DistInfo

    return Runtime(device=torch.device("cpu"), dist=DistInfo())


def _metrics(card):
    return build_metrics(card.task, len(card.classes), card.config["loss"]["ignore_index"])


class Interrupted(Exception):
    """Stands in for a crash or Ctrl-C between two epochs."""


def tiny_config(tmp_path: Path, *extra: str):
    overrides = [
        f"output_dir={tmp_path}",
        "epochs=3",
        "data.limit=64",
        "data.batch_size=16",
        "model.kwargs.hidden_sizes=[32]",
        "model.kwargs.dropout=0.3",  # dropout and augmentation both draw random numbers
        "schedule.name=cosine",
        "schedule.warmup_epochs=1",
        *extra,
    ]
    return load_config(CONFIG_DIR / "digits_mlp.yaml", overrides)


def test_resume_repeats_the_uninterrupted_run_exactly(tmp_path, monkeypatch) -> None:
    full = fit(tiny_config(tmp_path / "full"))

    real_run_epoch = engine.run_epoch

    def crash_after_two_epochs(run):
        if run.state.epoch == 2:
            raise Interrupted
        real_run_epoch(run)

    monkeypatch.setattr(engine, "run_epoch", crash_after_two_epochs)
    with pytest.raises(Interrupted):
        fit(tiny_config(tmp_path / "split"))
    monkeypatch.setattr(engine, "run_epoch", real_run_epoch)
    resumed = fit(tiny_config(tmp_path / "split", "resume=true"))

    for name in ("model.pt", "last.pt"):
        a = torch.load(full.run_dir / name, weights_only=True)
        b = torch.load(resumed.run_dir / name, weights_only=True)
        key = "state_dict" if name == "model.pt" else "model"
        assert a[key].keys() == b[key].keys()
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])
    assert _rows(full.run_dir) == _rows(resumed.run_dir)
    assert resumed.metrics == full.metrics


def _rows(run_dir: Path) -> list[dict[str, str]]:
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    return [{k: v for k, v in row.items() if k != "time_s"} for row in rows]


def test_resume_without_last_pt_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train without resume=true"):
        fit(tiny_config(tmp_path, "resume=true"))


def test_early_stopping_ends_the_run_and_the_best_model_is_kept(tmp_path, monkeypatch) -> None:
    scores = iter([0.5, 0.7, 0.6, 0.6])  # validation accuracy per epoch; then the real test
    real_evaluate = engine.evaluate

    def scripted_evaluate(model, loader, loss_fn, runtime, metrics):
        result = real_evaluate(model, loader, loss_fn, runtime, metrics)
        value = next(scores, None)
        if value is not None:
            summary = result.summary()
            result.summary = lambda: {**summary, "accuracy": value}
        return result

    monkeypatch.setattr(engine, "evaluate", scripted_evaluate)
    config = tiny_config(
        tmp_path, "epochs=5", "patience=2", "monitor=accuracy", "schedule.name=none"
    )
    result = fit(config)
    report = json.loads((result.run_dir / "report.json").read_text())
    assert report["epochs"] == 4 and report["stopped_early"]  # 0.6, 0.6 after 0.7: stop
    assert report["best_epoch"] == 2 and report["val"]["accuracy"] == 0.7  # epochs count from 1
    card, _ = read_checkpoint(result.run_dir / "model.pt")
    assert card.metrics["best_epoch"] == 2


class Blobs(torch.utils.data.Dataset):
    """Bright squares on noise; masks 1 inside, 0 outside, 255 on the square's outline."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        rng = np.random.default_rng([self.seed, i])
        pixels = rng.integers(0, 80, (16, 16), dtype=np.uint8)
        mask = np.zeros((16, 16), np.uint8)
        y, x = rng.integers(0, 8, 2)
        mask[y : y + 8, x : x + 8] = 255
        mask[y + 1 : y + 7, x + 1 : x + 7] = 1
        pixels[mask > 0] = 220
        return Image.fromarray(pixels), Image.fromarray(mask)


@register_dataset("test_train_engine_blobs")
def _blobs(root, download, seed):
    return Splits(
        train=Blobs(32, 0),
        val=Blobs(16, 1),
        test=Blobs(16, 2),
        classes=["background", "square"],
        task="segmentation",
        channels=1,
        size=(16, 16),
        mean=(0.3,),
        std=(0.3,),
        ignore_index=255,
    )


def test_binary_segmenter_with_ignored_pixels(tmp_path: Path) -> None:
    config = config_from_dict(
        {
            "name": "blobs",
            "output_dir": str(tmp_path),
            "data": {"name": "test_train_engine_blobs", "batch_size": 8},
            "model": {"arch": "unet", "kwargs": {"num_classes": 1, "depth": 1, "base_width": 4}},
            "loss": {"name": "ce_dice", "include_background": False},
            "optim": {"lr": 0.01},
            "epochs": 2,
        }
    )
    result = fit(config)
    card = result.card
    assert card.is_binary and card.num_outputs == 1 and card.classes == ["background", "square"]
    assert card.config["loss"]["ignore_index"] == 255  # the dataset's, filled in
    assert set(result.metrics["test"]) == {
        "loss",
        "mean_dice",
        "mean_iou",
        "foreground_dice",
        "pixel_accuracy",
    }
    assert result.metrics["test"]["mean_dice"] == result.metrics["test"]["foreground_dice"]
    report = json.loads((result.run_dir / "report.json").read_text())
    assert set(report["per_class"]) == {"background", "square"}


def test_report_json_writes_undefined_scores_as_null(tmp_path: Path) -> None:
    path = write_json({"dice": [float("nan"), 0.5], "x": (1, float("inf"))}, tmp_path / "r.json")
    assert json.loads(path.read_text()) == {"dice": [None, 0.5], "x": [1, None]}


def test_amp_and_channels_last_switch_off_on_cpu(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, "amp=fp16", "channels_last=true", "device=cpu")
    runtime = build_runtime(config)
    assert runtime.amp_dtype is None and not runtime.channels_last
    assert not runtime.grad_scaler().is_enabled() and not runtime.pin_memory


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_and_channels_last_train_on_cuda(amp: str, tmp_path: Path) -> None:
    overrides = [*SMOKE, f"output_dir={tmp_path}", f"amp={amp}", "channels_last=true"]
    result = fit(load_config(CONFIG_DIR / "scenes_unet.yaml", overrides))
    report = json.loads((result.run_dir / "report.json").read_text())
    assert report["device"]["type"] == "cuda" and report["device"]["amp"] != "none"
    assert load_checkpoint(result.run_dir / "model.pt")[1].name == "digit_segmenter"


def test_evaluating_does_not_move_the_training_random_stream(tmp_path: Path) -> None:
    config = tiny_config(tmp_path)
    data, _ = build_data(config, build_runtime(config))
    torch.manual_seed(0)
    before = torch.get_rng_state()
    for _ in data.loaders["val"]:
        pass
    assert torch.equal(torch.get_rng_state(), before)


def test_training_seed_does_not_change_the_split(tmp_path: Path) -> None:
    a = load_splits(tiny_config(tmp_path, "seed=1"))
    b = load_splits(tiny_config(tmp_path, "seed=2"))
    assert [a.test[i][1] for i in range(20)] == [b.test[i][1] for i in range(20)]
