"""Experiment tracking: TensorBoard by default, Weights & Biases when asked, the same values.

Every run (and so every trial of a study) logs, next to its checkpoint:

- the resolved config as text, with the classes and the colours of the overlays;
- per epoch: every train/val metric of metrics.csv, the learning rate and the epoch time;
- per epoch: a few validation predictions as pictures (`training.previews`);
- at the end: the test metrics of the best model.

TensorBoard writes `<run dir>/tensorboard/` (`make tensorboard` serves them). W&B
(`tracking.wandb: true`, `pip install -r requirements-wandb.txt`) writes `<run dir>/wandb/`
and runs OFFLINE unless you chose otherwise: `WANDB_MODE` set in the environment, or a W&B
login (`WANDB_API_KEY`, or `wandb login`'s entry in ~/.netrc) makes it sync. Nothing tries
the network by default; `wandb sync <run dir>/wandb/offline-run-*` uploads an offline run
later. Trials of a study share a W&B group named after the study.

Only rank 0 of a distributed run tracks.
"""

from __future__ import annotations

import json
import logging
import math
import netrc
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import yaml

from .config import Config, TrackingConfig, config_to_dict
from .data import IGNORE_INDEX
from .previews import Preview, legend, preview_grid
from .reporting import json_safe
from .runtime import capture_rng, restore_rng

log = logging.getLogger(__name__)

WANDB_INSTALL = "pip install -r requirements-wandb.txt"
DEFAULT_WANDB_HOST = "https://api.wandb.ai"


class Tracker:
    """What the training loop tells a tracker; the base class records nothing."""

    def start(self, config: Config, classes: list[str], dataset: dict[str, Any]) -> None: ...

    def log_epoch(self, row: dict[str, Any]) -> None: ...

    def log_predictions(self, epoch: int, previews: list[Preview], classes: list[str]) -> None: ...

    def log_test(self, scores: dict[str, float], epoch: int) -> None: ...

    def close(self) -> None: ...

    @property
    def wants_images(self) -> bool:
        return False


class TensorBoardTracker(Tracker):
    """Event files in `log_dir`; warns and records nothing when tensorboard is missing."""

    def __init__(self, log_dir: Path) -> None:
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.warning("tensorboard is not installed (make install adds it): no event files")
            return
        self.writer = SummaryWriter(log_dir=str(log_dir))

    @property
    def wants_images(self) -> bool:
        return self.writer is not None

    def start(self, config: Config, classes: list[str], dataset: dict[str, Any]) -> None:
        if self.writer is None:
            return
        self.writer.add_text("config", _code_block(_config_yaml(config)))
        data = json.dumps(json_safe(dataset), indent=2)
        about = f"classes and overlay colours:\n\n{legend(classes)}\n\ndata:\n\n{_code_block(data)}"
        self.writer.add_text("classes", about)
        self.writer.flush()

    def log_epoch(self, row: dict[str, Any]) -> None:
        if self.writer is None:
            return
        for tag, value in epoch_scalars(row).items():
            self.writer.add_scalar(tag, value, row["epoch"])
        self.writer.flush()

    def log_predictions(self, epoch: int, previews: list[Preview], classes: list[str]) -> None:
        if self.writer is None or not previews:
            return
        grid = preview_grid(previews, classes)
        self.writer.add_image("predictions/val", grid, epoch, dataformats="HWC")
        self.writer.flush()

    def log_test(self, scores: dict[str, float], epoch: int) -> None:
        if self.writer is None:
            return
        for name, value in scores.items():
            if _finite(value):
                self.writer.add_scalar(f"{name}/test", value, epoch)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class WandbTracker(Tracker):
    """One W&B run in `<run dir>/wandb/`, offline unless `wandb_mode()` says otherwise."""

    def __init__(self, config: Config) -> None:
        wandb = import_wandb()
        mode = wandb_mode()
        self.wandb = wandb
        # A resumed training run continues its W&B run (same id) instead of starting another.
        id_file = config.run_dir / "wandb" / "run-id.txt"
        run_id = id_file.read_text().strip() if config.resume and id_file.is_file() else None
        self.run = wandb.init(
            id=run_id,
            resume="allow" if run_id else None,
            project=config.tracking.project,
            entity=config.tracking.entity,
            group=config.tracking.group,
            tags=list(config.tracking.tags) or None,
            name=f"{config.name}-{config.version}",
            job_type="train",
            dir=str(config.run_dir),
            mode=mode,
            config=config_to_dict(config),
        )
        id_file.parent.mkdir(parents=True, exist_ok=True)
        id_file.write_text(self.run.id + "\n")
        mode = mode or os.environ["WANDB_MODE"]
        log.info("W&B run %s (%s) in %s", self.run.name, mode, self.run.dir)

    @property
    def wants_images(self) -> bool:
        return True

    def start(self, config: Config, classes: list[str], dataset: dict[str, Any]) -> None:
        self.run.config.update({"classes": classes, "dataset": dataset}, allow_val_change=True)

    def log_epoch(self, row: dict[str, Any]) -> None:
        self.run.log({**epoch_scalars(row), "epoch": row["epoch"]}, step=row["epoch"])

    def log_predictions(self, epoch: int, previews: list[Preview], classes: list[str]) -> None:
        if not previews:
            return
        labels = {k: name for k, name in enumerate(classes)} | {IGNORE_INDEX: "ignore"}
        images = []
        for p in previews:
            if p.prediction is None:
                images.append(self.wandb.Image(p.image, caption=p.caption))
                continue
            masks = {
                "prediction": {"mask_data": p.prediction.astype(np.uint8), "class_labels": labels},
                "ground_truth": {
                    "mask_data": np.asarray(p.truth, np.uint8),
                    "class_labels": labels,
                },
            }
            images.append(self.wandb.Image(p.image, masks=masks, caption=p.caption))
        self.run.log({"predictions/val": images}, step=epoch)

    def log_test(self, scores: dict[str, float], epoch: int) -> None:
        for name, value in scores.items():
            if _finite(value):
                self.run.summary[f"{name}/test"] = value

    def close(self) -> None:
        """Finish the run and stop W&B's background service: `finish()` returns before the
        service has written the run file, and `fit()` promises complete files when it returns."""
        self.run.finish()
        self.wandb.teardown()


class Trackers(Tracker):
    """Tells every configured tracker the same thing."""

    def __init__(self, trackers: list[Tracker]) -> None:
        self.trackers = trackers

    @property
    def wants_images(self) -> bool:
        return any(t.wants_images for t in self.trackers)

    def start(self, config: Config, classes: list[str], dataset: dict[str, Any]) -> None:
        for t in self.trackers:
            t.start(config, classes, dataset)

    def log_epoch(self, row: dict[str, Any]) -> None:
        for t in self.trackers:
            t.log_epoch(row)

    def log_predictions(self, epoch: int, previews: list[Preview], classes: list[str]) -> None:
        for t in self.trackers:
            t.log_predictions(epoch, previews, classes)

    def log_test(self, scores: dict[str, float], epoch: int) -> None:
        for t in self.trackers:
            t.log_test(scores, epoch)

    def close(self) -> None:
        for t in self.trackers:
            t.close()


def build_tracker(config: Config, enabled: bool = True) -> Tracker:
    """The trackers `config.tracking` asks for (none on ranks other than 0).

    Every global random state is restored afterwards: a tracker library that draws a run id
    from `random` must not change the training run.
    """
    if not enabled:
        return Tracker()
    state = capture_rng()
    try:
        trackers: list[Tracker] = []
        if config.tracking.tensorboard:
            trackers.append(TensorBoardTracker(config.run_dir / "tensorboard"))
        if config.tracking.wandb:
            trackers.append(WandbTracker(config))
    finally:
        restore_rng(state)
    return Trackers(trackers)


def check_tracking(tracking: TrackingConfig) -> None:
    """Fail before training when a requested tracker cannot run."""
    if tracking.wandb:
        import_wandb()


def import_wandb() -> Any:
    try:
        import wandb
    except ImportError:
        raise ValueError(
            f"tracking.wandb=true needs the wandb package: {WANDB_INSTALL}, or drop tracking.wandb"
        ) from None
    return wandb


def wandb_mode() -> str | None:
    """None when the user set WANDB_MODE (wandb reads it); else online only when logged in."""
    if os.environ.get("WANDB_MODE"):
        return None
    return "online" if wandb_logged_in() else "offline"


def wandb_logged_in() -> bool:
    """An API key in the environment or in ~/.netrc (where `wandb login` stores it).
    Read locally: asking the server would be the network access offline-first avoids."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or DEFAULT_WANDB_HOST).hostname
    try:
        entry = netrc.netrc(os.environ.get("NETRC")).authenticators(host or "")
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return entry is not None


def epoch_scalars(row: dict[str, Any]) -> dict[str, float]:
    """metrics.csv's row as tracker tags: `loss/train`, `mean_dice/val`, `lr`, `time_s`."""
    scalars = {}
    for key, value in row.items():
        if key == "epoch" or not _finite(value):
            continue
        split, _, name = key.partition("_")
        scalars[f"{name}/{split}" if split in ("train", "val") else key] = float(value)
    return scalars


def _uint8(labels: Any) -> np.ndarray:
    return np.asarray(labels).astype(np.uint8)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _config_yaml(config: Config) -> str:
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)


def _code_block(text: str) -> str:
    """Markdown code (TensorBoard renders text as markdown): indent every line."""
    return "\n".join("    " + line for line in text.splitlines())
