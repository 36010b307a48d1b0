"""Seeded fuzzing of the request layer (handlers.request.parse_request), no server.

`hypothesis` is not installed in this environment, so the fuzzer is a small seeded mutator:
valid image files and request bodies from the corpus are bit-flipped, truncated, spliced,
re-chunked and wrapped in every request shape TorchServe produces (raw body, multipart
fields, decoded JSON, JSON as bytes, text). The contract under test: `parse_request` returns
an `ImageRequest` / `UpstreamError`, or raises `RequestError` with 400, 413 or 422 -
nothing else (no other exception type, no 5xx for client bytes).
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
from corpus import build_corpus, digit_image, encode

from handlers.request import (
    ImageRequest,
    Limits,
    RequestError,
    UpstreamError,
    bool_option,
    choice_option,
    float_option,
    int_option,
    parse_request,
)

# Pillow warns (not raises) about corrupt EXIF/TIFF metadata in mutated files: expected here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SEED = 20261123
CASES = 5000
OPTIONS = {
    "topk": int_option(5, 1, 10),
    "overlay": bool_option(False),
    "threshold": float_option(0.5, 0.0, 1.0),
    "method": choice_option("saliency", ("saliency", "gradcam")),
}
# Small limits so the fuzzer also reaches the 413 paths cheaply.
LIMITS = Limits(max_pixels=250_000, max_bytes=200_000)


def seeds() -> list[bytes]:
    files = [
        case.payload
        for case in build_corpus(1_000_000)
        if case.kind == "raw" and isinstance(case.payload, bytes) and len(case.payload) < 50_000
    ]
    files += [encode(digit_image(), fmt) for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")]
    return files


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        if op == 0 and out:  # flip bytes
            for _ in range(rng.randint(1, 8)):
                out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        elif op == 1 and out:  # truncate
            del out[rng.randrange(len(out)) :]
        elif op == 2:  # insert random bytes
            at = rng.randrange(len(out) + 1)
            out[at:at] = rng.randbytes(rng.randint(1, 32))
        elif op == 3 and len(out) > 16:  # duplicate a slice (chunk repetition)
            a = rng.randrange(len(out) - 8)
            b = min(len(out), a + rng.randint(1, 64))
            out[a:a] = out[a:b]
        elif op == 4 and len(out) > 24:  # patch a 32-bit field (sizes, lengths)
            at = rng.randrange(8, len(out) - 4)
            out[at : at + 4] = rng.choice(
                [b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x00\x00\xc3\x50", rng.randbytes(4)]
            )
    return bytes(out)


def junk_value(rng: random.Random) -> Any:
    return rng.choice(
        [
            None, True, 0, -1, 3, 11, 2.5, float("inf"), "3", " 7 ", "nan", "yes", "", "x" * 300,
            [1], {"a": 1}, "gradcam", "\u2603", 10**30,
        ]
    )  # fmt: skip


def make_row(rng: random.Random, files: list[bytes]) -> Any:
    """One fuzzed TorchServe request dict (or a non-dict, which TorchServe never sends)."""
    data = mutate(rng, rng.choice(files)) if rng.random() < 0.9 else rng.choice(files)
    options = {
        rng.choice([*OPTIONS, "colour", ""]): junk_value(rng) for _ in range(rng.randint(0, 2))
    }
    shape = rng.randrange(9)
    if shape == 0:
        return {"body": data}
    if shape == 1:
        return {"data": data, **{k: str(v).encode() for k, v in options.items()}}
    if shape == 2:
        return {"body": {"image": base64.b64encode(data).decode(), **options}}
    if shape == 3:
        count = rng.randint(0, 3)
        images = [base64.b64encode(mutate(rng, rng.choice(files))).decode() for _ in range(count)]
        return {"body": json.dumps({"images": images, **options}).encode()}
    if shape == 4:  # JSON bytes cut or flipped
        text = json.dumps({"image": base64.b64encode(data).decode(), **options}).encode()
        return {"body": mutate(rng, text)}
    if shape == 5:
        return {"body": data.decode("latin-1")}  # a text/* body
    if shape == 6:
        b64 = base64.b64encode(data).decode()
        return {"body": {"image": mutate(rng, b64.encode()).decode("latin-1")}}
    if shape == 7:
        return {"body": rng.choice([{}, {"error": "x"}, {"error": {}}, [1, 2], "", b"", 7])}
    return rng.choice([None, {}, {"file": data}, {"body": None}, {"body": 3.5}, []])


def fuzz_rows() -> Iterator[tuple[int, Any]]:
    rng = random.Random(SEED)
    files = seeds()
    for i in range(CASES):
        yield i, make_row(rng, files)


def test_parse_request_never_fails_badly() -> None:
    outcomes: dict[str, int] = {}
    for i, row in fuzz_rows():
        try:
            result = parse_request(row, OPTIONS, LIMITS)
        except RequestError as err:
            assert err.status in (400, 413, 422), (i, err)
            assert err.message and "\n" not in err.message[:200], (i, err)
            assert set(err.to_body()["error"]) == {"status", "type", "message"}
            key = str(err.status)
        except Exception as exc:
            pytest.fail(f"case {i}: {type(exc).__name__}: {exc!r} for {repr(row)[:300]}")
        else:
            assert isinstance(result, ImageRequest | UpstreamError), (i, result)
            if isinstance(result, ImageRequest):
                assert all(
                    image.width * image.height <= LIMITS.max_pixels for image in result.images
                )
            key = type(result).__name__
        outcomes[key] = outcomes.get(key, 0) + 1
    print(f"\nfuzz: {CASES} requests: {dict(sorted(outcomes.items()))}")
    assert outcomes.get("ImageRequest", 0) > 0 and outcomes.get("400", 0) > 0
