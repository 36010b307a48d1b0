"""Shared helpers for the handler unit tests (no tests here; imported by test_handlers_*.py).

The context is TorchServe's REAL `ts.context.Context` with one `RequestProcessor` per request
(what the worker builds), and the metrics cache is TorchServe's real `MetricsCacheYamlImpl`
loaded from the repo's metrics.yaml. `run_batch` also pushes the replies through TorchServe's
own response encoder, so a reply that TorchServe could not send fails the test.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from ts.context import Context, RequestProcessor
from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl
from ts.protocol.otf_message_handler import create_predict_response

from model_src import InputSpec, ModelCard, build_model, save_checkpoint

REPO = Path(__file__).resolve().parents[2]
METRICS_YAML = REPO / "metrics.yaml"
DIGITS = [str(i) for i in range(10)]
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)


def make_classifier(
    folder: Path,
    *,
    name: str = "digit_classifier",
    channels: int = 1,
    size: tuple[int, int] = (28, 28),
    classes: list[str] | None = None,
    resize: str = "stretch",
    seed: int = 0,
    model: torch.nn.Module | None = None,
    hidden_units: int = 4,
) -> Path:
    """A tiny TinyVGG checkpoint in `folder/model.pt` (random weights unless `model`)."""
    classes = classes or DIGITS
    kwargs = {
        "in_channels": channels,
        "num_classes": len(classes),
        "input_size": list(size),
        "hidden_units": hidden_units,
    }
    if model is None:
        torch.manual_seed(seed)
        model = build_model("tinyvgg", **kwargs)
    mean = MNIST_MEAN * channels
    std = MNIST_STD * channels
    card = ModelCard(
        name,
        "classification",
        "tinyvgg",
        kwargs,
        classes,
        InputSpec(size, channels, mean, std, resize),
    )
    return save_checkpoint(folder / "model.pt", model, card)


def make_segmenter(
    folder: Path,
    *,
    name: str = "digit_segmenter",
    classes: list[str] | None = None,
    binary: bool = False,
    size: tuple[int, int] = (64, 64),
    resize: str = "stretch",
    seed: int = 0,
    model: torch.nn.Module | None = None,
    base_width: int = 4,
) -> Path:
    """A tiny U-Net checkpoint (depth 2). Binary: 2 classes, one logit."""
    classes = classes or (["background", "object"] if binary else ["background", *DIGITS])
    kwargs = {
        "in_channels": 1,
        "num_classes": 1 if binary else len(classes),
        "depth": 2,
        "base_width": base_width,
    }
    if model is None:
        torch.manual_seed(seed)
        model = build_model("unet", **kwargs)
    card = ModelCard(
        name,
        "segmentation",
        "unet",
        kwargs,
        classes,
        InputSpec(size, 1, MNIST_MEAN, MNIST_STD, resize),
    )
    return save_checkpoint(folder / "model.pt", model, card)


BLOB_CLASSES = ["background", "bright", "mid"]
BLOB_VALUES = {1: 230, 2: 140}  # pixel value of each class's blobs; background is dark noise


def blob_batch(rng: np.random.Generator, count: int = 8, size: int = 64):
    """Synthetic segmentation data: dark noise with bright (class 1) and mid (class 2)
    rectangles. Returns normalised inputs `N x 1 x H x W` and masks `N x H x W`."""
    pixels = rng.integers(0, 40, (count, size, size)).astype(np.float32)
    masks = np.zeros((count, size, size), np.int64)
    for i in range(count):
        for _ in range(rng.integers(1, 4)):
            cls = int(rng.integers(1, 3))
            h, w = rng.integers(6, 20, 2)
            r, c = rng.integers(0, size - 20, 2)
            pixels[i, r : r + h, c : c + w] = BLOB_VALUES[cls]
            masks[i, r : r + h, c : c + w] = cls
    inputs = (torch.from_numpy(pixels / 255.0)[:, None] - MNIST_MEAN[0]) / MNIST_STD[0]
    return inputs, torch.from_numpy(masks)


BLOB_WIDTH = 8  # U-Net base width of the blob models (width 4 collapses a class)


def train_blob_segmenter(steps: int = 70, seed: int = 0) -> torch.nn.Module:
    """A small U-Net (depth 2, width 8) trained on `blob_batch` data: ~2 s on one thread and
    ~99% pixel accuracy, so its masks have real regions and edges to test against."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_model(
        "unet", in_channels=1, num_classes=len(BLOB_CLASSES), depth=2, base_width=BLOB_WIDTH
    )
    optimizer = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(steps):
        inputs, masks = blob_batch(rng)
        loss = torch.nn.functional.cross_entropy(model(inputs), masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def binary_from(model: torch.nn.Module) -> torch.nn.Module:
    """A one-logit U-Net from a 3-class one: logit = (bright - background) + (mid - background)."""
    binary = build_model("unet", in_channels=1, num_classes=1, depth=2, base_width=BLOB_WIDTH)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("outc.")}
    weight, bias = model.outc.weight.detach(), model.outc.bias.detach()
    state["outc.weight"] = (weight[1] + weight[2] - 2 * weight[0])[None]
    state["outc.bias"] = (bias[1] + bias[2] - 2 * bias[0])[None]
    binary.load_state_dict(state)
    return binary.eval()


def make_context(
    model_dir: Path,
    name: str,
    *,
    model_config: dict[str, Any] | None = None,
    batch_size: int = 4,
) -> Context:
    """TorchServe's worker context as `ts.service.Service` builds it, with the real metrics
    cache from metrics.yaml."""
    cache = MetricsCacheYamlImpl(config_file_path=str(METRICS_YAML))
    cache.initialize_cache()
    cache.model_name = name
    manifest = {"model": {"modelName": name, "modelVersion": "1.0", "serializedFile": "model.pt"}}
    return Context(
        name,
        str(model_dir),
        manifest,
        batch_size,
        None,
        "0.12.0",
        True,
        cache,
        model_config or {},
    )


def start_batch(context: Context, headers: list[dict[str, str]]) -> None:
    """What `Service.predict` does before calling the handler: per-request headers and ids."""
    context.request_processor = [RequestProcessor(dict(h)) for h in headers]
    context.request_ids = {i: f"req-{i}" for i in range(len(headers))}
    context.metrics.request_ids = context.request_ids


def run_batch(
    handler: Any,
    context: Context,
    rows: list[dict[str, Any]],
    explain: list[bool] | None = None,
) -> tuple[list[Any], list[int]]:
    """One batch through `handler.handle`: (JSON-decoded replies, HTTP statuses)."""
    explain = explain or [False] * len(rows)
    start_batch(context, [{"explain": "True"} if e else {} for e in explain])
    replies = handler.handle(rows, context)
    assert isinstance(replies, list) and len(replies) == len(rows)
    # TorchServe's own encoder (json.dumps for dicts): fails on anything it cannot send.
    create_predict_response(replies, context.request_ids, "Prediction success", 200, context)
    statuses = [context.get_response_status(i)[0] for i in range(len(rows))]
    decoded = [json.loads(json.dumps(r)) for r in replies]
    return decoded, statuses


def encode(image: Image.Image, fmt: str = "PNG", **save: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode_png(text: str) -> Image.Image:
    """A base64 PNG from a response; checks it really is a PNG."""
    raw = base64.b64decode(text, validate=True)
    assert raw.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(raw))
    image.load()
    return image


def gray_image(width: int = 20, height: int = 30, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8))


def rgb_image(width: int = 24, height: int = 16, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def metric_lines(caplog: Any) -> list[str]:
    """The `[METRICS]...` lines TorchServe's metrics cache logged (what the frontend parses)."""
    return [
        r.getMessage()[len("[METRICS]") :]
        for r in caplog.records
        if r.getMessage().startswith("[METRICS]") and r.levelno == logging.INFO
    ]
