"""Reading class-index masks from PNG files without corrupting the indices.

A palette PNG stores indices, and `convert("L")` would turn them into grey levels; a 16-bit
PNG can hold values above 255; an RGB "mask" is usually a colour rendering, not indices. Each
case is handled or refused here, once, so a wrong mask fails loudly instead of training on
garbage labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def read_index_mask(path: str | Path) -> np.ndarray:
    """The class indices of a mask file as a uint8 `(H, W)` array.

    Raises:
        ValueError: a colour mask (channels differ) or values above 255.
    """
    with Image.open(path) as img:
        return index_array(img, str(path))


def index_array(img: Image.Image, where: str) -> np.ndarray:
    """The class indices of a decoded mask image as a uint8 `(H, W)` array.

    `where` names the mask in errors (a file, or a dataset row).

    Raises:
        ValueError: a colour mask (channels differ) or values above 255.
    """
    mode = img.mode
    arr = np.asarray(img)
    if mode in ("RGB", "RGBA", "LA", "PA"):
        colours = arr[..., :3] if mode.startswith("RGB") else arr[..., :1]
        if (colours != colours[..., :1]).any():
            raise ValueError(
                f"{where} is a colour image, not a class-index mask: save masks as 8-bit "
                "grayscale or palette PNGs whose pixel values are the class indices"
            )
        arr = colours[..., 0]
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if arr.size and int(arr.max()) > 255:
        raise ValueError(f"{where} holds mask values up to {int(arr.max())}; at most 255 allowed")
    return arr.astype(np.uint8, copy=False)


def mask_image(indices: np.ndarray) -> Image.Image:
    """A uint8 index array as the mode "L" mask the datasets return."""
    return Image.fromarray(np.ascontiguousarray(indices, dtype=np.uint8), "L")
