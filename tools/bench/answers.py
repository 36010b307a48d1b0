"""Answers checked: a fast server that answers wrongly must not win the comparison.

For every row, a sample of the 200 responses a server gave under load is compared with the
in-process handler's answer for the same image: the same label (classifier top-1, the
explained target, the pipeline's digit labels) and the same mask where there is one
(decoded pixels of `mask_png`, not the PNG bytes, which may differ in compression only).
A mismatch fails the row; the report says which field differed.

Masks may differ in `MASK_TOLERANCE` of their pixels at most: the same network gives the
same logits only up to float rounding, which depends on the thread count and on compiling
(the order of a convolution's sums), and a pixel whose two best classes are that close can
flip. A real fault (another model, a broken transform) changes far more pixels than that.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image

MASK_TOLERANCE = 1e-4
"""Largest fraction of a mask's pixels that may differ from the reference (6 of 256 x 256)."""


def answer_key(body: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a response that must be equal to the reference: label(s) and mask."""
    key: dict[str, Any] = {}
    if "label" in body:
        key["label"] = body["label"]
    elif isinstance(body.get("target"), Mapping):  # an explanation: the class it explains
        key["label"] = body["target"].get("label")
    if "labels" in body:  # the pipeline: one classifier label per object found
        key["labels"] = list(body["labels"])
    if "objects" in body and "labels" not in body:  # the segmenter's objects
        key["objects"] = sorted(str(o.get("class")) for o in body["objects"])
    if "mask_png" in body:
        key["mask"] = decode_mask(body["mask_png"])
    if not key:
        raise ValueError(f"no label or mask in the answer (keys {sorted(body)})")
    return key


def decode_mask(png_b64: str) -> tuple[tuple[int, int], bytes]:
    """A mask PNG's size and raw pixels (palette indices: the class per pixel)."""
    with Image.open(io.BytesIO(base64.b64decode(png_b64))) as image:
        image.load()
        return image.size, image.tobytes()


def compare(expected: Mapping[str, Any], got: Mapping[str, Any]) -> str | None:
    """None when `got` answers like `expected`, else what differs (one line, every field)."""
    problems = []
    for field, want in expected.items():
        have = got.get(field)
        if have == want:
            continue
        if field == "mask" and have is not None:
            (size, pixels), (have_size, have_pixels) = want, have
            if size != have_size:
                problems.append(f"mask size {have_size} instead of {size}")
            else:
                differ = sum(a != b for a, b in zip(pixels, have_pixels, strict=True))
                if differ > MASK_TOLERANCE * len(pixels):
                    problems.append(f"mask differs in {differ} of {len(pixels)} pixels")
        else:
            problems.append(f"{field} {have!r} instead of {want!r}")
    return "; ".join(problems) or None


def check(reference: Mapping[str, Any] | None, bodies: Sequence[bytes]) -> dict[str, Any]:
    """The answer check of one level: how many sampled responses were compared, how many
    differed from the reference answer, and the first few differences."""
    if reference is None:
        return {"checked": 0, "mismatches": 0, "examples": ["no in-process reference answer"]}
    expected = answer_key(reference)
    mismatches: list[str] = []
    for body in bodies:
        try:
            problem = compare(expected, answer_key(json.loads(body)))
        except (ValueError, KeyError, TypeError, OSError) as exc:  # not JSON, no label, ...
            problem = f"unreadable answer: {type(exc).__name__}: {exc}"[:200]
        if problem:
            mismatches.append(problem)
    return {
        "checked": len(bodies),
        "mismatches": len(mismatches),
        "examples": sorted(set(mismatches))[:3],
    }


def merge(checks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Several levels' or repeats' checks as one (a row's)."""
    return {
        "checked": sum(c["checked"] for c in checks),
        "mismatches": sum(c["mismatches"] for c in checks),
        "examples": sorted({e for c in checks for e in c.get("examples", [])})[:3],
    }


def passed(summary: Mapping[str, Any] | None) -> bool:
    """A row's answers pass when some were checked and none differed."""
    return bool(summary) and summary["checked"] > 0 and summary["mismatches"] == 0
