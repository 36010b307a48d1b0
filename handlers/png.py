"""Pictures in responses: class masks, heatmaps and overlays as base64 PNG.

PNG because it is lossless (a mask pixel must stay a class index), small for masks and maps,
and viewable by anyone; base64 because responses are JSON (docs/api.md). Raw float arrays would
exceed TorchServe's 6.5 MB response limit for ordinary photos.
"""

from __future__ import annotations

import base64
import colorsys
import io

import numpy as np
from PIL import Image

# Anchors of a perceptually ordered dark-to-bright map (close to matplotlib's "inferno"), so
# a heatmap reads the same in colour and in grayscale. Written out to keep matplotlib out of
# the TorchServe worker.
_HEAT_ANCHORS = np.array(
    [(0, 0, 4), (87, 16, 110), (188, 55, 84), (249, 142, 9), (252, 255, 164)], dtype=np.float64
)
HEAT_OVERLAY_ALPHA = 0.65
MASK_OVERLAY_ALPHA = 0.5
#: Modes Pillow writes to PNG without loss (see `png_bytes` for the others).
PNG_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I;16"})


def png_bytes(image: Image.Image, compress_level: int = 6) -> bytes:
    """Lossless PNG of any decoded image, keeping its mode when PNG can hold it.

    32-bit integer and float images (from 16-bit inputs that were scaled) go back to 16-bit;
    CMYK, YCbCr and the like become RGB (RGBA when they carry alpha). `compress_level` 1 is
    for PNGs that only travel inside the server (the pipeline's cut-outs): faster, larger.
    """
    if image.mode in ("I", "F"):
        values = np.clip(np.asarray(image), 0, 65535).astype(np.uint16)
        image = Image.fromarray(values)  # mode I;16
    elif image.mode not in PNG_MODES:
        image = image.convert("RGBA" if image.mode.endswith(("A", "a")) else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def png_base64(image: Image.Image) -> str:
    """Encode `image` as PNG, base64 text (ASCII) for a JSON field."""
    return base64.b64encode(png_bytes(image)).decode("ascii")


def class_palette(num_classes: int) -> np.ndarray:
    """`num_classes x 3` uint8 colours: class 0 (background) black, the rest distinct hues.

    Golden-ratio hue steps keep neighbouring class indices far apart in colour.
    """
    colours = np.zeros((num_classes, 3), dtype=np.uint8)
    for index in range(1, num_classes):
        hue = ((index - 1) * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
        colours[index] = (round(r * 255), round(g * 255), round(b * 255))
    return colours


def mask_image(labels: np.ndarray, num_classes: int) -> Image.Image:
    """A `H x W` class-index array -> mode `P` image: pixel value = class index, with a
    palette so the mask is also viewable. Reading it back (`np.asarray(Image.open(f))`)
    gives the class indices."""
    if num_classes > 256:
        raise ValueError(f"a PNG mask holds at most 256 classes, got {num_classes}")
    plane = np.ascontiguousarray(labels, dtype=np.uint8)
    image = Image.frombytes("P", (plane.shape[1], plane.shape[0]), plane.tobytes())
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[:num_classes] = class_palette(num_classes)
    image.putpalette(palette.ravel().tolist())
    return image


def heatmap_image(heat: np.ndarray) -> Image.Image:
    """A `H x W` map in [0, 1] -> mode `L` (0 = no evidence, 255 = strongest)."""
    return Image.fromarray(_to_uint8(heat))


def colorize(heat: np.ndarray) -> np.ndarray:
    """A `H x W` map in [0, 1] -> `H x W x 3` uint8 colours (dark = low, bright = high)."""
    positions = np.linspace(0.0, 1.0, len(_HEAT_ANCHORS))
    flat = np.clip(heat, 0.0, 1.0).ravel()
    channels = [np.interp(flat, positions, _HEAT_ANCHORS[:, c]) for c in range(3)]
    return np.stack(channels, axis=-1).reshape(*heat.shape, 3).round().astype(np.uint8)


def heat_overlay(base: Image.Image, heat: np.ndarray) -> Image.Image:
    """The coloured heatmap over `base` (RGB, same size), opaque where evidence is strong.

    The blend weight follows the heat, so regions without evidence show the input unchanged.
    """
    rgb = np.asarray(base.convert("RGB"), dtype=np.float32)
    alpha = (HEAT_OVERLAY_ALPHA * np.clip(heat, 0.0, 1.0))[..., None].astype(np.float32)
    out = rgb * (1.0 - alpha) + colorize(heat).astype(np.float32) * alpha
    return Image.fromarray(out.round().clip(0, 255).astype(np.uint8))


def mask_overlay(base: Image.Image, labels: np.ndarray, num_classes: int) -> Image.Image:
    """Class colours blended over `base` (RGB, same size) on non-background pixels."""
    rgb = np.asarray(base.convert("RGB"), dtype=np.float32)
    colours = class_palette(num_classes).astype(np.float32)[labels]
    foreground = (labels > 0)[..., None]
    blended = rgb * (1.0 - MASK_OVERLAY_ALPHA) + colours * MASK_OVERLAY_ALPHA
    out = np.where(foreground, blended, rgb)
    return Image.fromarray(out.round().clip(0, 255).astype(np.uint8))


def _to_uint8(heat: np.ndarray) -> np.ndarray:
    return (np.clip(heat, 0.0, 1.0) * 255.0).round().astype(np.uint8)
