"""The one request layer: a TorchServe request dict -> decoded images and validated options.

Every way a client, or a workflow node, can send an image ends here, so every handler reads
input the same way and every failure gets the same status and wording (docs/api.md, Errors).

What TorchServe 0.12 hands a handler for one request (see docs/torchserve.md):

- raw body (`curl -T x.png`, or any explicit non-JSON Content-Type): `{"body": b"..."}`;
- multipart form: `{"data": b"<file>", "topk": b"3", ...}`: option fields arrive as bytes;
- JSON body with `Content-Type: application/json`: `{"body": {...}}`, already decoded;
- JSON between workflow nodes: `{"body": b'{"images": [...]}'}`: JSON that arrives as BYTES.
  It is recognised by content (a leading `{`, which no supported image format starts with);
- a form-urlencoded body (curl's default for `-d`/`--data-binary`): TorchServe splits the
  bytes into form fields, so there is no `body` and no `data`. That is answered with a 400
  that says how to send the file.

JSON bodies are `{"image": "<base64>", ...options}` or `{"images": ["<base64>", ...], ...options}`
(several images, answered with a `predictions` list; an empty list is allowed). A base64 value
may be a `data:` URL and may be URL-safe or wrapped over several lines.

**Pipeline error pass-through.** A JSON body that is exactly `{"error": {...}}` is an upstream
node's error object travelling down a workflow DAG (docs/api.md, Pipeline errors: TorchServe 0.12
workflows cannot answer with a 4xx). `parse_request` returns it as `UpstreamError` and the
handler answers with that body unchanged, status 200, so the pipeline's last node can return it
to the client with its original status and message.

Images: PNG, JPEG (phones' MPO files too), BMP, GIF (first frame), TIFF (first page) and
WebP. The size is checked from the header before any pixel is decoded (413 for decompression
bombs), then the image is decoded completely here, so truncated files fail here with a 400
("image could not be decoded: ..."), never later inside the model. Mode conversion and EXIF
orientation are NOT done here: that is `model_src.to_model_mode`, part of the one eval
transform that training also uses.

Statuses: 400 the body or an image cannot be read; 413 an image or the request is over a
limit; 422 a readable request with an unknown or invalid option, or asking for more work than
the handler allows (`check_work`).

Bounded work: a request's cost is bounded before the work it would cause, each bound with its
own message naming its setting (docs/api.md, Limits): the number of images (`max_images`,
checked before any image is decoded), each image's pixels (from its header), the pixels summed
over the request's images, each counted at least at the model's canvas size since that is
what the model computes on (`max_request_pixels`, checked from each header before its pixels
are decoded), the encoded bytes (`max_image_bytes`), and whatever the handler's `check_work`
bounds (the classifier: images x integrated-gradients steps, `max_explain_steps`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import json
import logging
import os
import re
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError

logger = logging.getLogger(__name__)

IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
"""Pillow formats a request may use (JPEG covers MPO); anything else (EPS, ICO, ...) is
refused unopened: fewer decoders reachable from untrusted bytes."""

DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_IMAGES = 64
DEFAULT_MAX_REQUEST_PIXELS = 40_000_000
DEFAULT_MAX_EXPLAIN_STEPS = 2048
"""64 images at the default 32 integrated-gradients steps, or 8 at the most (256)."""
ENV_MAX_PIXELS = "CVSERVE_MAX_IMAGE_PIXELS"
ENV_MAX_BYTES = "CVSERVE_MAX_IMAGE_BYTES"
ENV_MAX_IMAGES = "CVSERVE_MAX_IMAGES"
ENV_MAX_REQUEST_PIXELS = "CVSERVE_MAX_REQUEST_PIXELS"
ENV_MAX_EXPLAIN_STEPS = "CVSERVE_MAX_EXPLAIN_STEPS"

IMAGE_KEYS = ("body", "data")
JSON_IMAGE_KEYS = ("image", "images")

HOW_TO_SEND = (
    "send the image file as the request body with `curl -T image.png URL` or "
    "`curl --data-binary @image.png -H 'Content-Type: image/png' URL`, as multipart field "
    '`data` (`curl -F data=@image.png URL`), or as JSON {"image": "<base64>"}'
)

_KIND_BY_STATUS = {
    400: "InvalidInput",
    413: "TooLarge",
    422: "InvalidOption",
    500: "InternalError",
}


class RequestError(Exception):
    """A request that cannot be answered, with the HTTP status and a message a user can act on.

    `to_body()` is the error object the handler returns for that request (and the shape a
    workflow passes down its DAG): `{"error": {"status": ..., "type": ..., "message": ...}}`.
    """

    def __init__(self, status: int, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.status = int(status)
        self.message = message
        self.kind = kind or _KIND_BY_STATUS.get(self.status, "RequestError")

    def to_body(self) -> dict[str, Any]:
        return {"error": {"status": self.status, "type": self.kind, "message": self.message}}

    def __repr__(self) -> str:
        return f"RequestError({self.status}, {self.message!r})"


@dataclass(frozen=True)
class Limits:
    """Per-request input limits (the work one request may cause).

    `max_pixels` bounds width x height of each image (memory: a decoded image costs up to 4
    bytes per pixel, its model maps more); `max_request_pixels` the pixels summed over a
    request's images, each counted at least at the model's canvas;
    `max_bytes` the encoded image bytes of one request (TorchServe's own `max_request_size`
    bounds the raw HTTP body before it reaches the handler); `max_images` the images of one
    request (10,000 one-pixel PNGs fit in 1 MB and used to kill the segmenter's worker);
    `max_explain_steps` images x integrated-gradients steps on `/explanations`.
    """

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES
    max_images: int = DEFAULT_MAX_IMAGES
    max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS
    max_explain_steps: int = DEFAULT_MAX_EXPLAIN_STEPS

    def __post_init__(self) -> None:
        values = {
            "max_pixels": self.max_pixels,
            "max_bytes": self.max_bytes,
            "max_images": self.max_images,
            "max_request_pixels": self.max_request_pixels,
            "max_explain_steps": self.max_explain_steps,
        }
        bad = {k: v for k, v in values.items() if v < 1}
        if bad:
            raise ValueError(f"image limits must be >= 1, got {bad}")

    @classmethod
    def from_config(
        cls, settings: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> Limits:
        """Limits from the model-config `handler:` section, else the environment, else defaults.

        Keys `max_image_pixels`, `max_image_bytes`, `max_images`, `max_request_pixels`,
        `max_explain_steps`; environment variables `CVSERVE_MAX_IMAGE_PIXELS`,
        `CVSERVE_MAX_IMAGE_BYTES`, `CVSERVE_MAX_IMAGES`, `CVSERVE_MAX_REQUEST_PIXELS`,
        `CVSERVE_MAX_EXPLAIN_STEPS` (server-wide defaults).
        """
        settings = settings or {}
        environ = os.environ if environ is None else environ

        def pick(key: str, env: str, default: int) -> int:
            raw = settings.get(key, environ.get(env, default))
            try:
                return int(raw)
            except (TypeError, ValueError):
                raise ValueError(
                    f"{key} (model-config handler section) / {env} must be a whole number, "
                    f"got {raw!r}"
                ) from None

        return cls(
            max_pixels=pick("max_image_pixels", ENV_MAX_PIXELS, DEFAULT_MAX_PIXELS),
            max_bytes=pick("max_image_bytes", ENV_MAX_BYTES, DEFAULT_MAX_BYTES),
            max_images=pick("max_images", ENV_MAX_IMAGES, DEFAULT_MAX_IMAGES),
            max_request_pixels=pick(
                "max_request_pixels", ENV_MAX_REQUEST_PIXELS, DEFAULT_MAX_REQUEST_PIXELS
            ),
            max_explain_steps=pick(
                "max_explain_steps", ENV_MAX_EXPLAIN_STEPS, DEFAULT_MAX_EXPLAIN_STEPS
            ),
        )

    def apply_to_pil(self) -> None:
        """Set Pillow's own bomb guard to our limit.

        Pillow checks it again inside some decoders (GIF frames, TIFF tiles), so it is a
        second line behind `decode_image`'s header check. TorchServe's built-in VisionHandler
        sets it to None; we never do.
        """
        Image.MAX_IMAGE_PIXELS = self.max_pixels


@dataclass(frozen=True)
class ImageRequest:
    """One decoded request: its images (loaded, original mode and EXIF), options, and whether
    it came as an `images` list (answered with a `predictions` list)."""

    images: list[Image.Image]
    options: dict[str, Any]
    several: bool = False


def is_error_object(obj: Any) -> bool:
    """True for cvserve's error object, `{"error": {...}}` and nothing else: what a failed
    request is answered with, and what a pipeline passes down its DAG (docs/api.md, Errors)."""
    return isinstance(obj, Mapping) and set(obj) == {"error"} and isinstance(obj["error"], Mapping)


@dataclass(frozen=True)
class UpstreamError:
    """An `{"error": {...}}` body from an upstream workflow node: answered unchanged."""

    body: dict[str, Any]


# ---------------------------------------------------------------------------------------------
# Options


@dataclass(frozen=True)
class Option:
    """One request option: its default and a parser from the raw value to the typed value.

    `parse` gets a str (multipart and form values, decoded) or a JSON scalar (int, float, bool)
    and raises `ValueError` whose text completes "option 'name' ...", e.g.
    "must be a whole number from 1 to 10, got '0'".
    """

    default: Any
    parse: Callable[[Any], Any]
    help: str = ""


def int_option(default: int | None, low: int, high: int) -> Option:
    """A whole number in `low..high` (inclusive)."""
    allowed = f"a whole number from {low} to {high}"

    def parse(raw: Any) -> int:
        value: int | None = None
        if isinstance(raw, bool):
            value = None
        elif isinstance(raw, int):
            value = raw
        elif isinstance(raw, float) and raw.is_integer():
            value = int(raw)
        elif isinstance(raw, str) and re.fullmatch(r"[+-]?\d{1,12}", raw.strip()):
            value = int(raw.strip())
        if value is None or not low <= value <= high:
            raise ValueError(f"must be {allowed}, got {raw!r}")
        return value

    return Option(default, parse, allowed)


def float_option(default: float, low: float, high: float) -> Option:
    """A number in `low..high` (inclusive)."""
    allowed = f"a number from {low:g} to {high:g}"

    def parse(raw: Any) -> float:
        value: float | None = None
        if isinstance(raw, bool):
            value = None
        elif isinstance(raw, int | float):
            value = float(raw)
        elif isinstance(raw, str):
            with contextlib.suppress(ValueError):
                value = float(raw.strip())
        if value is None or value != value or not low <= value <= high:  # value != value: NaN
            raise ValueError(f"must be {allowed}, got {raw!r}")
        return value

    return Option(default, parse, allowed)


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def bool_option(default: bool) -> Option:
    """true/false (also 1/0, yes/no, on/off; JSON booleans)."""

    def parse(raw: Any) -> bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, int) and raw in (0, 1):
            return bool(raw)
        if isinstance(raw, str) and raw.strip().lower() in _TRUE + _FALSE:
            return raw.strip().lower() in _TRUE
        raise ValueError(f"must be true or false, got {raw!r}")

    return Option(default, parse, "true or false")


def choice_option(default: str, choices: Sequence[str]) -> Option:
    """One of a fixed set of words (case-insensitive)."""
    allowed = "one of " + ", ".join(choices)

    def parse(raw: Any) -> str:
        if isinstance(raw, str) and raw.strip().lower() in choices:
            return raw.strip().lower()
        raise ValueError(f"must be {allowed}, got {raw!r}")

    return Option(default, parse, allowed)


def parse_options(raw: Mapping[str, Any], options: Mapping[str, Option]) -> dict[str, Any]:
    """Validate the request's option fields; every option in `options` gets a value.

    Raises RequestError 422 for an unknown option (naming the valid ones) or an invalid
    value (naming the allowed range). A JSON `null` means "use the default".
    """
    unknown = sorted(set(raw) - set(options))
    if unknown:
        valid = ", ".join(sorted(options)) if options else "none"
        names = ", ".join(repr(u) for u in unknown)
        raise RequestError(422, f"unknown option {names}; valid options for this endpoint: {valid}")
    values = {name: opt.default for name, opt in options.items()}
    for name, value in raw.items():
        if isinstance(value, bytes | bytearray):
            try:
                value = bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                raise RequestError(422, f"option {name!r} is not UTF-8 text") from None
        if value is None:
            continue
        if isinstance(value, list | dict):
            raise RequestError(
                422,
                f"option {name!r} must be {options[name].help}, got a JSON {type(value).__name__}",
            )
        try:
            values[name] = options[name].parse(value)
        except ValueError as exc:
            raise RequestError(422, f"option {name!r} {exc}") from None
    return values


# ---------------------------------------------------------------------------------------------
# The request


Canvas = Callable[[int, int], int]
"""(width, height) of an image -> the pixels of the model canvas it becomes."""
WorkCheck = Callable[[int, Mapping[str, Any]], None]
"""(number of images, validated options) -> None, or a RequestError for too much work."""


class PixelBudget:
    """The pixels of one request's images, summed as their headers are read.

    Each image counts its decoded size or its model canvas, whichever is larger: a one-pixel
    PNG still costs the model a full canvas, a large photo its decoded bitmap.
    """

    def __init__(self, limits: Limits, canvas: Canvas | None = None) -> None:
        self.limit = limits.max_request_pixels
        self.canvas = canvas
        self.total = 0

    def charge(self, width: int, height: int) -> None:
        cost = width * height
        if self.canvas is not None:
            cost = max(cost, self.canvas(width, height))
        self.total += cost
        if self.total > self.limit:
            raise RequestError(
                413,
                f"the images hold {self.total} pixels or more in total (each counted at least "
                f"at the model's input size), over the limit of {self.limit} pixels per "
                "request (max_request_pixels); send them in several requests",
            )


def check_count(count: int, limits: Limits) -> None:
    """413 when a request holds more images than `limits.max_images`, before any decoding."""
    if count > limits.max_images:
        raise RequestError(
            413,
            f"the request holds {count} images, over the limit of {limits.max_images} images "
            "per request (max_images); send them in several requests",
        )


def parse_request(
    row: Mapping[str, Any] | None,
    options: Mapping[str, Option],
    limits: Limits,
    *,
    canvas: Canvas | None = None,
    check_work: WorkCheck | None = None,
) -> ImageRequest | UpstreamError:
    """One TorchServe request dict -> its decoded images and validated options.

    `canvas` maps an image's size to the model canvas it costs (default: its own size);
    `check_work(count, options)` lets the handler refuse a request's work before any image
    is decoded. Raises RequestError (400 / 413 / 422) with a message for the user.
    """
    if not isinstance(row, Mapping) or not row:
        raise RequestError(400, f"the request has no body; {HOW_TO_SEND}")
    key = next((k for k in IMAGE_KEYS if k in row), None)
    if key is None:
        raise RequestError(
            400,
            "the request has no image: it arrived as form fields, which is what curl sends "
            "for -d/--data-binary without a Content-Type (form-urlencoded); " + HOW_TO_SEND,
        )
    payload = row[key]
    extra = {k: v for k, v in row.items() if k != key}
    if isinstance(payload, str):
        payload = _text_payload(payload)
    if isinstance(payload, bytes | bytearray) and _looks_like_json(payload):
        payload = _json_payload(payload)
    if isinstance(payload, Mapping):
        return _parse_json_body(payload, extra, options, limits, canvas, check_work)
    if isinstance(payload, bytes | bytearray):
        values = parse_options(extra, options)  # a bad option is a 422 before any decoding
        if check_work is not None:
            check_work(1, values)
        budget = PixelBudget(limits, canvas)
        return ImageRequest([decode_image(bytes(payload), limits, on_header=budget.charge)], values)
    raise RequestError(
        400, f"field {key!r} holds a JSON {type(payload).__name__}, not an image; {HOW_TO_SEND}"
    )


def _looks_like_json(payload: bytes | bytearray) -> bool:
    # No supported image format starts with "{" (PNG \x89, JPEG \xff, BMP "BM", GIF "GIF",
    # TIFF "II"/"MM", WebP "RIFF"), so this cannot misread an image.
    return bytes(payload[:64]).lstrip()[:1] == b"{"


def _text_payload(text: str) -> Any:
    """A body TorchServe decoded as text (a `text/*` Content-Type): JSON or a mistake."""
    if text.lstrip().startswith("{"):
        return _json_payload(text.encode("utf-8"))
    raise RequestError(
        400,
        "the image arrived as text (a text/* Content-Type); send the file as binary data: "
        + HOW_TO_SEND,
    )


def _json_payload(payload: bytes | bytearray) -> Any:
    try:
        return json.loads(bytes(payload).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(400, f"the body starts like JSON but is not valid JSON: {exc}") from None


def _parse_json_body(
    body: Mapping[str, Any],
    extra: Mapping[str, Any],
    options: Mapping[str, Option],
    limits: Limits,
    canvas: Canvas | None = None,
    check_work: WorkCheck | None = None,
) -> ImageRequest | UpstreamError:
    if is_error_object(body):
        return UpstreamError(dict(body))
    if "image" in body and "images" in body:
        raise RequestError(400, 'send either "image" or "images" in the JSON body, not both')
    if not any(key in body for key in JSON_IMAGE_KEYS):
        raise RequestError(
            400,
            'the JSON body needs "image" (the base64 of an image file) or "images" (a list of '
            f"them); got keys {sorted(body)}",
        )
    raw_options = {**extra, **{k: v for k, v in body.items() if k not in JSON_IMAGE_KEYS}}
    values = parse_options(raw_options, options)  # a bad option is a 422 before any decoding
    budget = PixelBudget(limits, canvas)
    if "image" in body:
        if check_work is not None:
            check_work(1, values)
        raw = b64_image(body["image"], "image", limits.max_bytes)
        return ImageRequest([decode_image(raw, limits, on_header=budget.charge)], values)
    encoded = body["images"]
    if not isinstance(encoded, list):
        raise RequestError(400, '"images" must be a list of base64 strings')
    check_count(len(encoded), limits)
    if check_work is not None:
        check_work(len(encoded), values)
    images: list[Image.Image] = []
    total_bytes = 0
    for i, item in enumerate(encoded):
        what = f"images[{i}]"
        raw = b64_image(item, what, limits.max_bytes)
        total_bytes += len(raw)
        if total_bytes > limits.max_bytes:
            raise RequestError(
                413,
                f"the images hold {total_bytes} bytes or more in total, over the limit of "
                f"{limits.max_bytes} bytes per request (max_image_bytes); send them in "
                "several requests",
            )
        images.append(decode_image(raw, limits, what, on_header=budget.charge))
    return ImageRequest(images, values, several=True)


_DATA_URL = re.compile(r"^data:[\w/+.-]*;base64,", re.IGNORECASE)


def b64_image(value: Any, what: str, max_bytes: int) -> bytes:
    """Decode a base64 image string (plain, URL-safe, line-wrapped or a `data:` URL)."""
    if not isinstance(value, str):
        raise RequestError(
            400, f"{what} must be a base64 string, got a JSON {type(value).__name__}"
        )
    text = _DATA_URL.sub("", value.strip(), count=1)
    text = "".join(text.split())
    # Reject before decoding: base64 holds 3 bytes per 4 characters.
    if len(text) // 4 * 3 > max_bytes + 3:
        raise RequestError(
            413,
            f"{what} is about {len(text) // 4 * 3} bytes, over the limit of {max_bytes} bytes "
            "(max_image_bytes)",
        )
    if "-" in text or "_" in text:
        text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(400, f"{what} is not valid base64: {exc}") from None


# ---------------------------------------------------------------------------------------------
# Images

_OPEN_LOCK = threading.Lock()


@contextlib.contextmanager
def _header_only_open() -> Iterator[None]:
    """Let `Image.open` parse a header of any size so `decode_image` can report W x H itself.

    Pillow's own bomb check runs inside `Image.open`, before the size can be read, and its
    error does not say the size. Opening reads the header only (no pixels), and
    `decode_image` checks the size right after, before `load()`. The lock keeps the guard
    lowered for no one else (a TorchServe worker runs one batch at a time anyway).
    """
    with _OPEN_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def decode_image(
    raw: bytes,
    limits: Limits,
    what: str = "image",
    on_header: Callable[[int, int], None] | None = None,
) -> Image.Image:
    """Encoded bytes -> a fully loaded PIL image (original mode; EXIF kept for orientation).

    `on_header(width, height)` runs once the size is known and before any pixel is decoded
    (a request's pixel budget). Raises RequestError: 400 empty / not an image / truncated or
    corrupt; 413 over the byte or pixel limit (checked from the header, before decoding).
    """
    if not raw:
        raise RequestError(400, f"{what} is empty; {HOW_TO_SEND}")
    if len(raw) > limits.max_bytes:
        raise RequestError(
            413,
            f"{what} is {len(raw)} bytes, over the limit of {limits.max_bytes} bytes "
            "(max_image_bytes)",
        )
    try:
        with _header_only_open():
            image = Image.open(io.BytesIO(raw), formats=IMAGE_FORMATS)
    except UnidentifiedImageError:
        raise RequestError(
            400,
            f"{what} could not be decoded: not a PNG, JPEG, BMP, GIF, TIFF or WebP file "
            f"(starts with {raw[:8]!r})",
        ) from None
    except MemoryError:
        raise
    except Exception as exc:  # any decoder failure on untrusted bytes is a 400
        raise RequestError(400, f"{what} could not be decoded: {_reason(exc)}") from None
    width, height = image.size
    pixels = width * height
    if pixels > limits.max_pixels:
        raise RequestError(
            413,
            f"{what} is {width} x {height} = {pixels} pixels, over the limit of "
            f"{limits.max_pixels} pixels (max_image_pixels); resize it before sending",
        )
    if pixels == 0:
        raise RequestError(400, f"{what} could not be decoded: it is {width} x {height} pixels")
    if on_header is not None:
        on_header(width, height)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise RequestError(413, f"{what} is over the pixel limit: {exc}") from None
    except MemoryError:
        raise
    except Exception as exc:  # truncated/corrupt data raises many types
        raise RequestError(400, f"{what} could not be decoded: {_reason(exc)}") from None
    return image


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if "truncated" in text.lower() or isinstance(exc, EOFError):
        return f"truncated or incomplete image data ({text})"
    return text
