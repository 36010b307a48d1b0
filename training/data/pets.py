"""`oxford_pets`: Oxford-IIIT Pet through torchvision, as 37-breed classification or as
pet-vs-background segmentation.

Segmentation maps the raw trimaps (1 pet, 2 background, 3 border) to the classes
["background", "pet"]. The border is a thin band of uncertain pixels around the pet:
`border="pet"` (default) counts it as pet, which gives masks that cover the whole animal;
`border="ignore"` marks it 255 (`IGNORE_INDEX`) so losses and metrics skip it, the protocol of
the dataset's paper. val is a breed-stratified, seeded slice of the official trainval split;
test is the official test split.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset, Subset
from torchvision import datasets

from .layout import Layout, open_torchvision
from .sampling import carve, fraction_size
from .splits import IGNORE_INDEX, Splits, register_dataset
from .stats import imagenet_stats

log = logging.getLogger(__name__)

TARGETS = ("category", "segmentation")
BORDERS = ("pet", "ignore")
PET_MASK_CLASSES = ["background", "pet"]
_TRIMAP_PET, _TRIMAP_BACKGROUND, _TRIMAP_BORDER = 1, 2, 3


class PetMasks(Dataset):
    """torchvision's (image, trimap) items as (RGB image, mode-"L" mask of class indices)."""

    def __init__(self, pets: datasets.OxfordIIITPet, border: str) -> None:
        self.pets = pets
        # Values a trimap should never hold become IGNORE_INDEX rather than a silent class.
        lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
        lut[_TRIMAP_PET] = 1
        lut[_TRIMAP_BACKGROUND] = 0
        lut[_TRIMAP_BORDER] = 1 if border == "pet" else IGNORE_INDEX
        self.lut = lut

    def __len__(self) -> int:
        return len(self.pets)

    def __getitem__(self, i: int) -> tuple[Image.Image, Image.Image]:
        image, trimap = self.pets[i]
        return image, Image.fromarray(self.lut[np.asarray(trimap, dtype=np.uint8)], "L")


@register_dataset("oxford_pets")
def build_oxford_pets(
    root: Path,
    download: bool,
    seed: int,
    target: str = "category",
    border: str = "pet",
    val_fraction: float = 0.1,
) -> Splits:
    """Oxford-IIIT Pet under `root/oxford-iiit-pet`; see the module docstring for options."""
    if target not in TARGETS:
        raise ValueError(f"oxford_pets target must be one of {TARGETS}, got {target!r}")
    if border not in BORDERS:
        raise ValueError(f"oxford_pets border must be one of {BORDERS}, got {border!r}")
    layout = _layout(root, target)
    kind = "category" if target == "category" else "segmentation"

    def make(split: str) -> datasets.OxfordIIITPet:
        return datasets.OxfordIIITPet(str(root), split=split, target_types=kind, download=download)

    trainval = open_torchvision(layout, download, lambda: make("trainval"))
    test = open_torchvision(layout, download, lambda: make("test"))
    annotations = layout.folder / "annotations"
    trainval_rows = _read_split(annotations / "trainval.txt")
    labels = np.array([label for _, label in trainval_rows])
    if len(labels) != len(trainval):
        raise ValueError(f"{annotations / 'trainval.txt'} changed while it was being read")
    val_idx, train_idx = carve(labels, seed, fraction_size(len(labels), val_fraction))
    if target == "segmentation":
        trainval, test = PetMasks(trainval, border), PetMasks(test, border)
    mean, std = imagenet_stats()
    return Splits(
        train=Subset(trainval, train_idx.tolist()),
        val=Subset(trainval, val_idx.tolist()),
        test=test,
        classes=(
            _breed_names(trainval_rows + _read_split(annotations / "test.txt"))
            if target == "category"
            else list(PET_MASK_CLASSES)
        ),
        task="classification" if target == "category" else "segmentation",
        channels=3,
        size=None,
        mean=mean,
        std=std,
        ignore_index=IGNORE_INDEX if target == "segmentation" else None,
        info={"source": "torchvision OxfordIIITPet", "stats": "ImageNet (timm)"},
    )


def _layout(root: Path, target: str) -> Layout:
    folder = root / "oxford-iiit-pet"
    required = ["images", "annotations/trainval.txt", "annotations/test.txt"]
    if target == "segmentation":
        required.append("annotations/trimaps")
    picture = (
        f"  {folder}/images/<Breed_name>_<n>.jpg\n"
        f"  {folder}/annotations/trainval.txt, test.txt  (lines: <image id> <class 1-37> "
        "<species> <breed id>)\n"
        f"  {folder}/annotations/trimaps/<image id>.png  (1 pet, 2 background, 3 border)\n"
        "  (the two archives images.tar.gz and annotations.tar.gz, extracted there)"
    )
    return Layout("Oxford-IIIT Pet", folder, tuple(required), picture)


def _read_split(path: Path) -> list[tuple[str, int]]:
    """`(image id, 0-based breed label)` per line, in the order torchvision reads them."""
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            image_id, label = line.split()[:2]
            rows.append((image_id, int(label) - 1))
    return rows


def _breed_names(rows: list[tuple[str, int]]) -> list[str]:
    """Breed names indexed by label, named the way torchvision names them ("Great Pyrenees").

    torchvision builds its list from the labels present in one split, so a missing label would
    shift every name after it; here a gap gets a placeholder and a warning instead.
    """
    by_label: dict[int, str] = {}
    for image_id, label in rows:
        raw = image_id.rsplit("_", 1)[0]
        by_label.setdefault(label, " ".join(part.title() for part in raw.split("_")))
    names = [by_label.get(k, f"class {k + 1}") for k in range(max(by_label) + 1)]
    gaps = [k + 1 for k in range(len(names)) if k not in by_label]
    if gaps:
        log.warning("Oxford-IIIT Pet annotations have no image of class(es) %s", gaps)
    return names
