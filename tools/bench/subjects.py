"""What is benchmarked: the models, their checkpoints, the request each target sends, and
the cvserve handlers loaded in-process (for the limit, Flask and LitServe).

Every server in the comparison runs the SAME handler code (`handlers.classifier` /
`handlers.segmenter`: request parsing, `model_src`'s eval transform, forward, encoding) with
the SAME model-config as the TorchServe archive it is compared with (`archive_config`: the
`handler:` section's torch threads and torch.compile, the batch size the forward is compiled
for), so the differences measured are the serving layers' alone. In-process the handler gets
a `BenchContext`, a minimal stand-in for TorchServe's context carrying that model-config.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from handlers.contract import (
    CLASSIFIER,
    DEFAULT_MODELS,
    EXPLANATION_METHODS,
    PIPELINE,
    SEGMENTER,
)
from model_src import InputSpec, ModelCard, build_model, save_checkpoint

log = logging.getLogger("tools.bench.subjects")

REPO_ROOT = Path(__file__).resolve().parents[2]
DIGIT_MODELS = DEFAULT_MODELS
HEAVY_CLASSIFIER = "bench_resnet18"
HEAVY_SEGMENTER = "bench_unet256"
HANDLER_CLASSES = {
    "classification": "handlers.classifier:ClassifierHandler",
    "segmentation": "handlers.segmenter:SegmenterHandler",
}
EXPLAIN_METHODS = EXPLANATION_METHODS
MODES = {
    "eager": "eager",
    "compiled": "compile",
    "onnxruntime": "onnxruntime",
    "openvino": "openvino",
}
"""The bench's names of the prediction forwards -> the archive's `--backend` values."""
EXPORTED_MODES = ("onnxruntime", "openvino")


def mode_of(model_config: Mapping[str, Any]) -> str:
    """The forward a model-config asks for, as a bench mode (`compiled` for torch.compile)."""
    handler = model_config.get("handler") or {}
    backend = handler.get("backend", "compile" if handler.get("compile") else "eager")
    return {b: m for m, b in MODES.items()}.get(backend, str(backend))


def runtime_mode(runtimes: Sequence[Mapping[str, Any]]) -> str | None:
    """The forward the serving processes really ran, read back (`inductor` is `compiled`;
    `mixed` when they differ, None when none was read back)."""
    if not runtimes:
        return None
    modes = {
        "compiled" if r.get("backend") == "inductor" else str(r.get("backend")) for r in runtimes
    }
    return modes.pop() if len(modes) == 1 else "mixed"


def with_mode(model_config: Mapping[str, Any], mode: str) -> dict[str, Any]:
    """`model_config` with the prediction forward `mode` (one of MODES)."""
    handler = {k: v for k, v in (model_config.get("handler") or {}).items() if k != "compile"}
    handler["backend"] = MODES[mode]
    return {**model_config, "handler": handler}


def exported_checkpoint(checkpoint: Path, name: str, mode: str, workdir: Path) -> Path:
    """A copy of `checkpoint` in `workdir/<name>-<mode>/` with its export for `mode` (as
    `tools.archive --backend` builds it, parity checked), for in-process handlers and peers;
    `checkpoint` itself for the PyTorch modes."""
    if mode not in EXPORTED_MODES:
        return checkpoint
    import shutil

    from model_src import load_checkpoint
    from tools.export import export_for_backend

    folder = workdir / f"{name}-{mode}"
    copy = folder / "model.pt"
    if not copy.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        model, card = load_checkpoint(checkpoint)
        export_for_backend(model, card, mode, folder)
        shutil.copyfile(checkpoint, copy)
    return copy


@dataclass(frozen=True)
class Target:
    """One thing to load-test: a route on a model (or the workflow) with one fixed request.

    `peers` says whether Flask / LitServe / default-TorchServe run it too (the prediction
    routes of the four models; explanations and the workflow are TorchServe-only features).
    """

    name: str
    model: str
    route: str  # "predictions" | "explanations" | "wfpredict"
    payload: bytes
    peers: bool = field(default=False, kw_only=True)
    headers: Mapping[str, str] = field(default_factory=dict, kw_only=True)

    def path(self) -> str:
        return f"/{self.route}/{self.model}"


class BenchContext:
    """The parts of TorchServe's `Context` the cvserve handlers use, for in-process calls.

    `explain` makes every request of a batch an `/explanations` request (TorchServe's
    frontend marks those with the `explain: True` header). `model_config` is the archive's
    `model-config.yaml` as a dict (default: one worker, the handler's own thread rule).
    """

    def __init__(
        self,
        model_dir: Path,
        name: str,
        *,
        model_config: Mapping[str, Any] | None = None,
        explain: bool = False,
    ):
        self.system_properties = {"model_dir": str(model_dir), "gpu_id": None}
        self.manifest = {"model": {"serializedFile": "model.pt", "modelName": name}}
        self.model_yaml_config: dict[str, Any] = dict(model_config or {"maxWorkers": 1})
        self.metrics = None
        self.explain = explain
        self.statuses: dict[int, int] = {}

    def get_request_header(self, idx: int, name: str) -> str | None:
        return "True" if name == "explain" and self.explain else None

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self.statuses[idx] = code


def load_handler(checkpoint: Path, model_config: Mapping[str, Any] | None = None) -> Any:
    """A cvserve handler for `checkpoint`, initialised in this process with `model_config`
    (an archive's, see `archive_config`; it sets torch's threads and compiling)."""
    import importlib

    from model_src import read_checkpoint

    card, _ = read_checkpoint(checkpoint)
    module_name, class_name = HANDLER_CLASSES[card.task].split(":")
    handler = getattr(importlib.import_module(module_name), class_name)()
    handler.initialize(BenchContext(checkpoint.parent, card.name, model_config=model_config))
    return handler


def archive_config(checkpoint: Path, **overrides: Any) -> dict[str, Any]:
    """The `model-config.yaml` that `tools.archive` writes for `checkpoint` on this machine
    (with `archive_checkpoint`'s overrides), threads always written out: what the peers and
    the in-process limit are given so they run the archive's forward."""
    from handlers.base import available_cores, threads_per_worker
    from model_src import read_checkpoint
    from tools.archive import Machine, choose_serving_config, count_parameters

    card, state = read_checkpoint(checkpoint)
    params = count_parameters(state)
    config = choose_serving_config(card, params, Machine.detect(), **overrides)
    yaml_dict = config.to_yaml_dict()
    handler = dict(yaml_dict.get("handler") or {})
    threads = threads_per_worker(yaml_dict, available_cores(), num_params=params)
    handler.setdefault("torch_threads", threads or 1)  # what the archive's workers choose here
    return {**yaml_dict, "handler": handler}


def with_workers(model_config: Mapping[str, Any], workers: int, threads: int) -> dict[str, Any]:
    """`model_config` for a server of `workers` processes x `threads` torch threads each."""
    handler = {**(model_config.get("handler") or {}), "torch_threads": threads}
    return {**model_config, "minWorkers": workers, "maxWorkers": workers, "handler": handler}


def budget(model_config: Mapping[str, Any]) -> tuple[int, int]:
    """(workers, torch threads per worker) of an `archive_config` model-config."""
    workers = int(model_config.get("maxWorkers") or model_config.get("minWorkers") or 1)
    return workers, int((model_config.get("handler") or {}).get("torch_threads") or 1)


def image_payload(image: Image.Image, **options: Any) -> bytes:
    """The JSON body every server is sent: `{"image": <base64 PNG>, ...options}` (docs/api.md).

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

    if name == CLASSIFIER:
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
        CLASSIFIER: digit,
        SEGMENTER: scene,
        # Issue 15's big page: 1024x1024, 100 held-out digits of 28 px on black.
        "digit_page": issue_page(0, len(ISSUE_ROWS) - 1, 0).image,
        HEAVY_CLASSIFIER: rgb(224),
        HEAVY_SEGMENTER: rgb(256),
    }


def build_targets(images: Mapping[str, Image.Image]) -> list[Target]:
    """Every target of the full run, in report order."""
    targets = [
        Target(
            CLASSIFIER,
            CLASSIFIER,
            "predictions",
            image_payload(images[CLASSIFIER]),
            peers=True,
        ),
        Target(
            SEGMENTER,
            SEGMENTER,
            "predictions",
            image_payload(images[SEGMENTER]),
            peers=True,
        ),
        Target(
            PIPELINE,
            PIPELINE,
            "wfpredict",
            image_payload(images[SEGMENTER]),
        ),
        # The pipeline on a 1024 px page of 100 digits: its p50 at concurrency 1 is the
        # page latency of issue 15 (segmenter at the page's scale, in tiles; 100 cuts).
        Target(
            "digit_pipeline_page",
            "digit_pipeline",
            "wfpredict",
            image_payload(images["digit_page"]),
        ),
    ]
    for method in EXPLAIN_METHODS:
        targets.append(
            Target(
                f"explain_{method}",
                CLASSIFIER,
                "explanations",
                image_payload(images[CLASSIFIER], method=method),
            )
        )
    targets += [
        Target(
            HEAVY_CLASSIFIER,
            HEAVY_CLASSIFIER,
            "predictions",
            image_payload(images[HEAVY_CLASSIFIER]),
            peers=True,
        ),
        Target(
            HEAVY_SEGMENTER,
            HEAVY_SEGMENTER,
            "predictions",
            image_payload(images[HEAVY_SEGMENTER]),
            peers=True,
        ),
    ]
    return targets


# ---- what ran -----------------------------------------------------------------------------


def write_runtime(handler: Any, directory: str | Path | None) -> None:
    """Record what this serving process runs (`ImageHandler.runtime()`: torch threads,
    compiled or not, read back here) as `<directory>/<pid>.json`, for the report's row."""
    if not directory:
        return
    info = handler.runtime()
    path = Path(directory) / f"{info['pid']}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info), encoding="utf-8")
    tmp.replace(path)


def read_runtimes(directory: Path) -> list[dict[str, Any]]:
    """Every serving process's `write_runtime` record, by pid."""
    records = [json.loads(p.read_text("utf-8")) for p in sorted(directory.glob("*.json"))]
    return sorted(records, key=lambda r: r.get("pid", 0))


def describe_runtime(runtimes: list[Mapping[str, Any]]) -> str:
    """`2 proc x 1 thread, eager` from the processes' records (`?` when none came back)."""
    if not runtimes:
        return "? (not read back)"
    threads = sorted({r["torch_threads"] for r in runtimes})
    backends = sorted({str(r["backend"]) for r in runtimes})
    return f"{len(runtimes)} proc x {'/'.join(map(str, threads))} thread(s), {'/'.join(backends)}"
