"""Image helpers for the integration tests (PNG encode/decode of response fields)."""

from __future__ import annotations

import base64
import io

from PIL import Image


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def decode_png(b64: str) -> Image.Image:
    """A base64 PNG field of a response -> a loaded PIL image (fails if it is not a PNG)."""
    image = Image.open(io.BytesIO(base64.b64decode(b64)), formats=["PNG"])
    image.load()
    return image
