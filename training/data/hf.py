"""`hf`: Hugging Face `datasets`, from the hub or from a local folder (offline).

Where the data comes from (`path`, relative to `root` or absolute; default `root` itself):

- a folder written by `save_to_disk` (a `DatasetDict` with `dataset_dict.json`, or one
  `Dataset` with `state.json`): read with `datasets.load_from_disk`, no network;
- any other local folder (parquet shards as the hub stores them, `data/train-*.parquet`,
  `data/test-*.parquet`, ...): read with `datasets.load_dataset(folder)`, no network;
- otherwise a hub name (`owner/name`): `datasets.load_dataset(path, config_name, revision)`, which
  needs `download: true`, like every other cvserve dataset that would fetch files. A hub
  dataset downloaded once stays in the Hugging Face cache; save it with `save_to_disk` to
  train offline from then on.

Columns are mapped by options: `image_column`, and either `label_column` (classification: a
`ClassLabel`, integers or strings) or `mask_column` (segmentation: images of class indices,
0 background, 255 ignore). Splits: `train`, then `validation`/`val`/`valid` and `test` when
present (or `train_split`/`val_split`/`test_split`); a missing one is carved out of train
with a seed, stratified by label.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from model_src import to_model_mode

from .folder_splits import assign_splits, check_channels
from .images import sample_stats_of
from .masks import index_array, mask_image
from .splits import IGNORE_INDEX, Splits, register_dataset

log = logging.getLogger(__name__)

VAL_NAMES = ("validation", "val", "valid")


class HFImages(Dataset):
    """Rows of a `datasets.Dataset` as `(PIL image, int)` or `(PIL image, PIL mask "L")`.

    `label_map` turns raw label values (strings, or integers) into class indices.
    """

    def __init__(
        self,
        table: Any,
        image_column: str,
        target_column: str,
        channels: int,
        segmentation: bool,
        label_map: dict[Any, int] | None = None,
    ) -> None:
        self.table = table
        self.image_column = image_column
        self.target_column = target_column
        self.channels = channels
        self.segmentation = segmentation
        self.label_map = label_map

    def __len__(self) -> int:
        return len(self.table)

    def image(self, i: int) -> Image.Image:
        return _as_image(self.table[i][self.image_column], self.channels, f"row {i}")

    def __getitem__(self, i: int) -> tuple[Image.Image, Any]:
        row = self.table[i]
        image = _as_image(row[self.image_column], self.channels, f"row {i}")
        target = row[self.target_column]
        if not self.segmentation:
            return image, self.label_map[target] if self.label_map else int(target)
        indices = index_array(_as_pil(target, f"row {i} {self.target_column}"), f"row {i} mask")
        if indices.shape != (image.height, image.width):
            raise ValueError(
                f"row {i}: the mask is {indices.shape[1]}x{indices.shape[0]} but the image is "
                f"{image.width}x{image.height}"
            )
        return image, mask_image(indices)


@register_dataset("hf")
def build_hf(
    root: Path,
    download: bool,
    seed: int,
    path: str | None = None,
    config_name: str | None = None,
    revision: str | None = None,
    cache_dir: str | None = None,
    image_column: str = "image",
    label_column: str = "label",
    mask_column: str | None = None,
    classes: Sequence[str] | None = None,
    channels: int = 3,
    train_split: str = "train",
    val_split: str | None = None,
    test_split: str | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> Splits:
    """A Hugging Face dataset as cvserve splits (see the module docstring).

    `config_name` and `revision` are the hub's configuration name and git revision;
    `cache_dir` is where `load_dataset` keeps its files (default: the Hugging Face cache).
    `classes` names the classes (default: the `ClassLabel` names, else the sorted label
    values, else for masks "background", "1", ... up to the largest value found).
    """
    check_channels(channels)
    tables, source = load_tables(root, download, path, config_name, revision, cache_dir)
    picked = _pick_splits(tables, source, train_split, val_split, test_split)
    segmentation = mask_column is not None
    target = mask_column if segmentation else label_column
    for split, table in picked.items():
        missing = [c for c in (image_column, target) if c not in table.column_names]
        if missing:
            raise ValueError(
                f"{source} split {split!r} has no column(s) {missing}; its columns are "
                f"{table.column_names}: set data.options.image_column / "
                f"{'mask_column' if segmentation else 'label_column'}"
            )
    if segmentation:
        class_names, label_map = _mask_classes(picked, target, classes, source), None
        labels = np.zeros(len(picked["train"]), dtype=np.int64)
    else:
        class_names, label_map = _label_classes(picked, target, classes, source)
        labels = np.asarray(
            [label_map[v] if label_map else int(v) for v in picked["train"][target]]
        )
    parts = {
        split: HFImages(table, image_column, target, channels, segmentation, label_map)
        for split, table in picked.items()
    }
    train, val, test = assign_splits(parts, labels, seed, val_fraction, test_fraction)
    pool = parts["train"]
    mean, std = sample_stats_of(
        lambda k: pool.image(train.indices[k]), len(train.indices), channels, seed
    )
    return Splits(
        train=train,
        val=val,
        test=test,
        classes=class_names,
        task="segmentation" if segmentation else "classification",
        channels=channels,
        size=None,
        mean=mean,
        std=std,
        ignore_index=IGNORE_INDEX if segmentation else None,
        info={
            "source": f"hugging face {source}",
            "stats": "sample of train images",
            "splits": {split: len(table) for split, table in picked.items()},
            "columns": {"image": image_column, "target": target},
        },
    )


def load_tables(
    root: Path,
    download: bool,
    path: str | None,
    name: str | None,
    revision: str | None,
    cache_dir: str | None,
) -> tuple[dict[str, Any], str]:
    """`{split: datasets.Dataset}` and a description of where they came from."""
    import datasets

    local = root if path is None else (Path(path) if Path(path).is_absolute() else root / path)
    if local.is_dir():
        if (local / "dataset_dict.json").is_file() or (local / "state.json").is_file():
            loaded = datasets.load_from_disk(str(local))
        else:
            loaded = datasets.load_dataset(str(local), name, cache_dir=cache_dir)
        source = str(local)
    elif path is None:
        raise FileNotFoundError(
            f"hf: folder {local} not found; set data.root to a save_to_disk or parquet folder, "
            "or data.options.path to a hub dataset name (with data.download=true)"
        )
    elif not download:
        raise FileNotFoundError(
            f"hf: {local} is not a folder, and {path!r} as a hub dataset needs "
            "data.download=true (internet). Offline, point data.options.path at a "
            "save_to_disk or parquet folder"
        )
    else:
        loaded = datasets.load_dataset(path, name, revision=revision, cache_dir=cache_dir)
        source = f"hub {path}" + (f" ({name})" if name else "")
    if isinstance(loaded, datasets.Dataset):
        return {"train": loaded}, source
    return dict(loaded), source


def _pick_splits(
    tables: dict[str, Any],
    source: str,
    train_split: str,
    val_split: str | None,
    test_split: str | None,
) -> dict[str, Any]:
    def need(split: str) -> Any:
        if split not in tables:
            raise ValueError(f"{source} has no split {split!r}; it has {sorted(tables)}")
        return tables[split]

    picked = {"train": need(train_split)}
    val = val_split or next((s for s in VAL_NAMES if s in tables), None)
    test = test_split or ("test" if "test" in tables else None)
    if val is not None:
        picked["val"] = need(val)
    if test is not None:
        picked["test"] = need(test)
    return picked


def _label_classes(
    picked: dict[str, Any], column: str, classes: Sequence[str] | None, source: str
) -> tuple[list[str], dict[Any, int] | None]:
    """Class names and, for string labels, the value -> index map; labels are checked."""
    feature = picked["train"].features[column]
    values = {split: set(table[column]) for split, table in picked.items()}
    seen = set().union(*values.values())
    if all(isinstance(v, str) for v in seen):
        names = sorted(seen) if classes is None else list(classes)
        unknown = sorted(seen - set(names))
        if unknown:
            raise ValueError(f"{source}: labels {unknown[:5]} are not in classes {names}")
        return names, {name: k for k, name in enumerate(names)}
    if classes is not None:
        names = list(classes)
    elif hasattr(feature, "names"):
        names = list(feature.names)
    else:
        names = [str(k) for k in range(max(seen) + 1)]
    for split, found in values.items():
        bad = sorted(v for v in found if not isinstance(v, int) or not 0 <= v < len(names))
        if bad:
            raise ValueError(
                f"{source} split {split!r}: labels {bad[:5]} are not class indices in "
                f"[0, {len(names)}) (unlabelled -1 rows? choose other splits with "
                "data.options.val_split / test_split)"
            )
    return names, None


def _mask_classes(
    picked: dict[str, Any], column: str, classes: Sequence[str] | None, source: str
) -> list[str]:
    """Check every mask's values against `classes`, or infer the classes from them."""
    top = 0
    for split, table in picked.items():
        for i, value in enumerate(table[column]):
            found = set(np.unique(index_array(_as_pil(value, f"row {i}"), f"row {i}")).tolist())
            found.discard(IGNORE_INDEX)
            top = max(top, max(found, default=0))
            if classes is not None and top >= len(classes):
                raise ValueError(
                    f"{source} split {split!r} row {i}: mask value {top} is not a class index "
                    f"of {list(classes)}"
                )
    if classes is not None:
        return list(classes)
    if top == 0:
        raise ValueError(f"{source}: every mask holds only background (0) or ignore (255)")
    log.info("%s: classes inferred from the masks: background and 1..%d", source, top)
    return ["background", *(str(k) for k in range(1, top + 1))]


def _as_pil(value: Any, where: str) -> Image.Image:
    """An `Image` feature decodes to PIL; plain arrays and `{"bytes": ...}` rows are read too."""
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, np.ndarray | list):
        return Image.fromarray(np.asarray(value).astype(np.uint8))
    raise ValueError(f"{where}: expected an image, got {type(value).__name__}")


def _as_image(value: Any, channels: int, where: str) -> Image.Image:
    image = _as_pil(value, where)
    image.load()
    return to_model_mode(image, channels)
