"""torchvision-backed datasets, loaded through the real torchvision code with `download=False`
from tiny fake files written in each dataset's real on-disk format."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torchvision
from PIL import Image
from torchvision import datasets

from training.data import DIGIT_CLASSES, IGNORE_INDEX, build_splits
from training.data.stats import imagenet_stats

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer"]
CIFAR_NAMES += ["dog", "frog", "horse", "ship", "truck"]
# (image-id prefix, class id 1..37, species 1 cat / 2 dog), as in the real annotation files.
PET_BREEDS = [("Abyssinian", 1, 1), ("american_bulldog", 2, 2), ("american_pit_bull_terrier", 3, 2)]
PET_NAMES = ["Abyssinian", "American Bulldog", "American Pit Bull Terrier"]


def write_idx(raw: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    """MNIST's idx format: big-endian int32 magic (2051 images, 2049 labels) and sizes."""
    raw.mkdir(parents=True, exist_ok=True)
    n = len(images)
    header = struct.pack(">iiii", 2051, n, 28, 28)
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.astype(np.uint8).tobytes())
    header = struct.pack(">ii", 2049, n)
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(header + labels.astype(np.uint8).tobytes())


def fake_mnist(root: Path, folder: str, n_train: int = 40, n_test: int = 10) -> np.ndarray:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    write_idx(root / folder / "raw", "train", images, np.arange(n_train) % 10)
    test = rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8)
    write_idx(root / folder / "raw", "t10k", test, np.arange(n_test) % 10)
    return images


def fake_cifar(root: Path, per_batch: int = 4, n_test: int = 6) -> np.ndarray:
    """Five training pickles, a test pickle and batches.meta; data rows are R, G, B planes."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(5 * per_batch + n_test, 3072), dtype=np.uint8)
    labels = [i % 10 for i in range(len(pixels))]
    for b in range(5):
        rows = slice(b * per_batch, (b + 1) * per_batch)
        batch = {"data": pixels[rows], "labels": labels[rows], "batch_label": f"batch {b + 1}"}
        (folder / f"data_batch_{b + 1}").write_bytes(pickle.dumps(batch))
    test = {"data": pixels[5 * per_batch :], "labels": labels[5 * per_batch :]}
    (folder / "test_batch").write_bytes(pickle.dumps(test))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": CIFAR_NAMES}))
    return pixels


@pytest.fixture
def cifar_checksums_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision MD5-checks every CIFAR file; its own tests patch the check the same way."""
    monkeypatch.setattr(datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)


def trimap(width: int = 16, height: int = 12) -> np.ndarray:
    """Left half background (2), right half pet (1), a border column (3) between them."""
    t = np.full((height, width), 2, dtype=np.uint8)
    t[:, width // 2 :] = 1
    t[:, width // 2 - 1] = 3
    return t


def fake_pets(root: Path, n_trainval: int = 5, n_test: int = 2) -> None:
    base = root / "oxford-iiit-pet"
    for sub in ("images", "annotations/trimaps"):
        (base / sub).mkdir(parents=True)
    lines: dict[str, list[str]] = {"trainval": [], "test": []}
    for prefix, class_id, species in PET_BREEDS:
        for k in range(1, n_trainval + n_test + 1):
            image_id = f"{prefix}_{k}"
            split = "trainval" if k <= n_trainval else "test"
            lines[split].append(f"{image_id} {class_id} {species} {k}")
            Image.new("RGB", (16, 12), (40 * class_id, 90, 20 * k)).save(
                base / "images" / f"{image_id}.jpg"
            )
            Image.fromarray(trimap(), "L").save(
                base / "annotations" / "trimaps" / f"{image_id}.png"
            )
    for split, rows in lines.items():
        (base / "annotations" / f"{split}.txt").write_text("\n".join(rows) + "\n")


def fake_imagenette(root: Path, folder: str = "imagenette2-160") -> list[str]:
    wnids = sorted(datasets.Imagenette._WNID_TO_CLASS)
    for split, count in (("train", 2), ("val", 1)):
        for c, wnid in enumerate(wnids):
            (root / folder / split / wnid).mkdir(parents=True)
            for k in range(count):
                img = Image.new("RGB", (20, 16), (20 * c, 10 * k, 100))
                img.save(root / folder / split / wnid / f"{wnid}_{k}.JPEG")
    return wnids


@pytest.mark.parametrize(
    "name,folder,classes",
    [("mnist", "MNIST", DIGIT_CLASSES), ("fashionmnist", "FashionMNIST", None)],
)
def test_mnist_like_from_idx_files(
    tmp_path: Path, name: str, folder: str, classes: list[str] | None
) -> None:
    images = fake_mnist(tmp_path, folder)
    splits = build_splits(name, root=tmp_path, seed=0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (36, 4, 10)
    assert splits.classes == (classes or datasets.FashionMNIST.classes)
    assert (splits.task, splits.channels, splits.size) == ("classification", 1, (28, 28))
    img, label = splits.train[0]
    assert img.mode == "L" and img.size == (28, 28) and type(label) is int
    assert np.array_equal(np.asarray(img), images[splits.train.indices[0]])
    val_labels = sorted(splits.val[i][1] for i in range(len(splits.val)))
    assert len(set(val_labels)) == 4  # stratified: four different classes of ten
    kept = images[splits.train.indices] / 255.0
    assert splits.mean == (round(kept.mean(), 4),)
    assert not set(splits.val.indices) & set(splits.train.indices)


def test_validation_slice_is_seeded(tmp_path: Path) -> None:
    fake_mnist(tmp_path, "MNIST")
    a, b = (build_splits("mnist", root=tmp_path, seed=s) for s in (0, 0))
    c = build_splits("mnist", root=tmp_path, seed=5, val_fraction=0.25)
    assert a.val.indices == b.val.indices
    assert c.val.indices != a.val.indices and len(c.val) == 10


def test_cifar10_from_pickled_batches(tmp_path: Path, cifar_checksums_pass: None) -> None:
    pixels = fake_cifar(tmp_path)
    splits = build_splits("cifar10", root=tmp_path, seed=0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 2, 6)
    assert splits.classes == CIFAR_NAMES and splits.size == (32, 32) and splits.channels == 3
    img, label = splits.test[1]
    assert img.mode == "RGB" and img.size == (32, 32) and label == 21 % 10
    planes = pixels[21].reshape(3, 32, 32).transpose(1, 2, 0)
    assert np.array_equal(np.asarray(img), planes)
    assert len(splits.mean) == 3 and all(0.4 < m < 0.6 for m in splits.mean)


def test_cifar10_with_bad_checksums_says_the_files_are_corrupted(tmp_path: Path) -> None:
    fake_cifar(tmp_path)
    with pytest.raises(ValueError, match=r"corrupted.*download: true"):
        build_splits("cifar10", root=tmp_path)


def test_oxford_pets_breeds(tmp_path: Path) -> None:
    fake_pets(tmp_path)
    splits = build_splits("oxford_pets", root=tmp_path, seed=0)
    assert splits.classes == PET_NAMES and splits.task == "classification"
    assert (len(splits.train), len(splits.val), len(splits.test)) == (13, 2, 6)
    img, label = splits.test[0]
    assert img.mode == "RGB" and img.size == (16, 12) and label == 0
    assert {splits.train[i][1] for i in range(len(splits.train))} == {0, 1, 2}
    assert (splits.mean, splits.std) == imagenet_stats() and splits.size is None


@pytest.mark.parametrize("border,value", [("pet", 1), ("ignore", IGNORE_INDEX)])
def test_oxford_pets_trimaps_become_class_masks(tmp_path: Path, border: str, value: int) -> None:
    fake_pets(tmp_path)
    splits = build_splits("oxford_pets", root=tmp_path, target="segmentation", border=border)
    assert splits.classes == ["background", "pet"] and splits.task == "segmentation"
    assert splits.ignore_index == IGNORE_INDEX
    img, mask = splits.val[0]
    assert img.mode == "RGB" and mask.mode == "L" and mask.size == img.size
    expected = np.select([trimap() == 1, trimap() == 2], [1, 0], value)
    assert np.array_equal(np.asarray(mask), expected)


def test_oxford_pets_rejects_unknown_target(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"category.*segmentation"):
        build_splits("oxford_pets", root=tmp_path, target="species")


def test_imagenette_from_wnid_folders(tmp_path: Path) -> None:
    wnids = fake_imagenette(tmp_path)
    splits = build_splits("imagenette", root=tmp_path, seed=0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 2, 10)
    assert len(splits.classes) == 10 and splits.classes[0] == "tench"
    assert splits.classes == [datasets.Imagenette._WNID_TO_CLASS[w][0] for w in wnids]
    img, label = splits.test[3]
    assert img.mode == "RGB" and img.size == (20, 16) and label == 3


def test_imagenette_size_picks_the_folder(tmp_path: Path) -> None:
    fake_imagenette(tmp_path, "imagenette2-320")
    assert len(build_splits("imagenette", root=tmp_path, size="320px").test) == 10
    with pytest.raises(ValueError, match="160px"):
        build_splits("imagenette", root=tmp_path, size="64px")


def test_imagenette_names_unknown_class_folders(tmp_path: Path) -> None:
    fake_imagenette(tmp_path)
    (tmp_path / "imagenette2-160" / "train" / "n99999999").mkdir()
    with pytest.raises(ValueError, match="n99999999"):
        build_splits("imagenette", root=tmp_path)


@pytest.mark.parametrize(
    "name,place",
    [
        ("mnist", "MNIST/raw"),
        ("fashionmnist", "FashionMNIST/raw/t10k-labels-idx1-ubyte"),
        ("cifar10", "cifar-10-batches-py/data_batch_1"),
        ("oxford_pets", "oxford-iiit-pet/annotations/trainval.txt"),
        ("imagenette", "imagenette2-160/train"),
    ],
)
def test_missing_data_names_the_layout_and_the_fixes(tmp_path: Path, name: str, place: str) -> None:
    with pytest.raises(FileNotFoundError) as err:
        build_splits(name, root=tmp_path / "data")
    message = str(err.value)
    assert str(tmp_path / "data" / place) in message
    assert "set download: true (needs internet) or copy the files to" in message.lower()
    assert "Expected layout" in message


def test_partly_copied_mnist_lists_the_missing_files(tmp_path: Path) -> None:
    fake_mnist(tmp_path, "MNIST")
    (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing [^,]*t10k-images-idx3-ubyte\.\n"):
        build_splits("mnist", root=tmp_path)
