"""The request layer alone: every input form, every image format, limits and options."""

from __future__ import annotations

import io
import json
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image
from test_handlers_support import b64, encode, gray_image, rgb_image

from handlers.request import (
    DEFAULT_MAX_PIXELS,
    ImageRequest,
    Limits,
    RequestError,
    UpstreamError,
    bool_option,
    choice_option,
    decode_image,
    float_option,
    int_option,
    parse_options,
    parse_request,
)

OPTIONS = {
    "topk": int_option(5, 1, 10),
    "overlay": bool_option(False),
    "threshold": float_option(0.5, 0.0, 1.0),
    "method": choice_option("saliency", ("saliency", "gradcam")),
}
LIMITS = Limits()


def parse(row, options=OPTIONS, limits=LIMITS):
    return parse_request(row, options, limits)


def rejects(status: int, *fragments: str, **kwargs):
    """Assert parse(...) raises RequestError(status) whose message holds every fragment."""

    def check(row):
        with pytest.raises(RequestError) as info:
            parse(row, **kwargs)
        assert info.value.status == status, info.value.message
        for fragment in fragments:
            assert fragment in info.value.message
        return info.value

    return check


def png_header(width: int, height: int) -> bytes:
    """A valid PNG header announcing width x height with (almost) no pixel data: a bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


# ---- input forms --------------------------------------------------------------------------


def test_raw_body_bytes_and_bytearray():
    png = encode(gray_image(20, 30))
    for body in (png, bytearray(png)):
        request = parse({"body": body})
        assert isinstance(request, ImageRequest) and not request.several
        assert [im.size for im in request.images] == [(20, 30)]
        assert request.options == {
            "topk": 5,
            "overlay": False,
            "threshold": 0.5,
            "method": "saliency",
        }


def test_multipart_file_with_option_fields_as_bytes():
    request = parse({"data": encode(gray_image()), "topk": b"3", "overlay": b"true"})
    assert request.options["topk"] == 3 and request.options["overlay"] is True


def test_json_dict_body_decoded_by_torchserve():
    body = {"image": b64(encode(rgb_image())), "topk": 2, "threshold": 0.25}
    request = parse({"body": body})
    assert request.images[0].size == (24, 16)
    assert request.options["topk"] == 2 and request.options["threshold"] == 0.25


@pytest.mark.parametrize("key", ["body", "data"])
def test_json_that_arrives_as_bytes_between_workflow_nodes(key):
    payload = b"  \n" + json.dumps({"image": b64(encode(gray_image())), "topk": "4"}).encode()
    request = parse({key: payload})
    assert request.options["topk"] == 4 and len(request.images) == 1


def test_json_that_arrives_as_text():
    request = parse({"body": json.dumps({"image": b64(encode(gray_image()))})})
    assert len(request.images) == 1
    rejects(400, "arrived as text")({"body": "hello"})


def test_images_list_and_empty_list():
    images = [gray_image(8, 8, seed=i) for i in range(3)]
    request = parse({"body": {"images": [b64(encode(im)) for im in images], "topk": 1}})
    assert request.several and len(request.images) == 3 and request.options["topk"] == 1
    assert np.array_equal(np.asarray(request.images[2]), np.asarray(images[2]))
    empty = parse({"body": json.dumps({"images": []}).encode()})
    assert empty.several and empty.images == []


def test_base64_variants_data_url_urlsafe_and_wrapped():
    raw = encode(rgb_image(31, 17))
    text = b64(raw)
    wrapped = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    urlsafe = text.replace("+", "-").replace("/", "_").rstrip("=")
    for value in ("data:image/png;base64," + text, wrapped, urlsafe):
        assert parse({"body": {"image": value}}).images[0].size == (31, 17)


def test_upstream_error_object_is_passed_through_unchanged():
    error = {
        "error": {"status": 400, "type": "InvalidInput", "message": "image could not be decoded: x"}
    }
    for row in ({"body": error}, {"body": json.dumps(error).encode()}):
        result = parse(row)
        assert isinstance(result, UpstreamError) and result.body == error
    # Not exactly {"error": {...}}: a normal request, and "error" is then an unknown option.
    rejects(422, "unknown option 'error'")({"body": {**error, "image": b64(encode(gray_image()))}})


def test_form_urlencoded_upload_says_how_to_send():
    # What TorchServe makes of `curl --data-binary @x.png URL` (form-urlencoded): text keys.
    err = rejects(400, "curl -T", "Content-Type: image/png", "form")(
        {"\x89PNG\r\n": "", "IHDR": ""}
    )
    assert err.to_body() == {
        "error": {"status": 400, "type": "InvalidInput", "message": err.message}
    }


@pytest.mark.parametrize(
    ("row", "fragment"),
    [
        ({}, "no body"),
        (None, "no body"),
        ({"body": b""}, "empty"),
        ({"body": b"\x00\x01garbage"}, "not a PNG, JPEG, BMP, GIF, TIFF or WebP"),
        ({"body": b"{not json"}, "not valid JSON"),
        ({"body": {"topk": 1}}, '"image"'),
        ({"body": {"image": "x", "images": []}}, "not both"),
        ({"body": {"images": "abc"}}, "must be a list"),
        ({"body": {"images": [3]}}, "images[0] must be a base64 string"),
        ({"body": {"image": "@@@@"}}, "not valid base64"),
        ({"body": {"images": [b64(b"junk")]}}, "images[0] could not be decoded"),
        ({"body": [1, 2]}, "holds a JSON list"),
    ],
)
def test_unreadable_requests_are_400(row, fragment):
    rejects(400, fragment)(row)


# ---- formats ------------------------------------------------------------------------------


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    return encode(rgb_image(40, 20), "JPEG", exif=exif.tobytes())


def animated_gif() -> bytes:
    first, second = Image.new("L", (12, 10), 200), Image.new("L", (12, 10), 20)
    return encode(first, "GIF", save_all=True, append_images=[second], duration=50)


def multipage_tiff() -> bytes:
    return encode(gray_image(10, 6), "TIFF", save_all=True, append_images=[gray_image(5, 5)])


def palette_with_transparency() -> bytes:
    image = rgb_image(16, 12).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    return encode(image, "PNG", transparency=0)


def phone_mpo() -> bytes:
    """A multi-picture JPEG, as phones write: opened through Pillow's JPEG reader."""
    return encode(rgb_image(20, 10), "MPO", save_all=True, append_images=[rgb_image(20, 10, 1)])


FORMATS = {
    "png": (lambda: encode(gray_image(20, 30)), (20, 30), "L"),
    "jpeg": (lambda: encode(rgb_image(24, 16), "JPEG", quality=95), (24, 16), "RGB"),
    "bmp": (lambda: encode(rgb_image(24, 16), "BMP"), (24, 16), "RGB"),
    "gif": (animated_gif, (12, 10), "P"),
    "tiff": (multipage_tiff, (10, 6), "L"),
    "webp": (lambda: encode(rgb_image(24, 16), "WEBP", lossless=True), (24, 16), "RGB"),
    "png16": (
        lambda: encode(Image.fromarray(np.full((9, 7), 40000, dtype=np.uint16))),
        (7, 9),
        "I;16",
    ),
    "cmyk_jpeg": (
        lambda: encode(Image.new("CMYK", (14, 8), (0, 200, 0, 0)), "JPEG"),
        (14, 8),
        "CMYK",
    ),
    "palette_alpha": (palette_with_transparency, (16, 12), "P"),
    "rgba": (lambda: encode(rgb_image(10, 10).convert("RGBA")), (10, 10), "RGBA"),
    "exif_jpeg": (exif_rotated_jpeg, (40, 20), "RGB"),  # stored size; turned upright later
    "mpo": (phone_mpo, (20, 10), "RGB"),
}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_supported_format_decodes_fully(name):
    make, size, mode = FORMATS[name]
    image = decode_image(make(), LIMITS)
    assert image.size == size and image.mode == mode
    assert image.im is not None  # pixels loaded here, not lazily later


def test_gif_gives_its_first_frame():
    image = decode_image(animated_gif(), LIMITS)
    assert np.asarray(image.convert("L")).mean() == pytest.approx(200, abs=2)


def test_exif_orientation_is_kept_for_the_transform():
    assert decode_image(exif_rotated_jpeg(), LIMITS).getexif().get(0x0112) == 6


def test_other_pillow_formats_are_refused():
    ico = encode(rgb_image(16, 16), "ICO")
    assert Image.open(io.BytesIO(ico)).format == "ICO"  # Pillow itself could read it
    with pytest.raises(RequestError, match="not a PNG, JPEG") as info:
        decode_image(ico, LIMITS)
    assert info.value.status == 400


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP"])
def test_truncated_files_fail_here_with_400(fmt):
    image = rgb_image(64, 64)
    data = encode(image.convert("P") if fmt == "GIF" else image, fmt)
    with pytest.raises(RequestError) as info:
        decode_image(data[: len(data) // 2], LIMITS)
    assert info.value.status == 400
    assert info.value.message.startswith("image could not be decoded: ")


# ---- limits -------------------------------------------------------------------------------


def test_bomb_header_is_413_before_any_pixel_is_allocated():
    bomb = png_header(50_000, 50_000)
    tracemalloc.start()
    try:
        with pytest.raises(RequestError) as info:
            decode_image(bomb, LIMITS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.status == 413
    assert info.value.message == (
        f"image is 50000 x 50000 = 2500000000 pixels, over the limit of {DEFAULT_MAX_PIXELS} "
        "pixels (max_image_pixels); resize it before sending"
    )
    assert peak < 5_000_000  # 2.5 GB had the pixels been decoded
    assert Image.MAX_IMAGE_PIXELS is not None  # Pillow's own guard is back in place


def test_bomb_inside_an_images_list_and_total_pixels():
    rejects(413, "images[1] is 50000 x 50000")(
        {"body": {"images": [b64(encode(gray_image())), b64(png_header(50_000, 50_000))]}}
    )
    small = Limits(max_request_pixels=1000)
    rejects(413, "in total", limits=small)(
        {"body": {"images": [b64(encode(gray_image(20, 30)))] * 2}}
    )


def test_body_and_base64_over_the_byte_limit_are_413():
    tiny = Limits(max_bytes=500)
    data = encode(gray_image(40, 40))
    assert len(data) > 500
    rejects(413, f"image is {len(data)} bytes, over the limit of 500 bytes", limits=tiny)(
        {"body": data}
    )
    rejects(413, "over the limit of 500 bytes", limits=tiny)({"body": {"image": "A" * 4000}})
    small = encode(gray_image(12, 12))
    assert 3 * len(small) > 500 > len(small)
    rejects(413, "bytes or more in total, over the limit of 500 bytes per request", limits=tiny)(
        {"body": {"images": [b64(small)] * 3}}
    )


def test_limits_from_config_and_environment(monkeypatch):
    assert Limits.from_config({}, {}) == Limits()
    assert Limits.from_config({"max_image_pixels": 100}, {}).max_pixels == 100
    env = {"CVSERVE_MAX_IMAGE_PIXELS": "7", "CVSERVE_MAX_IMAGE_BYTES": "9"}
    assert Limits.from_config(None, env) == Limits(7, 9)
    env = {"CVSERVE_MAX_IMAGES": "5", "CVSERVE_MAX_EXPLAIN_STEPS": "6"}
    assert Limits.from_config({"max_request_pixels": 8}, env) == Limits(
        max_images=5, max_explain_steps=6, max_request_pixels=8
    )
    with pytest.raises(ValueError, match="max_images"):
        Limits(max_images=0)
    assert Limits.from_config({"max_image_pixels": 3}, env).max_pixels == 3  # config wins
    with pytest.raises(ValueError, match="max_image_pixels"):
        Limits.from_config({"max_image_pixels": "lots"}, {})
    with pytest.raises(ValueError, match=">= 1"):
        Limits(max_pixels=0)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    Limits(max_pixels=1234).apply_to_pil()
    assert Image.MAX_IMAGE_PIXELS == 1234


def test_image_count_is_413_before_any_image_is_decoded():
    junk = b64(b"not an image at all")  # never decoded: the count is checked first
    err = rejects(413, "10000 images, over the limit of 64 images per request (max_images)")(
        {"body": {"images": [junk] * 10_000}}
    )
    assert err.kind == "TooLarge"
    rejects(400, "images[0] could not be decoded")({"body": {"images": [junk] * 64}})
    rejects(413, "3 images, over the limit of 2", limits=Limits(max_images=2))(
        {"body": {"images": [junk] * 3}}
    )


def test_pixel_budget_counts_the_model_canvas():
    one_pixel = b64(encode(gray_image(1, 1)))
    canvas = {"canvas": lambda w, h: 28 * 28}
    # 20 one-pixel images hold 20 pixels, but the model computes on 20 canvases of 784.
    limits = Limits(max_request_pixels=10_000)
    assert len(parse({"body": {"images": [one_pixel] * 20}}, limits=limits).images) == 20
    with pytest.raises(RequestError) as info:
        parse_request({"body": {"images": [one_pixel] * 20}}, OPTIONS, limits, **canvas)
    assert info.value.status == 413
    assert "over the limit of 10000 pixels per request (max_request_pixels)" in (info.value.message)
    # A big image counts its own size: the canvas is only the floor.
    big = encode(gray_image(120, 100))
    with pytest.raises(RequestError, match="max_request_pixels"):
        parse_request({"body": big}, OPTIONS, Limits(max_request_pixels=11_999), **canvas)
    assert parse_request({"body": big}, OPTIONS, Limits(max_request_pixels=12_000), **canvas)


def test_work_check_runs_before_decoding_with_the_count_and_options():
    seen = []

    def check_work(count, options):
        seen.append((count, options["topk"]))
        if count > 2:
            raise RequestError(422, "too much work")

    junk = b64(b"never decoded")
    with pytest.raises(RequestError, match="too much work"):
        parse_request(
            {"body": {"images": [junk] * 3, "topk": 2}}, OPTIONS, LIMITS, check_work=check_work
        )
    png = encode(gray_image())
    parse_request({"body": png}, OPTIONS, LIMITS, check_work=check_work)
    parse_request({"body": {"image": b64(png)}}, OPTIONS, LIMITS, check_work=check_work)
    assert seen == [(3, 2), (1, 5), (1, 5)]


def test_pixel_limit_applies_to_real_images():
    rejects(413, "30 x 20 = 600 pixels, over the limit of 599", limits=Limits(max_pixels=599))(
        {"body": encode(gray_image(30, 20))}
    )


# ---- options ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"topk": 3}, {"topk": 3}),
        ({"topk": "3"}, {"topk": 3}),
        ({"topk": b" 10 "}, {"topk": 10}),
        ({"topk": 2.0}, {"topk": 2}),
        ({"topk": None}, {"topk": 5}),
        ({"overlay": "TRUE"}, {"overlay": True}),
        ({"overlay": b"0"}, {"overlay": False}),
        ({"overlay": 1}, {"overlay": True}),
        ({"overlay": False}, {"overlay": False}),
        ({"threshold": "0.25"}, {"threshold": 0.25}),
        ({"threshold": 1}, {"threshold": 1.0}),
        ({"method": "GradCAM"}, {"method": "gradcam"}),
    ],
)
def test_options_arrive_as_str_bytes_or_json_values(raw, expected):
    values = parse_options(raw, OPTIONS)
    assert {k: values[k] for k in expected} == expected
    assert set(values) == set(OPTIONS)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"topk": 0}, "option 'topk' must be a whole number from 1 to 10, got 0"),
        ({"topk": "11"}, "from 1 to 10, got '11'"),
        ({"topk": "2.5"}, "whole number"),
        ({"topk": True}, "whole number"),
        ({"topk": [1]}, "got a JSON list"),
        ({"overlay": "maybe"}, "option 'overlay' must be true or false"),
        ({"overlay": 2}, "true or false"),
        ({"threshold": "nan"}, "a number from 0 to 1"),
        ({"threshold": 1.5}, "a number from 0 to 1"),
        ({"method": "magic"}, "must be one of saliency, gradcam"),
        ({"topk": b"\xff\xfe"}, "not UTF-8"),
        (
            {"colour": "red"},
            "unknown option 'colour'; valid options for this endpoint: method, "
            "overlay, threshold, topk",
        ),
    ],
)
def test_invalid_options_are_422_naming_the_fix(raw, fragment):
    with pytest.raises(RequestError) as info:
        parse_options(raw, OPTIONS)
    assert info.value.status == 422 and info.value.kind == "InvalidOption"
    assert fragment in info.value.message


def test_options_are_checked_for_every_input_form():
    png = encode(gray_image())
    check = rejects(422, "unknown option 'size'")
    check({"data": png, "size": b"3"})
    check({"body": {"image": b64(png), "size": 3}})
    check({"body": {"images": [], "size": 3}})
    rejects(422, "this endpoint: none", options={})({"data": png, "topk": b"1"})
