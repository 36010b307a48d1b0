"""tools.validation without a server: accuracy, Dice from masks, labelled folders, and the
held-out split a model card names."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tools.validation import (
    IGNORE_INDEX,
    NoHeldOutSplit,
    accuracy,
    decode_mask,
    dice_scores,
    folder_validation_set,
    held_out_validation_set,
    split_validation_set,
)


def test_accuracy() -> None:
    assert accuracy(["1", "2", "3", "4"], ["1", "2", "0", "4"]) == 0.75
    with pytest.raises(ValueError, match="predictions for"):
        accuracy(["1"], ["1", "2"])
    with pytest.raises(ValueError, match="empty"):
        accuracy([], [])


def test_dice_by_hand() -> None:
    # class 1: truth 4 px, prediction 2 of them + 2 elsewhere -> 2*2 / (4+4) = 0.5
    # class 2: perfect -> 1.0; mean over non-background classes = 0.75
    truth = np.zeros((4, 4), np.uint8)
    truth[0, :4] = 1
    truth[3, :2] = 2
    pred = np.zeros((4, 4), np.uint8)
    pred[0, :2] = 1
    pred[1, :2] = 1
    pred[3, :2] = 2
    scores = dice_scores([pred], [truth], num_classes=3)
    assert scores["mean_dice"] == pytest.approx(0.75)


def test_dice_pools_pixels_over_images_and_skips_ignored_and_absent_classes() -> None:
    a = np.array([[1, 1], [0, 0]], np.uint8)
    b = np.array([[0, 0], [0, IGNORE_INDEX]], np.uint8)
    pred_b = np.array([[0, 0], [0, 1]], np.uint8)  # the one wrong pixel is ignored
    scores = dice_scores([a, pred_b], [a, b], num_classes=5)  # classes 2..4 absent: skipped
    assert scores["mean_dice"] == pytest.approx(1.0)


def test_dice_of_empty_scenes_predicted_empty_is_perfect() -> None:
    empty = np.zeros((3, 3), np.uint8)
    assert dice_scores([empty], [empty], num_classes=3)["mean_dice"] == 1.0


def test_dice_rejects_masks_of_another_size() -> None:
    with pytest.raises(ValueError, match="upright"):
        dice_scores([np.zeros((2, 3), np.uint8)], [np.zeros((3, 2), np.uint8)], 3)


@pytest.mark.parametrize("mode", ["L", "P"])
def test_decode_mask_reads_class_indices(mode: str) -> None:
    indices = np.array([[0, 3], [10, 1]], np.uint8)
    image = Image.fromarray(indices, "L")
    if mode == "P":
        image = image.convert("P")
        image.putdata(indices.reshape(-1).tolist())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    assert (decode_mask(base64.b64encode(buffer.getvalue()).decode()) == indices).all()


def _png(path: Path, value: int, size: tuple[int, int] = (8, 6)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, value).save(path)


def test_image_folder_sends_the_files_and_samples_every_class(tmp_path: Path) -> None:
    for label in ("cat", "dog"):
        for i in range(6):
            _png(tmp_path / label / f"{i}.png", 10 * i)
    vset = folder_validation_set(tmp_path, "classification", limit=6)
    assert vset.task == "classification" and vset.classes == ["cat", "dog"]
    assert len(vset) == 6 and {s.target for s in vset.samples} == {"cat", "dog"}
    first = vset.samples[0]
    assert first.data == Path(first.name).read_bytes()  # the file itself, not re-encoded
    assert folder_validation_set(tmp_path, "classification", limit=6).samples == vset.samples


def test_paired_folders_read_masks_as_class_indices(tmp_path: Path) -> None:
    for i in range(3):
        _png(tmp_path / "images" / f"s{i}.png", 100)
        _png(tmp_path / "masks" / f"s{i}.png", i)
    vset = folder_validation_set(tmp_path, "segmentation")
    assert len(vset) == 3
    assert sorted(int(s.target.max()) for s in vset.samples) == [0, 1, 2]
    assert vset.samples[0].target.shape == (6, 8)


def test_bad_folders_say_what_layout_is_expected(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        folder_validation_set(tmp_path / "missing", "classification")
    with pytest.raises(ValueError, match="images/ and masks/"):
        folder_validation_set(tmp_path, "segmentation")
    with pytest.raises(ValueError, match="task"):
        folder_validation_set(tmp_path, "detection")


# ---- the held-out split a model card names -----------------------------------------------


def card(seed: int | None = 0, name: str = "digits", **options) -> dict:
    dataset = {"name": name, "options": options, "source": "x"}
    if seed is not None:
        dataset["seed"] = seed
    return {"task": "classification", "dataset": dataset}


def test_the_gate_rebuilds_the_split_the_cards_name() -> None:
    vset = held_out_validation_set(card(0), card(0), limit=20)
    assert vset.source == "digits test split (seed 0)" and len(vset) == 20
    assert vset.samples == split_validation_set("digits", limit=20, seed=0).samples
    other = held_out_validation_set(card(3), card(3), limit=20)
    assert other.source == "digits test split (seed 3)"
    assert [s.data for s in other.samples] != [s.data for s in vset.samples]  # another split


@pytest.mark.parametrize(
    ("candidate", "default", "words"),
    [
        ({"task": "classification"}, card(0), "candidate's model card does not record"),
        (card(None), card(0), "candidate's model card does not record"),
        (card(0), {"task": "classification"}, "default version's model card does not record"),
        (card(1), card(0), "no test split is held out from both"),
        (card(0, keep_fraction=0.5), card(0), "no test split is held out from both"),
        (card(0, "no_such_dataset"), card(0, "no_such_dataset"), "cannot rebuild"),
    ],
)
def test_the_gate_refuses_when_no_unseen_split_can_be_rebuilt(candidate, default, words) -> None:
    with pytest.raises(NoHeldOutSplit, match=words) as info:
        held_out_validation_set(candidate, default)
    assert "--validation DIR" in str(info.value)


def test_only_held_out_splits_are_used() -> None:
    with pytest.raises(ValueError, match="held out from training"):
        split_validation_set("digits", split="train")
