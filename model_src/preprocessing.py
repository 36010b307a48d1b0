"""Eval-time preprocessing, defined once for training evaluation, handlers, client and benches.

A model card's `input` block is an `InputSpec`; `build_eval_transform(spec)` turns any PIL
image (any mode, any size, any EXIF orientation) into the normalised `C x H x W` float tensor
the model was evaluated on. The geometry of that step is a `Placement`, and
`restore_to_original` inverts it so masks and heatmaps come back at the input's own size.

Resize policies:
- `stretch`: resize to exactly `size` (aspect ratio not kept). Right for data that was made
  at that size (MNIST, digit scenes).
- `letterbox`: keep the aspect ratio, fit inside `size`, pad with black, centred.
- `center_crop`: keep the aspect ratio, cover `size`, crop the centre (ImageNet-style).

Segmenters are fully convolutional and are served at the image's own SCALE instead
(`handlers/segmenter.py`): `object_size` says how large the objects were in training, the
input is resized by `scale` (`scaled_placement`, `EvalTransform.at_scale`) so its objects
come out that large, and the model runs over it in tiles.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

RESIZE_POLICIES = ("stretch", "letterbox", "center_crop")


@dataclass(frozen=True)
class InputSpec:
    """What the model expects: size `(height, width)`, channels (1 or 3), mean/std, policy."""

    size: tuple[int, int]
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: str = "stretch"
    object_size: tuple[float, float] | None = None
    """Segmenters: the range of object sizes in the training inputs, in pixels (the longer
    side of an object's box, 5th to 95th percentile); None on cards written before it
    existed (the handler then assumes `DEFAULT_OBJECT_FRACTION` of the input's side)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", tuple(int(s) for s in self.size))
        if self.object_size is not None:
            pair = tuple(float(v) for v in self.object_size)
            if len(pair) != 2 or not 0 < pair[0] <= pair[1]:
                raise ValueError(
                    f"object_size must be [low, high] pixels with 0 < low <= high, "
                    f"got {self.object_size}"
                )
            object.__setattr__(self, "object_size", pair)
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if len(self.size) != 2 or min(self.size) < 1:
            raise ValueError(f"input size must be (height, width) > 0, got {self.size}")
        if self.channels not in (1, 3):
            raise ValueError(f"input channels must be 1 or 3, got {self.channels}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(
                f"mean and std need one value per channel ({self.channels}), "
                f"got mean={self.mean} std={self.std}"
            )
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std values must be > 0, got {self.std}")
        if self.resize not in RESIZE_POLICIES:
            raise ValueError(
                f"unknown resize policy {self.resize!r}; choose one of {', '.join(RESIZE_POLICIES)}"
            )

    @property
    def height(self) -> int:
        return self.size[0]

    @property
    def width(self) -> int:
        return self.size[1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able; `object_size` only when known, so older cards read back unchanged."""
        d = asdict(self)
        if d["object_size"] is None:
            del d["object_size"]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        unknown = set(d) - {"size", "channels", "mean", "std", "resize", "object_size"}
        if unknown:
            raise ValueError(f"unknown input spec keys: {sorted(unknown)}")
        return cls(**d)


@dataclass(frozen=True)
class Placement:
    """Where an original image lands on the model's canvas.

    The original (`orig_w x orig_h`) is resized to `scaled_w x scaled_h` and its top-left
    corner placed at (`offset_x`, `offset_y`) on a `canvas_w x canvas_h` canvas; a negative
    offset means that side is cropped.
    """

    orig_w: int
    orig_h: int
    scaled_w: int
    scaled_h: int
    offset_x: int
    offset_y: int
    canvas_w: int
    canvas_h: int


def placement(spec: InputSpec, width: int, height: int) -> Placement:
    """The geometry `spec`'s resize policy applies to an image of `width x height`."""
    cw, ch = spec.width, spec.height
    if spec.resize == "stretch":
        sw, sh = cw, ch
    else:
        pick = min if spec.resize == "letterbox" else max
        scale = pick(cw / width, ch / height)
        sw, sh = max(1, round(width * scale)), max(1, round(height * scale))
        if spec.resize == "center_crop":
            sw, sh = max(sw, cw), max(sh, ch)
    return Placement(width, height, sw, sh, (cw - sw) // 2, (ch - sh) // 2, cw, ch)


def scaled_placement(width: int, height: int, scale: float) -> Placement:
    """The geometry of resizing a `width x height` image by `scale` (no canvas, no padding)."""
    sw, sh = max(1, round(width * scale)), max(1, round(height * scale))
    return Placement(width, height, sw, sh, 0, 0, sw, sh)


def to_model_mode(img: Image.Image, channels: int) -> Image.Image:
    """Any decoded PIL image -> mode `L` (1 channel) or `RGB` (3), upright.

    Handles EXIF orientation, 16-bit and 32-bit integer or float grayscale (scaled, not
    clipped), palette and alpha (composited over black, the canvas colour of MNIST-like
    data and of letterbox padding), CMYK, and two-channel LA.
    """
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        if img.mode == "F" and arr.max() <= 1.0:
            top = 1.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, rgba)
    target = "L" if channels == 1 else "RGB"
    return img if img.mode == target else img.convert(target)


def fit_to_canvas(
    img: Image.Image,
    spec: InputSpec,
    resample: Image.Resampling = Image.Resampling.BILINEAR,
    fill: int | tuple[int, ...] = 0,
) -> Image.Image:
    """Resize and place `img` on the model canvas as `spec` says (also used for masks)."""
    p = placement(spec, *img.size)
    resized = img.resize((p.scaled_w, p.scaled_h), resample)
    if (p.scaled_w, p.scaled_h) == (p.canvas_w, p.canvas_h):
        return resized
    canvas = Image.new(img.mode, (p.canvas_w, p.canvas_h), fill)
    canvas.paste(resized, (p.offset_x, p.offset_y))
    return canvas


def fit_mask(mask: Image.Image, spec: InputSpec, fill: int = 0) -> Image.Image:
    """A class-index mask through the same geometry as its image (nearest, never blended)."""
    return fit_to_canvas(mask, spec, Image.Resampling.NEAREST, fill)


def normalize(tensor: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """`(x - mean) / std` per channel on a float `C x H x W` tensor in [0, 1]."""
    mean = torch.tensor(spec.mean, dtype=tensor.dtype).view(-1, 1, 1)
    std = torch.tensor(spec.std, dtype=tensor.dtype).view(-1, 1, 1)
    return (tensor - mean) / std


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """An `L` or `RGB` PIL image -> float `C x H x W` in [0, 1]."""
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


class EvalTransform:
    """PIL image -> normalised model input; a class (not a closure) so DataLoader workers can
    pickle it."""

    def __init__(self, spec: InputSpec) -> None:
        self.spec = spec

    def __call__(self, img: Image.Image) -> torch.Tensor:
        img = fit_to_canvas(to_model_mode(img, self.spec.channels), self.spec)
        return normalize(pil_to_tensor(img), self.spec)

    def at_scale(self, img: Image.Image, scale: float) -> tuple[torch.Tensor, Placement]:
        """`img` (already in model mode, upright) resized by `scale`, normalised, and where it
        lands: the whole image, its own aspect ratio, no canvas (for fully convolutional
        models served in tiles). Scale 1 leaves the pixels untouched."""
        where = scaled_placement(*img.size, scale)
        if (where.scaled_w, where.scaled_h) != img.size:
            img = img.resize((where.scaled_w, where.scaled_h), Image.Resampling.BILINEAR)
        return normalize(pil_to_tensor(img), self.spec), where

    def __repr__(self) -> str:
        return f"EvalTransform({self.spec})"


def build_eval_transform(spec: InputSpec | dict[str, Any]) -> EvalTransform:
    """The one eval transform factory: training evaluation and every handler call this."""
    return EvalTransform(spec if isinstance(spec, InputSpec) else InputSpec.from_dict(spec))


def restore_to_original(
    maps: torch.Tensor, p: Placement, mode: str = "bilinear", fill: float = 0.0
) -> torch.Tensor:
    """Invert `placement`: `(..., canvas_h, canvas_w)` model-space maps -> `(..., orig_h, orig_w)`.

    Use it on logits or probabilities (then argmax), not on an argmax mask: resizing a
    low-resolution label map with nearest neighbour gives blocky, shifted edges. Parts of the
    original that a center crop cut away get `fill`.
    """
    if not 2 <= maps.dim() <= 4:
        raise ValueError(f"maps must be (H, W), (C, H, W) or (N, C, H, W), got {tuple(maps.shape)}")
    added = 4 - maps.dim()
    flat = maps.reshape((1,) * added + tuple(maps.shape))
    scaled = flat.new_full((*flat.shape[:2], p.scaled_h, p.scaled_w), fill)
    # Overlap of the scaled image and the canvas, in both coordinate systems.
    x0, y0 = max(0, p.offset_x), max(0, p.offset_y)
    x1, y1 = min(p.canvas_w, p.offset_x + p.scaled_w), min(p.canvas_h, p.offset_y + p.scaled_h)
    scaled[..., y0 - p.offset_y : y1 - p.offset_y, x0 - p.offset_x : x1 - p.offset_x] = flat[
        ..., y0:y1, x0:x1
    ]
    kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    out = F.interpolate(scaled, size=(p.orig_h, p.orig_w), mode=mode, **kwargs)
    return out.reshape(*maps.shape[:-2], p.orig_h, p.orig_w)
