"""The bad-input corpus: every way a client can get a request wrong, generated in code.

Each `Case` is one request (raw body, JSON, multipart, form-urlencoded or text) and what
docs/api.md promises for it on each endpoint ("target"):

- `cls`: `POST /predictions/digit_classifier`
- `seg`: `POST /predictions/digit_segmenter`
- `exp`: `POST /explanations/digit_classifier`
- `wf`:  `POST /wfpredict/digit_pipeline` (the same statuses and error objects)

Files are built from a fixed seed, so the corpus is the same on every run; nothing is read
from disk. Malformed files are made by cutting or patching valid ones (a header claiming
50000 x 50000 pixels, a PNG of 7000 x 7000 zero pixels that compresses to a few KiB), so the
corpus stays small however large the images claim to be.
"""

from __future__ import annotations

import base64
import io
import json
import random
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

TARGETS = ("cls", "seg", "exp", "wf")
SEED = 1234


@dataclass(frozen=True)
class Expect:
    """Status docs/api.md promises, and a regex the error message must match (None for 200)."""

    status: int
    words: str | None = None


@dataclass(frozen=True)
class Case:
    """One request of the corpus.

    `kind` says how it is sent: `raw` (bytes with `content_type`), `json` (a JSON value),
    `json_text` (a str sent as application/json, possibly broken), `multipart` (a dict of
    field -> bytes), `form` (bytes as application/x-www-form-urlencoded), `text` (text/plain).
    """

    name: str
    kind: str
    payload: Any
    expect: Expect
    per_target: Mapping[str, Expect] = field(default_factory=dict)
    content_type: str = "application/octet-stream"
    frontend: bool = False
    known_bugs: Mapping[str, str] = field(default_factory=dict)
    """target -> why it fails today (run as strict xfail, so a fix is noticed)."""
    """Answered by TorchServe's frontend before any handler runs: a real HTTP status on
    every route, the workflow's included."""

    def expected(self, target: str) -> Expect:
        return self.per_target.get(target, self.expect)

    def request_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `requests.post` (headers besides auth included)."""
        if self.kind == "raw":
            return {"data": self.payload, "headers": {"Content-Type": self.content_type}}
        if self.kind == "json":
            return {"json": self.payload}
        if self.kind == "json_text":
            return {
                "data": self.payload.encode("utf-8"),
                "headers": {"Content-Type": "application/json"},
            }
        if self.kind == "multipart":
            files = {k: (k, v) for k, v in self.payload.items() if k == "data"}
            fields = {k: v for k, v in self.payload.items() if k != "data"}
            if not files:  # no file part at all: send the fields as multipart anyway
                files = {k: (None, v) for k, v in fields.items()}
                fields = {}
            return {"files": files, "data": fields}
        if self.kind == "form":
            return {
                "data": self.payload,
                "headers": {"Content-Type": "application/x-www-form-urlencoded"},
            }
        if self.kind == "text":
            return {"data": self.payload, "headers": {"Content-Type": "text/plain"}}
        raise ValueError(f"unknown case kind {self.kind!r}")


# ---------------------------------------------------------------------------------------------
# Files


def digit_image(size: int = 40) -> Image.Image:
    """A white "7" on black, grey-scale: something both models can answer."""
    image = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(image)
    s = size / 28
    draw.line(
        [(6 * s, 6 * s), (22 * s, 6 * s), (12 * s, 23 * s)], fill=255, width=max(2, size // 10)
    )
    return image


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_from_rows(width: int, height: int, row: bytes, bit_depth: int = 8, color: int = 0) -> bytes:
    """A PNG whose every scanline is `row` (filter byte included), compressed in one go."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color, 0, 0, 0)
    idat = zlib.compress(row * height, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def png_bomb_header(width: int = 50_000, height: int = 50_000) -> bytes:
    """A PNG that claims `width x height` pixels (a decompression bomb's header), with a tiny
    IDAT that could never fill it."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + png_chunk(b"IEND", b"")
    )


def sparse_huge_png(side: int = 7000) -> bytes:
    """A VALID side x side 1-bit PNG of zeros: a few KiB on the wire, over 40 MP decoded."""
    return png_from_rows(side, side, b"\x00" * (1 + (side + 7) // 8), bit_depth=1)


def patch_jpeg_size(jpeg: bytes, width: int, height: int) -> bytes:
    """Rewrite the SOF0/SOF2 frame size of a JPEG (the pixels stay as they were)."""
    data = bytearray(jpeg)
    i = 2
    while i < len(data) - 9:
        if data[i] != 0xFF:
            raise ValueError("not a JPEG marker stream")
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5 : i + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        i += 2 + length
    raise ValueError("no SOF marker")


def patch_bmp_size(bmp: bytes, width: int, height: int) -> bytes:
    data = bytearray(bmp)
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def cmyk_jpeg() -> bytes:
    return encode(digit_image().convert("CMYK"), "JPEG", quality=90)


def sixteen_bit_png() -> bytes:
    array = np.asarray(digit_image(), dtype=np.uint16) * 257
    return encode(Image.fromarray(array), "PNG")


def animated_gif() -> bytes:
    frames = [digit_image(), digit_image().rotate(90), Image.new("L", (40, 40), 128)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)


def palette_png_with_transparency() -> bytes:
    image = digit_image().convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    return encode(image, "PNG", transparency=0)


def rgba_png() -> bytes:
    image = digit_image().convert("RGBA")
    image.putalpha(Image.new("L", image.size, 200))
    return encode(image, "PNG")


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to view
    return encode(digit_image().convert("RGB"), "JPEG", exif=exif.tobytes())


def random_bytes(n: int, seed: int = SEED) -> bytes:
    return random.Random(seed).randbytes(n)


def noise_pngs_filling(body_bytes: int, count: int, seed: int = SEED) -> list[str]:
    """`count` base64 noise PNGs (incompressible) whose JSON `{"images": [...]}` body is just
    under `body_bytes`: the largest request of many images the frontend lets through."""
    overhead = len(json.dumps({"images": [""] * count}))
    per_image = (body_bytes - overhead - 4096) // count // 4 * 3  # raw bytes, base64 is 4/3
    side = int((per_image / 3) ** 0.5)
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        images.append(b64(encode(Image.fromarray(pixels, "RGB"), "PNG", compress_level=0)))
    return images


def corrupt_png_crc() -> bytes:
    """A PNG whose IDAT bytes are flipped (zlib stream broken)."""
    good = bytearray(encode(digit_image(), "PNG"))
    start = good.index(b"IDAT") + 4
    for i in range(start + 2, min(start + 40, len(good) - 16)):
        good[i] ^= 0xFF
    return bytes(good)


# ---------------------------------------------------------------------------------------------
# The corpus

DECODE = r"could not be decoded"
TRUNCATED = r"could not be decoded: .*(truncated|incomplete|broken|error)"
TOO_MANY_PIXELS = r"pixels.*over the limit|over the pixel limit"
UNKNOWN_OPTION = r"unknown option"
TOO_MANY_IMAGES = r"images, over the limit of \d+ images per request \(max_images\)"
TOO_MANY_STEPS = r"gradient steps, over the limit of \d+ per request \(max_explain_steps\)"
HOW = r"curl -T"


def _option_case(
    name: str,
    options: dict[str, Any],
    owners: tuple[str, ...],
    owner_expect: Expect,
    via: str = "json",
) -> Case:
    """An option valid on `owners` only: everywhere else it is an unknown option (422)."""
    good = encode(digit_image(), "PNG")
    per_target = {
        t: (owner_expect if t in owners else Expect(422, UNKNOWN_OPTION)) for t in TARGETS
    }
    if via == "multipart":
        payload: Any = {"data": good, **{k: str(v).encode() for k, v in options.items()}}
    else:
        payload = {"image": b64(good), **options}
    return Case(name, via, payload, owner_expect, per_target)


def build_corpus(max_request_size: int) -> list[Case]:
    """Every case, for a server whose `max_request_size` is the given number of bytes."""
    good_png = encode(digit_image(), "PNG")
    good_jpeg = encode(digit_image().convert("RGB"), "JPEG", quality=90)
    ok = Expect(200)
    topk = (r"option 'topk' must be a whole number from 1 to 10",)
    one_pixel = b64(encode(Image.new("L", (1, 1), 255), "PNG"))
    full_body = noise_pngs_filling(max_request_size, 64)
    cases = [
        # --- bodies that are not images -------------------------------------------------
        Case("empty_body", "raw", b"", Expect(400, r"empty|no body|no image"), {}, "image/png"),
        Case("plain_text_as_octets", "raw", b"hello, this is text\n", Expect(400, DECODE)),
        Case("text_content_type", "text", "hello", Expect(400, r"arrived as text")),
        Case("random_bytes", "raw", random_bytes(4096), Expect(400, DECODE)),
        Case("single_byte", "raw", b"\x89", Expect(400, DECODE)),
        Case("png_signature_only", "raw", good_png[:8], Expect(400, DECODE)),
        Case("truncated_png", "raw", good_png[: len(good_png) // 2], Expect(400, TRUNCATED)),
        Case("truncated_jpeg", "raw", good_jpeg[: len(good_jpeg) // 2], Expect(400, TRUNCATED)),
        Case("corrupt_png_data", "raw", corrupt_png_crc(), Expect(400, DECODE)),
        Case("unsupported_format_ppm", "raw", encode(digit_image(), "PPM"), Expect(400, DECODE)),
        Case("unsupported_format_ico", "raw", encode(digit_image(), "ICO"), Expect(400, DECODE)),
        # --- too large --------------------------------------------------------------------
        Case("png_bomb_header_50000", "raw", png_bomb_header(), Expect(413, TOO_MANY_PIXELS)),
        Case(
            "jpeg_header_60000",
            "raw",
            patch_jpeg_size(good_jpeg, 60_000, 60_000),
            Expect(413, TOO_MANY_PIXELS),
        ),
        Case(
            "bmp_header_50000",
            "raw",
            patch_bmp_size(encode(digit_image(), "BMP"), 50_000, 50_000),
            Expect(413, TOO_MANY_PIXELS),
        ),
        Case("sparse_valid_7000x7000_png", "raw", sparse_huge_png(), Expect(413, TOO_MANY_PIXELS)),
        Case(
            "body_over_max_request_size",
            "raw",
            good_png + b"\x00" * (max_request_size + 1024 - len(good_png)),
            Expect(413),
            frontend=True,
        ),
        # --- bounded work per request (docs/api.md, Limits) ------------------------------
        Case(
            "json_10000_one_pixel_pngs",
            "json",
            {"images": [one_pixel] * 10_000},
            Expect(413, TOO_MANY_IMAGES),
        ),
        Case(
            "json_64_images_x_256_steps",
            "json",
            {"images": [b64(good_png)] * 64, "n_steps": 256},
            Expect(422, UNKNOWN_OPTION),
            {"exp": Expect(422, TOO_MANY_STEPS)},
        ),
        Case(
            "json_64_sparse_1000x1000_pngs",
            "json",
            {"images": [b64(encode(Image.new("L", (1000, 1000), 0), "PNG"))] * 64},
            Expect(413, r"pixels per request \(max_request_pixels\)"),
        ),
        Case(
            "json_64_noise_pngs_just_under_max_request_size",
            "json",
            {"images": full_body},
            ok,
            {"wf": Expect(400, r"one image per request")},
        ),
        # --- valid but odd images: all answered -----------------------------------------
        Case("one_by_one_png", "raw", encode(Image.new("L", (1, 1), 255), "PNG"), ok),
        Case("sixteen_bit_png", "raw", sixteen_bit_png(), ok),
        Case("cmyk_jpeg", "raw", cmyk_jpeg(), ok),
        Case("animated_gif", "raw", animated_gif(), ok),
        Case("tiff", "raw", encode(digit_image(), "TIFF", compression="tiff_lzw"), ok),
        Case("palette_png_transparency", "raw", palette_png_with_transparency(), ok),
        Case("rgba_png", "raw", rgba_png(), ok),
        Case("bmp", "raw", encode(digit_image(), "BMP"), ok),
        Case("webp", "raw", encode(digit_image(), "WEBP", lossless=True), ok),
        Case("exif_rotated_jpeg", "raw", exif_rotated_jpeg(), ok, {}, "image/jpeg"),
        Case("wide_strip_png", "raw", encode(Image.new("L", (2000, 3), 255), "PNG"), ok),
        # --- JSON -------------------------------------------------------------------------
        Case("json_not_base64", "json", {"image": "%%% not base64 ***"}, Expect(400, r"base64")),
        Case(
            "json_base64_of_garbage",
            "json",
            {"image": b64(random_bytes(300))},
            Expect(400, DECODE),
        ),
        Case("json_without_image", "json", {"picture": b64(good_png)}, Expect(400, r'"image"')),
        Case("json_image_is_number", "json", {"image": 5}, Expect(400, r"base64 string")),
        Case("json_image_is_list", "json", {"image": [b64(good_png)]}, Expect(400, r"base64")),
        Case("json_images_not_list", "json", {"images": b64(good_png)}, Expect(400, r"list")),
        Case(
            "json_image_and_images",
            "json",
            {"image": b64(good_png), "images": [b64(good_png)]},
            Expect(400, r"not both"),
        ),
        Case(
            "json_images_with_bad_item",
            "json",
            {"images": [b64(good_png), b64(b"nope")]},
            Expect(400, r"images\[1\]"),
            {"wf": Expect(400, r"images\[1\]|one image per request")},
        ),
        Case("json_top_level_list", "json", [b64(good_png)], Expect(400, r"JSON|image")),
        Case("json_broken_syntax", "json_text", '{"image": "abc', Expect(400, r"not valid JSON")),
        Case(
            "json_data_url",
            "json",
            {"image": "data:image/png;base64," + b64(good_png)},
            ok,
        ),
        Case(
            "json_urlsafe_base64",
            "json",
            {"image": base64.urlsafe_b64encode(sixteen_bit_png()).decode()},
            ok,
        ),
        Case(
            "json_images_empty_list",
            "json",
            {"images": []},
            ok,
            {"wf": Expect(400, r"one image per request")},
        ),
        # --- forms ------------------------------------------------------------------------
        Case("multipart_without_data", "multipart", {"file": good_png}, Expect(400, HOW)),
        Case("form_urlencoded_upload", "form", good_png, Expect(400, r"form")),
        # --- options ------------------------------------------------------------------------
        _option_case("unknown_option", {"colour": "red"}, (), Expect(422, UNKNOWN_OPTION)),
        _option_case("topk_zero", {"topk": 0}, ("cls",), Expect(422, topk[0])),
        _option_case("topk_negative", {"topk": -3}, ("cls",), Expect(422, topk[0])),
        _option_case("topk_too_large", {"topk": 11}, ("cls",), Expect(422, topk[0])),
        _option_case("topk_string", {"topk": "three"}, ("cls",), Expect(422, topk[0])),
        _option_case("topk_float", {"topk": 2.5}, ("cls",), Expect(422, topk[0])),
        _option_case("topk_bool", {"topk": True}, ("cls",), Expect(422, topk[0])),
        _option_case("topk_list", {"topk": [3]}, ("cls",), Expect(422, r"option 'topk'")),
        _option_case("topk_valid", {"topk": 3}, ("cls",), ok),
        _option_case(
            "topk_multipart_zero", {"topk": 0}, ("cls",), Expect(422, topk[0]), "multipart"
        ),
        _option_case("topk_multipart_valid", {"topk": 3}, ("cls",), ok, "multipart"),
        _option_case(
            "method_unknown", {"method": "lime"}, ("exp",), Expect(422, r"option 'method'")
        ),
        _option_case(
            "target_out_of_range", {"target": 10}, ("exp",), Expect(422, r"option 'target'")
        ),
        _option_case("target_negative", {"target": -1}, ("exp",), Expect(422, r"option 'target'")),
        _option_case(
            "target_unknown_label", {"target": "x"}, ("exp",), Expect(422, r"option 'target'")
        ),
        _option_case("n_steps_zero", {"n_steps": 0}, ("exp",), Expect(422, r"option 'n_steps'")),
        _option_case(
            "n_steps_huge", {"n_steps": 100000}, ("exp",), Expect(422, r"option 'n_steps'")
        ),
        _option_case(
            "overlay_not_bool", {"overlay": "maybe"}, ("seg",), Expect(422, r"option 'overlay'")
        ),
        _option_case(
            "min_area_negative", {"min_area": -1}, ("seg",), Expect(422, r"option 'min_area'")
        ),
        _option_case("overlay_valid", {"overlay": True, "min_area": 2}, ("seg",), ok),
        Case(
            "option_not_utf8",
            "multipart",
            {"data": good_png, "topk": b"\xff\xfe"},
            Expect(422, r"UTF-8|unknown option"),
            {"cls": Expect(422, r"option 'topk' is not UTF-8")},
        ),
    ]
    names = [case.name for case in cases]
    if len(names) != len(set(names)):
        raise AssertionError("corpus case names must be unique")
    return cases


#: A check on a successful answer, per target.
SUCCESS_KEYS: dict[str, tuple[str, ...]] = {
    "cls": ("label", "score", "topk"),
    "seg": ("mask_png", "objects", "class_pixels"),
    "exp": ("heatmap_png", "overlay_png", "target"),
    "wf": ("labels", "objects", "mask_png"),
}


def success_shape(target: str, body: Any) -> bool:
    """True if `body` looks like docs/api.md's answer for `target` (a list answer for `images`)."""
    if isinstance(body, dict) and "predictions" in body:
        return isinstance(body["predictions"], list)
    return isinstance(body, dict) and all(key in body for key in SUCCESS_KEYS[target])


def dump(value: Any) -> str:
    """Short text of a body for assertion messages."""
    text = json.dumps(value) if not isinstance(value, str) else value
    return text[:300]
