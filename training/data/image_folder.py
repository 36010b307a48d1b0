"""`image_folder`: classification from torchvision's ImageFolder layout, `<root>/<class>/<image>`.

Images go through `model_src.to_model_mode`, the conversion the served model applies, so
`channels` decides mode "L" or "RGB". mean/std are measured on a sample of training images
(your data may be X-rays, not ImageNet photos).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from .folder_splits import assign_splits, check_channels, split_folders
from .images import load_image, sample_stats
from .splits import Splits, register_dataset


class FolderImages(Dataset):
    """`(path, label)` samples read as `(PIL image, int)`."""

    def __init__(self, samples: list[tuple[str, int]], channels: int) -> None:
        self.samples = samples
        self.channels = channels
        self.targets = [label for _, label in samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        path, label = self.samples[i]
        return load_image(path, self.channels), label


@register_dataset("image_folder")
def build_image_folder(
    root: Path,
    download: bool,
    seed: int,
    channels: int = 3,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> Splits:
    """torchvision's ImageFolder layout: `<root>[/train|val|test]/<class name>/<image>`.

    Class names are the sorted folder names of the training folder; val/test folders use the
    same indices (a class missing there is fine, an extra class is an error).
    """
    check_channels(channels)
    folders = split_folders(root, "image_folder", "<class>/<image>")
    classes, class_to_idx = find_classes(folders["train"])
    parts: dict[str, FolderImages] = {}
    for name, folder in folders.items():
        extra = sorted(set(find_classes(folder)[0]) - set(classes)) if name != "train" else []
        if extra:
            raise ValueError(f"{folder} has classes {extra} that {folders['train']} does not")
        samples = make_dataset(
            str(folder), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=name != "train"
        )
        parts[name] = FolderImages(samples, channels)
    labels = np.asarray(parts["train"].targets)
    train, val, test = assign_splits(parts, labels, seed, val_fraction, test_fraction)
    mean, std = sample_stats([train.dataset.samples[i][0] for i in train.indices], channels, seed)
    return Splits(
        train=train,
        val=val,
        test=test,
        classes=classes,
        task="classification",
        channels=channels,
        size=None,
        mean=mean,
        std=std,
        info={"source": f"image folder {root}", "stats": "sample of train images"},
    )
