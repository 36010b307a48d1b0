"""A few validation predictions as pictures, for TensorBoard and W&B, drawn every epoch.

Numbers say how good a model is; pictures say how it fails (a segmenter that finds the
objects but bleeds over their edges, a classifier that confuses 4 and 9). The same fixed
validation items are drawn every epoch, so the pictures show the model changing, not the data.

Items are taken from the validation dataset as the model sees them (the eval transform's
output), run through the plain model in eval mode and drawn back in [0, 255] by undoing the
normalisation. Nothing here draws random numbers: logging pictures never changes training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn
from torch.utils.data import Dataset

from handlers.png import class_palette, mask_overlay
from model_src import InputSpec

from .losses import probabilities

#: Pictures are scaled up (nearest) to at least this height: 28-pixel digits are unreadable.
MIN_HEIGHT = 96
IGNORE_GREY = (128, 128, 128)
CORRECT, WRONG = (40, 170, 60), (210, 40, 40)


@dataclass
class Preview:
    """One validation item drawn for people: the input, and for segmenters the true and
    predicted class masks (`(H, W)` arrays, model resolution)."""

    image: Image.Image  # RGB, the input as the model saw it
    caption: str
    truth: np.ndarray | None = None
    prediction: np.ndarray | None = None
    correct: bool | None = None


def preview_indices(dataset: Dataset, count: int) -> list[int]:
    """`count` evenly spaced items (the same every epoch)."""
    n = len(dataset)  # type: ignore[arg-type]
    count = min(count, n)
    return [int(k * n / count) for k in range(count)]


@torch.inference_mode()
def predict_previews(
    model: nn.Module,
    dataset: Dataset,
    indices: list[int],
    spec: InputSpec,
    classes: list[str],
    task: str,
    device: torch.device,
) -> list[Preview]:
    """Run `model` on `dataset[indices]` (eval transform applied) and describe each item."""
    if not indices:
        return []
    items = [dataset[i] for i in indices]
    images = torch.stack([image for image, _ in items])
    was_training = model.training
    model.eval()
    try:
        probs = probabilities(model(images.to(device)).float()).cpu()
    finally:
        model.train(was_training)
    pictures = [to_picture(image, spec) for image in images]
    if task == "segmentation":
        return [
            Preview(picture, f"val item {i}", np.asarray(target), prob.argmax(0).numpy())
            for picture, (_, target), prob, i in zip(pictures, items, probs, indices, strict=True)
        ]
    previews = []
    for picture, (_, target), prob in zip(pictures, items, probs, strict=True):
        label, score = int(prob.argmax()), float(prob.max())
        truth = int(target)
        caption = f"true {classes[truth]} / predicted {classes[label]} ({score:.2f})"
        previews.append(Preview(picture, caption, correct=label == truth))
    return previews


def to_picture(image: torch.Tensor, spec: InputSpec) -> Image.Image:
    """A normalised `(C, H, W)` model input back to an RGB picture."""
    mean = torch.tensor(spec.mean).view(-1, 1, 1)
    std = torch.tensor(spec.std).view(-1, 1, 1)
    pixels = ((image.float() * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)
    array = pixels.permute(1, 2, 0).numpy()
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(array), "RGB")


def overlay(picture: Image.Image, labels: np.ndarray, num_classes: int) -> Image.Image:
    """Class colours over the picture (the served overlay's palette); ignore pixels grey."""
    ignore = labels >= num_classes
    drawn = mask_overlay(picture, np.where(ignore, 0, labels), num_classes)
    if ignore.any():
        out = np.asarray(drawn).copy()
        out[ignore] = IGNORE_GREY
        drawn = Image.fromarray(out)
    return drawn


def preview_grid(previews: list[Preview], classes: list[str]) -> np.ndarray:
    """One `(H, W, 3)` uint8 picture of all previews.

    Segmenters: one row per item, input | truth over input | prediction over input.
    Classifiers: the inputs side by side, each above its caption (green right, red wrong).
    """
    if previews[0].prediction is not None:
        rows = [
            _hstack(
                [
                    _scaled(p.image),
                    _scaled(overlay(p.image, p.truth, len(classes))),
                    _scaled(overlay(p.image, p.prediction, len(classes))),
                ]
            )
            for p in previews
        ]
        return np.asarray(_vstack(rows))
    tiles = [_captioned(_scaled(p.image), p) for p in previews]
    return np.asarray(_hstack(tiles))


def legend(classes: list[str]) -> str:
    """Markdown naming each class's overlay colour (TensorBoard text, W&B notes)."""
    colours = class_palette(len(classes))
    return "\n".join(
        f"- {name}: rgb{tuple(int(c) for c in colours[k])}" + (" (not drawn)" if k == 0 else "")
        for k, name in enumerate(classes)
    )


def _scaled(image: Image.Image) -> Image.Image:
    factor = max(1, -(-MIN_HEIGHT // image.height))
    if factor == 1:
        return image
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)


def _captioned(image: Image.Image, preview: Preview) -> Image.Image:
    strip = 14
    tile = Image.new("RGB", (max(image.width, 6 * len(preview.caption)), image.height + strip))
    tile.paste(image, (0, 0))
    ImageDraw.Draw(tile).text(
        (2, image.height + 1), preview.caption, fill=CORRECT if preview.correct else WRONG
    )
    return tile


def _hstack(images: list[Image.Image], gap: int = 4) -> Image.Image:
    width = sum(i.width for i in images) + gap * (len(images) - 1)
    out = Image.new("RGB", (width, max(i.height for i in images)), (255, 255, 255))
    x = 0
    for image in images:
        out.paste(image, (x, 0))
        x += image.width + gap
    return out


def _vstack(images: list[Image.Image], gap: int = 4) -> Image.Image:
    height = sum(i.height for i in images) + gap * (len(images) - 1)
    out = Image.new("RGB", (max(i.width for i in images), height), (255, 255, 255))
    y = 0
    for image in images:
        out.paste(image, (0, y))
        y += image.height + gap
    return out
