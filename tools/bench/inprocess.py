"""The limit: the same handler work called in-process, with no server in between.

`handler_limit` times `handler.handle` (JSON decode, request parsing, eval transform,
forward, encoding: exactly what a TorchServe worker runs per batch) at several batch sizes;
the best images/s is the ceiling any server of this handler can reach on this machine.
`forward_limit` times the bare forward alone (`handler.network`: the compiled forward when
the archive compiles, as served), to show how much of the limit is the network itself.
`pipeline_limit` chains the workflow's own node functions and both handlers. Each point is
timed for a number of seconds, not a number of calls, like the served levels.
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from tools.bench.stats import percentile
from tools.bench.subjects import REPO_ROOT, BenchContext, payload_row, runtime_mode

PIPELINE_FILE = REPO_ROOT / "workflows" / "digit_pipeline" / "pipeline.py"


@dataclass
class LimitPoint:
    """One batch size's in-process throughput and per-call latency."""

    batch_size: int
    threads: int  # torch.get_num_threads() while it ran
    compiled: bool
    images: int
    wall_s: float
    images_per_s: float
    p50_ms: float  # per call (one batch)
    backend: str = "eager"  # the forward that ran, read back (subjects.runtime_mode)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def time_calls(
    call: Callable[[], Any],
    batch_size: int,
    seconds: float,
    *,
    compiled: bool,
    warmup: int = 2,
    backend: str | None = None,
) -> LimitPoint:
    """Run `call` (processing `batch_size` images) for at least `seconds` (one call at least)."""
    for _ in range(warmup):
        call()
    durations = []
    start = time.perf_counter()
    while not durations or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        call()
        durations.append(time.perf_counter() - t0)
    wall = time.perf_counter() - start
    done = len(durations) * batch_size
    threads = torch.get_num_threads()
    p50 = percentile(durations, 50) * 1000
    backend = backend or ("compiled" if compiled else "eager")
    return LimitPoint(batch_size, threads, compiled, done, wall, done / wall, p50, backend)


def is_compiled(handler: Any) -> bool:
    """Whether the handler's prediction forward is the compiled one (read back, not assumed:
    a failed compile serves the eager model)."""
    return bool(handler.runtime()["compiled"])


def backend_of(handler: Any) -> str:
    """The handler's prediction forward as a bench mode (`eager`, `compiled`, `onnxruntime`,
    `openvino`), read back from the handler (a failed export load serves eager)."""
    return runtime_mode([handler.runtime()]) or "eager"


def handler_limit(
    handler: Any,
    payload: bytes,
    batch_sizes: Sequence[int],
    seconds: float,
    *,
    explain: bool = False,
) -> list[LimitPoint]:
    """`handler.handle` on batches of identical requests, for each batch size.

    The JSON body is decoded inside the timed call: every server pays that decode too.
    """
    context = BenchContext(Path("."), handler.model_name, explain=explain)
    points = []
    for size in sorted(batch_sizes):

        def call(size: int = size) -> None:
            replies = handler.handle([payload_row(payload) for _ in range(size)], context)
            if context.statuses:
                raise RuntimeError(f"in-process call failed: {context.statuses} {replies[0]}")

        points.append(
            time_calls(
                call, size, seconds, compiled=is_compiled(handler), backend=backend_of(handler)
            )
        )
    return points


def reference_answer(handler: Any, payload: bytes, *, explain: bool = False) -> dict[str, Any]:
    """The handler's in-process answer to `payload`: what every server must answer too."""
    context = BenchContext(Path("."), handler.model_name, explain=explain)
    reply = handler.handle([payload_row(payload)], context)[0]
    if context.statuses:
        raise RuntimeError(f"in-process call failed: {context.statuses} {reply}")
    return dict(reply)


def forward_limit(
    handler: Any, payload: bytes, batch_sizes: Sequence[int], seconds: float
) -> list[LimitPoint]:
    """The bare forward (`handler.network`, inference mode, already-preprocessed input) per
    batch size."""
    from handlers.request import parse_request

    request = parse_request(payload_row(payload), handler.options(False), handler.limits)
    tensor = handler.prepare(request.images[0]).tensor
    points = []
    for size in sorted(batch_sizes):
        batch = tensor.unsqueeze(0).repeat(size, 1, 1, 1).to(handler.device)

        def call(batch: torch.Tensor = batch) -> None:
            with torch.inference_mode():
                handler.network(batch)

        points.append(
            time_calls(
                call, size, seconds, compiled=is_compiled(handler), backend=backend_of(handler)
            )
        )
    return points


def load_pipeline_module(path: Path = PIPELINE_FILE) -> ModuleType:
    """The workflow's function file, imported by path (it is not a package module)."""
    spec = importlib.util.spec_from_file_location("bench_digit_pipeline", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pipeline_limit(
    segmenter: Any, classifier: Any, payload: bytes, seconds: float
) -> list[LimitPoint]:
    """The workflow's DAG run in-process: prepare -> segmenter -> cut -> classifier -> aggregate
    (the node functions of workflows/digit_pipeline/pipeline.py and the two handlers).

    Batch size 1 only: the workflow's nodes each batch on their own, the in-process chain
    is the latency floor of one pipeline call.
    """
    nodes = load_pipeline_module()
    limits = nodes._limits()

    def call() -> None:
        pipeline_answer(nodes, limits, segmenter, classifier, payload)

    compiled = is_compiled(segmenter) or is_compiled(classifier)
    modes = {backend_of(segmenter), backend_of(classifier)}
    backend = modes.pop() if len(modes) == 1 else "mixed"
    return [time_calls(call, 1, seconds, compiled=compiled, backend=backend)]


def pipeline_answer(
    nodes: ModuleType | None, limits: Any, segmenter: Any, classifier: Any, payload: bytes
) -> dict[str, Any]:
    """One pipeline call in-process: the workflow's answer to `payload` (JSON-encoded once,
    as the server does)."""
    if nodes is None:
        nodes = load_pipeline_module()
        limits = nodes._limits()
    seg_ctx = BenchContext(Path("."), segmenter.model_name)
    cls_ctx = BenchContext(Path("."), classifier.model_name)
    prepared = nodes.prepare_one(payload_row(payload), limits)
    segmented = segmenter.handle([{"body": prepared}], seg_ctx)[0]
    cuts = nodes.cut_one(prepared, segmented, limits)
    classified = classifier.handle([{"body": cuts}], cls_ctx)[0]
    body = nodes.aggregate_one(segmented, classified)
    json.dumps(body)
    if "error" in body:
        raise RuntimeError(f"in-process pipeline failed: {body}")
    return dict(body)


def repeat_point(
    measure: Callable[[float], list[LimitPoint]], seconds: float, repeats: int
) -> list[LimitPoint]:
    """`measure` (one setting, e.g. the best of a scan) `repeats` times for `seconds` each."""
    return [point for _ in range(repeats) for point in measure(seconds)]


def best(points: Sequence[LimitPoint]) -> LimitPoint:
    """The point with the highest throughput."""
    return max(points, key=lambda p: p.images_per_s)
