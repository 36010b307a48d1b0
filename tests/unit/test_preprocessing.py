"""The one eval preprocessing path and the inverse geometry used for masks and heatmaps."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from model_src import (
    InputSpec,
    build_eval_transform,
    fit_mask,
    placement,
    restore_to_original,
    to_model_mode,
)

GRAY = InputSpec(size=(28, 28), channels=1, mean=(0.5,), std=(0.25,))


def test_transform_normalises_with_the_spec() -> None:
    img = Image.new("L", (28, 28), 255)
    x = build_eval_transform(GRAY)(img)
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    assert torch.allclose(x, torch.full_like(x, (1.0 - 0.5) / 0.25))


def test_transform_accepts_the_spec_as_a_dict() -> None:
    img = Image.new("RGB", (50, 40), (10, 20, 30))
    a = build_eval_transform(GRAY)(img)
    b = build_eval_transform(GRAY.to_dict())(img)
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "mode,value",
    [("L", 200), ("RGB", (200, 200, 200)), ("I;16", 200 * 257), ("CMYK", (0, 0, 0, 55))],
)
def test_modes_convert_to_the_same_gray(mode, value) -> None:
    img = Image.new(mode, (4, 4), value)
    assert np.asarray(to_model_mode(img, 1)).tolist() == [[200] * 4] * 4


def test_alpha_is_composited_over_black() -> None:
    img = Image.new("RGBA", (2, 2), (255, 255, 255, 0))
    assert np.asarray(to_model_mode(img, 3)).max() == 0
    pal = Image.new("P", (2, 2), 1)
    pal.putpalette([0, 0, 0, 255, 255, 255])
    pal.info["transparency"] = 1
    assert np.asarray(to_model_mode(pal, 1)).max() == 0


def test_exif_orientation_is_applied() -> None:
    img = Image.new("L", (30, 10), 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    assert to_model_mode(Image.open(io.BytesIO(buf.getvalue())), 1).size == (10, 30)


@pytest.mark.parametrize("policy", ["stretch", "letterbox", "center_crop"])
@pytest.mark.parametrize("orig", [(100, 50), (50, 100), (64, 64), (31, 17)])
def test_restore_inverts_the_placement(policy, orig) -> None:
    spec = InputSpec(size=(32, 48), channels=1, mean=(0.0,), std=(1.0,), resize=policy)
    p = placement(spec, *orig)
    assert (p.canvas_w, p.canvas_h) == (48, 32)
    model_space = torch.ones(2, 32, 48)
    back = restore_to_original(model_space, p)
    assert back.shape == (2, orig[1], orig[0])
    if policy != "center_crop":
        assert torch.allclose(back, torch.ones_like(back))


def test_letterbox_pads_and_restore_drops_the_padding() -> None:
    spec = InputSpec(size=(20, 20), channels=1, mean=(0.0,), std=(1.0,), resize="letterbox")
    img = Image.new("L", (40, 20), 255)
    x = build_eval_transform(spec)(img)[0]
    assert x[0].max() == 0 and x[10].min() == 1  # padded rows black, image rows white
    p = placement(spec, 40, 20)
    mask = torch.zeros(20, 20)
    mask[5:15] = 1.0  # exactly the image's band
    assert torch.allclose(restore_to_original(mask, p), torch.ones(20, 40))


def test_fit_mask_uses_nearest_neighbour() -> None:
    spec = InputSpec(size=(64, 64), channels=1, mean=(0.0,), std=(1.0,))
    mask = Image.fromarray(np.array([[0, 3], [7, 10]], dtype=np.uint8))
    values = set(np.unique(np.asarray(fit_mask(mask, spec))).tolist())
    assert values == {0, 3, 7, 10}


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"channels": 2}, "channels"),
        ({"mean": (0.1, 0.2)}, "one value per channel"),
        ({"std": (0.0,)}, "std"),
        ({"resize": "squash"}, "resize policy"),
        ({"size": (0, 4)}, "size"),
    ],
)
def test_invalid_specs_fail_early(kwargs, match) -> None:
    fields = {"size": (8, 8), "channels": 1, "mean": (0.0,), "std": (1.0,)} | kwargs
    with pytest.raises(ValueError, match=match):
        InputSpec(**fields)
