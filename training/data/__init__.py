"""cvserve datasets: every dataset by name, as train/val/test splits of RAW items.

`build_splits(name, root=..., download=..., seed=..., **options)` is the one entry point;
`list_datasets()` names what is registered. Items are `(PIL.Image, int)` for classification
and `(PIL.Image, PIL mask mode "L" of class indices)` for segmentation; training adds the
augmentation and the model's eval transform.
"""

# Importing a dataset module registers its name with build_splits.
from . import (
    coco,  # noqa: F401
    digits,  # noqa: F401
    hf,  # noqa: F401
    image_folder,  # noqa: F401
    imagenette,  # noqa: F401
    pages,  # noqa: F401
    paired_folders,  # noqa: F401
    pets,  # noqa: F401
    scenes,  # noqa: F401
    torchvision_sets,  # noqa: F401
)
from .digits import DIGIT_CLASSES, load_mnist_5k
from .pairing import PairingReport, pair_by_stem
from .scene_render import PlacedDigit, Scene, digit_scene
from .scenes import SCENE_CLASSES
from .splits import (
    IGNORE_INDEX,
    Splits,
    build_splits,
    dataset_options,
    list_datasets,
    register_dataset,
)

__all__ = [
    "DIGIT_CLASSES",
    "IGNORE_INDEX",
    "SCENE_CLASSES",
    "PairingReport",
    "PlacedDigit",
    "Scene",
    "Splits",
    "build_splits",
    "dataset_options",
    "digit_scene",
    "list_datasets",
    "load_mnist_5k",
    "pair_by_stem",
    "register_dataset",
]
