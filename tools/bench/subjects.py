"""What is benchmarked: the models, their checkpoints, the request each target sends, and
the cvserve handlers loaded in-process (for the limit, Flask and LitServe).

Every server in the comparison runs the SAME handler code (`handlers.classifier` /
`handlers.segmenter`: request parsing, `model_src`'s eval transform, forward, encoding), so
the differences measured are the serving layers' alone. In-process the handler gets a
`BenchContext`, a minimal stand-in for TorchServe's context.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from model_src import InputSpec, ModelCard, build_model, save_checkpoint

log = logging.getLogger("tools.bench.subjects")

REPO_ROOT = Path(__file__).resolve().parents[2]
DIGIT_MODELS = ("digit_classifier", "digit_segmenter")
HEAVY_CLASSIFIER = "bench_resnet18"
HEAVY_SEGMENTER = "bench_unet256"
HANDLER_CLASSES = {
    "classification": "handlers.classifier:ClassifierHandler",
    "segmentation": "handlers.segmenter:SegmenterHandler",
}
EXPLAIN_METHODS = ("integrated_gradients", "saliency", "gradcam")


@dataclass(frozen=True)
class Target:
    """One thing to load-test: a route on a model (or the workflow) with one fixed request.

    `peers` says whether Flask / LitServe / default-TorchServe run it too (the prediction
    routes of the four models; explanations and the workflow are TorchServe-only features).
    `requests` is the full run's request count per concurrency level, chosen from the
    target's cost so the whole default run fits in ~15 minutes on 2 cores.
    """

    name: str
    model: str
    route: str  # "predictions" | "explanations" | "wfpredict"
    payload: bytes
    requests: int
    peers: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)

    def path(self) -> str:
        return f"/{self.route}/{self.model}"


class BenchContext:
    """The parts of TorchServe's `Context` the cvserve handlers use, for in-process calls.

    `explain` makes every request of a batch an `/explanations` request (TorchServe's
    frontend marks those with the `explain: True` header).
    """

    def __init__(self, model_dir: Path, name: str, *, workers: int = 1, explain: bool = False):
        self.system_properties = {"model_dir": str(model_dir), "gpu_id": None}
        self.manifest = {"model": {"serializedFile": "model.pt", "modelName": name}}
        self.model_yaml_config: dict[str, Any] = {"maxWorkers": workers}
        self.metrics = None
        self.explain = explain
        self.statuses: dict[int, int] = {}

    def get_request_header(self, idx: int, name: str) -> str | None:
        return "True" if name == "explain" and self.explain else None

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self.statuses[idx] = code


def load_handler(checkpoint: Path, *, workers: int = 1) -> Any:
    """A cvserve handler for `checkpoint`, initialised in this process.

    `workers` is what the handler divides the cores by to choose torch's thread count, as in
    TorchServe (1 = all cores, what a single-process server would use).
    """
    import importlib

    from model_src import read_checkpoint

    card, _ = read_checkpoint(checkpoint)
    module_name, class_name = HANDLER_CLASSES[card.task].split(":")
    handler = getattr(importlib.import_module(module_name), class_name)()
    handler.initialize(BenchContext(checkpoint.parent, card.name, workers=workers))
    return handler


def image_payload(image: Image.Image, **options: Any) -> bytes:
    """The JSON body every server is sent: `{"image": <base64 PNG>, ...options}` (API.md).

    JSON rather than a raw body because LitServe decodes request bodies as JSON; using the
    same bytes everywhere keeps the comparison fair (every server pays the base64 decode).
    """
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    body = {"image": base64.b64encode(buffer.getvalue()).decode("ascii"), **options}
    return json.dumps(body).encode()


def payload_row(payload: bytes) -> dict[str, Any]:
    """The row TorchServe hands a handler for a JSON request (the body already decoded)."""
    return {"body": json.loads(payload)}


# ---- checkpoints --------------------------------------------------------------------------


def _digit_card(name: str, workdir: Path) -> ModelCard:
    """The default model's card (trained checkpoint's if present, else the config's shape)."""
    from training.data import build_splits

    if name == "digit_classifier":
        splits = build_splits("digits")
        spec = InputSpec(
            size=splits.size, channels=splits.channels, mean=splits.mean, std=splits.std
        )
        kwargs = {
            "in_channels": splits.channels,
            "num_classes": len(splits.classes),
            "input_size": list(splits.size),
            "hidden_units": 16,
        }
        return ModelCard(name, "classification", "tinyvgg", kwargs, splits.classes, spec)
    splits = build_splits("digit_scenes")
    spec = InputSpec(size=splits.size, channels=splits.channels, mean=splits.mean, std=splits.std)
    kwargs = {
        "in_channels": splits.channels,
        "num_classes": len(splits.classes),
        "depth": 3,
        "base_width": 16,
    }
    return ModelCard(name, "segmentation", "unet", kwargs, splits.classes, spec)


def _heavy_card(name: str) -> ModelCard:
    """The compute-heavy pair standing for real deployments (random weights: speed only)."""
    spec_224 = InputSpec(size=(224, 224), channels=3, mean=(0.5,) * 3, std=(0.25,) * 3)
    if name == HEAVY_CLASSIFIER:
        classes = [f"class_{i}" for i in range(10)]
        kwargs = {"model_name": "resnet18", "in_channels": 3, "num_classes": len(classes)}
        return ModelCard(name, "classification", "timm", kwargs, classes, spec_224)
    spec_256 = InputSpec(size=(256, 256), channels=3, mean=(0.5,) * 3, std=(0.25,) * 3)
    classes = ["background", "object_a", "object_b"]
    kwargs = {"in_channels": 3, "num_classes": len(classes), "depth": 4, "base_width": 32}
    return ModelCard(name, "segmentation", "unet", kwargs, classes, spec_256)


def prepare_checkpoints(workdir: Path) -> dict[str, Path]:
    """Checkpoint of every benchmarked model, and whether it is trained (logged).

    The digit models are the trained defaults in `checkpoints/` when present; otherwise
    random-weight models of the same architecture are written to `workdir` (speed does not
    depend on the weights, but a random segmenter finds random objects, which changes the
    pipeline's work: the report says which was used).
    """
    torch.manual_seed(0)
    out: dict[str, Path] = {}
    for name in DIGIT_MODELS:
        trained = REPO_ROOT / "checkpoints" / name / "1.0" / "model.pt"
        if trained.is_file():
            out[name] = trained
            continue
        card = _digit_card(name, workdir)
        out[name] = save_checkpoint(
            workdir / name / "model.pt", build_model(card.arch, **card.arch_kwargs), card
        )
        log.warning("%s: no trained checkpoint, benchmarking random weights", name)
    for name in (HEAVY_CLASSIFIER, HEAVY_SEGMENTER):
        card = _heavy_card(name)
        out[name] = save_checkpoint(
            workdir / name / "model.pt", build_model(card.arch, **card.arch_kwargs), card
        )
    return out


def trained(checkpoints: Mapping[str, Path]) -> dict[str, bool]:
    return {name: REPO_ROOT / "checkpoints" in path.parents for name, path in checkpoints.items()}


# ---- requests -----------------------------------------------------------------------------


def sample_images() -> dict[str, Image.Image]:
    """One realistic input per model, at the model's own input size.

    Digit inputs come from the synthetic digit datasets (no download); the heavy models get a
    deterministic RGB gradient image (their weights are random anyway).
    """
    from training.data import build_splits

    digit = build_splits("digits").test[0][0]
    scene = build_splits("digit_scenes").test[0][0]
    gen = torch.Generator().manual_seed(0)

    def rgb(size: int) -> Image.Image:
        noise = torch.randint(0, 256, (size, size, 3), generator=gen, dtype=torch.uint8)
        return Image.fromarray(noise.numpy(), "RGB")

    from tools.eval_pipeline import ISSUE_ROWS, issue_page

    return {
        "digit_classifier": digit,
        "digit_segmenter": scene,
        # Issue 15's big page: 1024x1024, 100 held-out digits of 28 px on black.
        "digit_page": issue_page(0, len(ISSUE_ROWS) - 1, 0).image,
        HEAVY_CLASSIFIER: rgb(224),
        HEAVY_SEGMENTER: rgb(256),
    }


def build_targets(images: Mapping[str, Image.Image]) -> list[Target]:
    """Every target of the full run, in report order."""
    targets = [
        Target(
            "digit_classifier",
            "digit_classifier",
            "predictions",
            image_payload(images["digit_classifier"]),
            400,
            peers=True,
        ),
        Target(
            "digit_segmenter",
            "digit_segmenter",
            "predictions",
            image_payload(images["digit_segmenter"]),
            240,
            peers=True,
        ),
        Target(
            "digit_pipeline",
            "digit_pipeline",
            "wfpredict",
            image_payload(images["digit_segmenter"]),
            60,
        ),
        # The pipeline on a 1024 px page of 100 digits: its p50 at concurrency 1 is the
        # page latency of issue 15 (segmenter at the page's scale, in tiles; 100 cuts).
        Target(
            "digit_pipeline_page",
            "digit_pipeline",
            "wfpredict",
            image_payload(images["digit_page"]),
            12,
        ),
    ]
    explain_counts = {"integrated_gradients": 60, "saliency": 150, "gradcam": 150}
    for method in EXPLAIN_METHODS:
        targets.append(
            Target(
                f"explain_{method}",
                "digit_classifier",
                "explanations",
                image_payload(images["digit_classifier"], method=method),
                explain_counts[method],
            )
        )
    targets += [
        Target(
            HEAVY_CLASSIFIER,
            HEAVY_CLASSIFIER,
            "predictions",
            image_payload(images[HEAVY_CLASSIFIER]),
            64,
            peers=True,
        ),
        Target(
            HEAVY_SEGMENTER,
            HEAVY_SEGMENTER,
            "predictions",
            image_payload(images[HEAVY_SEGMENTER]),
            32,
            peers=True,
        ),
    ]
    return targets
