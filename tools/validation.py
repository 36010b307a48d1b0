"""Canary validation: score a served model version on a labelled set, over HTTP.

A promotion must judge the version exactly as clients will see it: the same archive, handler,
preprocessing and worker, so the candidate and the current default are both scored through
`/predictions/<model>/<version>` with real image files (PNG bytes, or the folder's own files
untouched), never by loading the checkpoint in-process.

Validation sets:
- `held_out_validation_set(candidate, default)`: the held-out split the model cards name.
  A card records its dataset's identity (name, split seed, options: `ModelCard.dataset`),
  so the gate rebuilds exactly the split the model never trained on, and refuses
  (`NoHeldOutSplit`) when a card does not say, when the candidate and the default were split
  differently (no split is unseen by both), or when the dataset cannot be rebuilt here.
- `split_validation_set(dataset, seed, options)`: one dataset's held-out split
  (`training.data.build_splits`), each image encoded as PNG.
- `folder_validation_set(root, task)`: a user's labelled folder, sent as the files on disk:
  classifiers use torchvision's ImageFolder layout `<root>/<class name>/<image>`,
  segmenters `<root>/images/<stem>.<ext>` + `<root>/masks/<stem>.png` (class-index masks,
  255 = ignore), the layouts `training.data` trains from.

Scores: accuracy for classifiers (the response's `label` against the folder/split label);
for segmenters the mean Dice over non-background classes from one dataset-wide pixel
confusion matrix, computed by `training.metrics` so the number means what the training
report's `mean_dice` means.
"""

from __future__ import annotations

import base64
import io
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from handlers.contract import CLASSIFIER, SEGMENTER
from handlers.png import png_bytes

#: The default models' datasets (for tools and tests; the gate reads the model card instead).
EMBEDDED_DATASETS = {CLASSIFIER: "digits", SEGMENTER: "digit_scenes"}
#: Default sample counts: enough to see a broken model, small enough that promote takes seconds.
DEFAULT_LIMITS = {"classification": 200, "segmentation": 50}
#: Images per HTTP request (`{"images": [...]}`): fewer round trips, batches stay modest.
CHUNK = 16
IGNORE_INDEX = 255
SEED = 0


class Predictor(Protocol):
    """What scoring needs from `tools.client.Client`."""

    def predict_many(
        self, images: Sequence[bytes], model: str, version: str | None = None, **options: Any
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Sample:
    """One encoded image file and its truth: a class label, or a class-index mask (H, W)."""

    data: bytes
    target: str | np.ndarray
    name: str = ""


@dataclass
class ValidationSet:
    """Labelled samples for one task, and where they came from (for the report)."""

    task: str
    samples: list[Sample]
    source: str
    classes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)


@dataclass
class Score:
    """One version's result on a validation set."""

    version: str
    metric: str
    value: float
    samples: int
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "metric": self.metric,
            "value": round(self.value, 4),
            "samples": self.samples,
            "seconds": round(self.seconds, 2),
            **({"details": _rounded(self.details)} if self.details else {}),
        }


def _rounded(values: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in values.items()}


def metric_name(task: str) -> str:
    """The gate's metric per task (also the key the training report uses)."""
    return {"classification": "accuracy", "segmentation": "mean_dice"}[task]


def _subset(n: int, limit: int | None) -> list[int]:
    """`limit` indices of `n`, a fixed random draw: a sorted folder cut at `limit` would hold
    only its first classes, and the same draw for every run makes scores comparable."""
    if limit is None or limit >= n:
        return list(range(n))
    return sorted(random.Random(SEED).sample(range(n), limit))


class NoHeldOutSplit(ValueError):
    """No split can be rebuilt that the models being compared never trained on."""


@dataclass(frozen=True)
class DatasetIdentity:
    """What fixes a model's data split: the dataset's name, split seed and options."""

    name: str
    seed: int
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, card: dict[str, Any]) -> DatasetIdentity | None:
        """The identity a model card records (`dataset`), or None when it does not say."""
        entry = card.get("dataset") or {}
        if not entry.get("name") or entry.get("seed") is None:
            return None
        return cls(str(entry["name"]), int(entry["seed"]), dict(entry.get("options") or {}))

    def __str__(self) -> str:
        options = f", options {self.options}" if self.options else ""
        return f"{self.name} (split seed {self.seed}{options})"


def held_out_validation_set(
    candidate: dict[str, Any],
    default: dict[str, Any],
    *,
    split: str = "test",
    limit: int | None = None,
) -> ValidationSet:
    """The `split` the two model cards' dataset identity fixes, rebuilt exactly.

    Raises NoHeldOutSplit, saying to pass a labelled folder instead, when a card records no
    dataset, when the two were split differently, or when the dataset cannot be rebuilt.
    """
    fix = "pass --validation DIR (a labelled folder neither version trained on)"
    ident = DatasetIdentity.of(candidate)
    if ident is None:
        raise NoHeldOutSplit(
            f"the candidate's model card does not record its dataset (name, split seed, "
            f"options), so no split it never trained on can be rebuilt; {fix}"
        )
    other = DatasetIdentity.of(default)
    if other is None:
        raise NoHeldOutSplit(
            f"the default version's model card does not record its dataset, so it may have "
            f"trained on {ident}'s {split} split; {fix}"
        )
    if other != ident:
        raise NoHeldOutSplit(
            f"the candidate was trained on {ident} and the default on {other}: no {split} "
            f"split is held out from both; {fix}"
        )
    try:
        return split_validation_set(
            ident.name, limit=limit, split=split, seed=ident.seed, options=ident.options
        )
    except (FileNotFoundError, RuntimeError, ValueError, KeyError) as exc:
        raise NoHeldOutSplit(f"cannot rebuild the {split} split of {ident}: {exc}; {fix}") from exc


def split_validation_set(
    dataset: str,
    *,
    limit: int | None = None,
    split: str = "test",
    seed: int = 0,
    options: dict[str, Any] | None = None,
) -> ValidationSet:
    """A dataset's held-out split, as `build_splits(dataset, seed, **options)` makes it for
    training, as PNG files (`limit` defaults per task). Offline: nothing is downloaded."""
    from training.data import build_splits

    if split not in ("val", "test"):
        raise ValueError(f"split must be val or test (held out from training), got {split!r}")
    splits = build_splits(dataset, seed=seed, **(options or {}))
    part = getattr(splits, split)
    limit = DEFAULT_LIMITS[splits.task] if limit is None else limit
    samples = []
    for i in _subset(len(part), limit):
        image, target = part[i]
        if splits.task == "classification":
            truth: str | np.ndarray = splits.classes[int(target)]
        else:
            truth = np.asarray(target, dtype=np.uint8)
        samples.append(Sample(png_bytes(image), truth, f"{dataset}/{split}/{i}"))
    shown = f", options {options}" if options else ""
    return ValidationSet(
        splits.task,
        samples,
        f"{dataset} {split} split (seed {seed}{shown})",
        list(splits.classes),
    )


def folder_validation_set(
    root: str | Path, task: str, *, limit: int | None = None
) -> ValidationSet:
    """A labelled folder (ImageFolder, or images/ + masks/), its files sent as they are."""
    root = Path(root)
    if task not in DEFAULT_LIMITS:
        raise ValueError(f"no validation for task {task!r}; known: {sorted(DEFAULT_LIMITS)}")
    if not root.is_dir():
        raise FileNotFoundError(f"validation folder {root} does not exist")
    limit = DEFAULT_LIMITS[task] if limit is None else limit
    if task == "classification":
        return _image_folder(root, limit)
    return _paired_folders(root, limit)


def _image_folder(root: Path, limit: int) -> ValidationSet:
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    try:
        classes, class_to_idx = find_classes(str(root))
    except FileNotFoundError as exc:
        raise ValueError(
            f"{root} is not an ImageFolder layout (<root>/<class name>/<image>): {exc}"
        ) from exc
    items = make_dataset(str(root), class_to_idx, extensions=IMG_EXTENSIONS)
    samples = [
        Sample(Path(items[i][0]).read_bytes(), classes[items[i][1]], items[i][0])
        for i in _subset(len(items), limit)
    ]
    return ValidationSet("classification", samples, f"image folder {root}", classes)


def _paired_folders(root: Path, limit: int) -> ValidationSet:
    from training.data import pair_by_stem
    from training.data.masks import read_index_mask

    images, masks = root / "images", root / "masks"
    if not images.is_dir() or not masks.is_dir():
        raise ValueError(f"{root} must hold images/ and masks/ (paired by file stem)")
    pairs = pair_by_stem(images, masks).pairs
    if not pairs:
        raise ValueError(f"no image/mask pairs in {root}: masks/<stem>.png for images/<stem>.*")
    samples = [
        Sample(pairs[i][0].read_bytes(), read_index_mask(pairs[i][1]), str(pairs[i][0]))
        for i in _subset(len(pairs), limit)
    ]
    return ValidationSet("segmentation", samples, f"paired folders {root}")


# ---- scoring -----------------------------------------------------------------------------------


def accuracy(predicted: Sequence[str], truth: Sequence[str]) -> float:
    """Fraction of equal labels (labels compared as text: the card's class names)."""
    if len(predicted) != len(truth):
        raise ValueError(f"{len(predicted)} predictions for {len(truth)} samples")
    if not truth:
        raise ValueError("accuracy of an empty validation set")
    return sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(truth)


def decode_mask(mask_png: str) -> np.ndarray:
    """A response's base64 `mask_png` -> (H, W) class indices (palette indices for mode P)."""
    with Image.open(io.BytesIO(base64.b64decode(mask_png))) as img:
        return np.asarray(img if img.mode in ("L", "P") else img.convert("L"), dtype=np.uint8)


def dice_scores(
    predicted: Sequence[np.ndarray], truth: Sequence[np.ndarray], num_classes: int
) -> dict[str, Any]:
    """Mean Dice over non-background classes, pixels of all images pooled.

    Uses training.metrics' confusion matrix and `segmentation_scores`: classes absent from
    both prediction and truth are skipped, background (class 0) is left out of the mean,
    `IGNORE_INDEX` pixels are not counted. If no foreground class occurs at all (every image
    empty and predicted empty), the prediction is perfect: 1.0, not NaN, so the gate can
    still compare.
    """
    import torch

    from training.metrics import ConfusionMatrix, segmentation_scores

    if len(predicted) != len(truth):
        raise ValueError(f"{len(predicted)} predicted masks for {len(truth)} samples")
    matrix = ConfusionMatrix(num_classes, ignore_index=IGNORE_INDEX)
    for i, (pred, target) in enumerate(zip(predicted, truth, strict=True)):
        if pred.shape != target.shape:
            raise ValueError(
                f"sample {i}: predicted mask is {pred.shape[::-1]} (W, H) but the truth is "
                f"{target.shape[::-1]}; masks must have their image's (upright) size"
            )
        matrix.update(
            torch.from_numpy(pred.astype(np.int64)), torch.from_numpy(target.astype(np.int64))
        )
    scores = segmentation_scores(matrix.matrix)
    mean = scores["mean_dice"]
    return {
        "mean_dice": 1.0 if math.isnan(mean) else float(mean),
        "foreground_dice": scores["foreground_dice"],
        "pixel_accuracy": scores["pixel_accuracy"],
    }


def score_version(
    client: Predictor,
    model: str,
    version: str,
    vset: ValidationSet,
    num_classes: int | None = None,
    chunk: int = CHUNK,
) -> Score:
    """Send every sample to `/predictions/<model>/<version>` and score the answers.

    `num_classes` (segmenters) defaults to the classes the responses name.
    """
    started = time.perf_counter()
    answers: list[dict[str, Any]] = []
    for start in range(0, len(vset.samples), chunk):
        batch = [s.data for s in vset.samples[start : start + chunk]]
        answers += client.predict_many(batch, model, version)["predictions"]
    if len(answers) != len(vset):
        raise RuntimeError(f"{model} {version} answered {len(answers)} of {len(vset)} images")
    if vset.task == "classification":
        value = accuracy([a["label"] for a in answers], [str(s.target) for s in vset.samples])
        details: dict[str, Any] = {}
    else:
        classes = num_classes or len(answers[0]["classes"])
        details = dice_scores(
            [decode_mask(a["mask_png"]) for a in answers],
            [s.target for s in vset.samples],  # type: ignore[misc]
            classes,
        )
        value = details.pop("mean_dice")
    return Score(
        version, metric_name(vset.task), value, len(vset), time.perf_counter() - started, details
    )
