"""The prediction forward's backend: eager PyTorch, torch.compile, ONNX Runtime or OpenVINO.

An archive names its backend in the model-config (`handler: {backend: onnxruntime}`, written
by `python -m tools.archive --backend ...`). The exported backends run `model.onnx`, which
`tools.export` wrote at archive time next to `model.pt` after checking it against the eager
model; `export.json` beside it says which input shapes the export takes. Only the prediction
forward changes: pre- and post-processing are the handler's, and explanations keep the eager
model because Captum needs autograd and real modules.

Threads come from the serving host: the runtimes get the handler's torch thread count (set
just before from the cores and the model's workers) as their intra-op threads, one stream,
and OpenVINO runs in f32 (its CPU default on bf16-capable processors is bf16, which would
change the answers that the archive's parity check accepted).

A backend that cannot load (its package missing, a broken file) serves the eager model and
says why in `runtime()`, like a failed compile. An input shape the export does not take (a
segmenter's tile of another size, when the model's size is fixed) runs on the eager model
too, counted in `runtime()["eager_fallbacks"]`.

GPU: on a CUDA device only ONNX Runtime's CUDA provider is considered; at load it is timed
against the eager model on the card's input at the archive's batch size, and the faster one
serves (both timings in `runtime()`). Without that provider (the pinned `onnxruntime` is the
CPU build) the eager model serves. OpenVINO is CPU-only here. Unmeasured until a GPU host
runs it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from handlers import signal_stack
from handlers.compiled import compile_network

logger = logging.getLogger(__name__)

BACKENDS = ("eager", "compile", "onnxruntime", "openvino")
"""Valid values of the model-config's `handler: {backend: ...}` and `--backend`."""
EXPORTED_BACKENDS = ("onnxruntime", "openvino")
"""The backends that run the exported `model.onnx`."""
ONNX_FILE = "model.onnx"
EXPORT_INFO_FILE = "export.json"
GPU_TIMING_CALLS = 5


@dataclass(frozen=True)
class ShapeRule:
    """The input shapes (without the batch axis) an export takes: `channels` and either the
    fixed `size` (height, width) or, with `size` None, any height and width that are
    multiples of `multiple` (a U-Net exported with dynamic spatial axes)."""

    channels: int
    size: tuple[int, int] | None
    multiple: int = 1

    def accepts(self, shape: Sequence[int]) -> bool:
        if len(shape) != 4 or shape[1] != self.channels:
            return False
        if self.size is not None:
            return tuple(shape[2:]) == tuple(self.size)
        return shape[2] % self.multiple == 0 and shape[3] % self.multiple == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "channels": self.channels,
            "size": list(self.size) if self.size is not None else None,
            "multiple": self.multiple,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ShapeRule:
        size = d.get("size")
        return cls(
            int(d["channels"]),
            (int(size[0]), int(size[1])) if size is not None else None,
            int(d.get("multiple", 1)),
        )


Runner = Callable[[np.ndarray], np.ndarray]


def onnxruntime_runner(path: Path, threads: int, device: torch.device) -> tuple[Runner, str]:
    """An ONNX Runtime session on `path` (`threads` intra-op threads); its provider's name.
    On a CUDA device the CUDA provider is required (a RuntimeError without it)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers: list[Any] = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeError(
                "ONNX Runtime has no CUDA provider here (the pinned onnxruntime is the CPU "
                "build; onnxruntime-gpu has it)"
            )
        providers = [("CUDAExecutionProvider", {"device_id": device.index or 0})]
    session = ort.InferenceSession(str(path), options, providers=providers)
    name = session.get_inputs()[0].name

    def run(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {name: batch})[0]

    return run, session.get_providers()[0]


def openvino_runner(path: Path, threads: int, device: torch.device) -> tuple[Runner, str]:
    """An OpenVINO CPU model compiled from `path` with `threads` inference threads, one
    stream, f32 precision (see the module docstring)."""
    if device.type != "cpu":
        raise RuntimeError("the openvino backend runs on the CPU only in cvserve")
    import openvino as ov

    settings = {
        "INFERENCE_NUM_THREADS": threads,
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32",
    }
    with signal_stack.kept():  # see handlers.signal_stack: a crash on a later signal otherwise
        compiled = ov.Core().compile_model(str(path), "CPU", settings)
    request = compiled.create_infer_request()

    def run(batch: np.ndarray) -> np.ndarray:
        return np.array(request.infer([batch])[0], copy=True)

    return run, "CPU"


RUNNERS: dict[str, Callable[[Path, int, torch.device], tuple[Runner, str]]] = {
    "onnxruntime": onnxruntime_runner,
    "openvino": openvino_runner,
}


class ExportedForward:
    """The prediction forward on an exported model: `N x C x H x W` tensor in, tensor out on
    the input's device. Shapes the export does not take run on `eager` (counted)."""

    def __init__(
        self, backend: str, run: Runner, provider: str, rule: ShapeRule, eager: nn.Module
    ) -> None:
        self.backend, self.run, self.provider, self.rule, self.eager = (
            backend,
            run,
            provider,
            rule,
            eager,
        )
        self.eager_fallbacks = 0

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if not self.rule.accepts(batch.shape):
            self.eager_fallbacks += 1
            return self.eager(batch)
        array = batch.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.run(array)).to(batch.device)

    def runtime(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "provider": self.provider,
            "input_shapes": self.rule.to_dict(),
            "eager_fallbacks": self.eager_fallbacks,
        }


def read_export_info(model_dir: Path) -> dict[str, Any]:
    """`export.json` of an archive (what `tools.export` wrote), or a clear error."""
    path = model_dir / EXPORT_INFO_FILE
    if not path.is_file() or not (model_dir / ONNX_FILE).is_file():
        raise FileNotFoundError(
            f"{ONNX_FILE} or {EXPORT_INFO_FILE} is missing from {model_dir}; rebuild the "
            "archive with `python -m tools.archive --backend ...`"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def load_exported(
    backend: str, model_dir: Path, eager: nn.Module, threads: int, device: torch.device
) -> ExportedForward:
    """The exported forward of the archive in `model_dir` on `backend` (errors propagate)."""
    info = read_export_info(model_dir)
    run, provider = RUNNERS[backend](model_dir / ONNX_FILE, threads, device)
    return ExportedForward(backend, run, provider, ShapeRule.from_dict(info["input"]), eager)


def _seconds_per_call(forward: Callable[[torch.Tensor], Any], example: torch.Tensor) -> float:
    with torch.inference_mode():
        forward(example)  # warm-up: allocations, kernel selection
        if example.is_cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(GPU_TIMING_CALLS):
            forward(example)
        if example.is_cuda:
            torch.cuda.synchronize()
    return (time.perf_counter() - started) / GPU_TIMING_CALLS


@dataclass
class Selected:
    """The prediction forward chosen at load, and what `runtime()` reports about it."""

    network: Callable[[torch.Tensor], torch.Tensor]
    requested: str
    note: str | None = None
    timings_ms: dict[str, float] | None = None


def select_forward(
    backend: str,
    model: nn.Module,
    model_dir: Path,
    example: torch.Tensor,
    batch_sizes: Sequence[int],
    device: torch.device,
) -> Selected:
    """The prediction forward for `backend` (one of BACKENDS); the eager `model` with a note
    when the backend cannot serve here. `example` is one input (`C x H x W`) on `device`."""
    if backend not in BACKENDS:
        raise ValueError(f"handler backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "eager":
        return Selected(model, backend)
    if backend == "compile":
        return Selected(compile_network(model, example, batch_sizes), backend)
    threads = torch.get_num_threads()
    try:
        exported = load_exported(backend, model_dir, model, threads, device)
    except Exception as exc:  # a missing package, a broken file, no CUDA provider
        logger.warning(
            "the %s backend cannot serve here, serving the eager model: %s", backend, exc
        )
        return Selected(model, backend, note=f"{type(exc).__name__}: {exc}")
    if device.type != "cuda":
        logger.info("serving %s through %s with %d threads", model_dir, backend, threads)
        return Selected(exported, backend)
    batch = example.unsqueeze(0).expand(max(batch_sizes), *example.shape).contiguous()
    timings = {
        "eager": 1000 * _seconds_per_call(model, batch),
        backend: 1000 * _seconds_per_call(exported, batch),
    }
    faster = exported if timings[backend] < timings["eager"] else model
    note = None if faster is exported else f"eager measured faster on {device}"
    return Selected(faster, backend, note=note, timings_ms=timings)


def runtime_of(
    network: Callable[[torch.Tensor], torch.Tensor], model: nn.Module, selected: Selected | None
) -> dict[str, Any]:
    """What `network` (the forward that runs) is, read back from the object itself rather
    than from the settings; `selected` adds what was asked for and why it was not used."""
    if isinstance(network, ExportedForward):
        info = network.runtime()
    elif network is model:
        info = {"backend": "eager"}
    else:
        info = {"backend": "inductor"}
    info["compiled"] = info["backend"] == "inductor"
    if selected is None:
        return info
    info["requested_backend"] = selected.requested
    if selected.note:
        info["backend_note"] = selected.note
    if selected.timings_ms:
        info["timings_ms"] = {k: round(v, 3) for k, v in selected.timings_ms.items()}
    return info
