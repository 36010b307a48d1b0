"""The shared handler: load once, then decode -> preprocess -> predict -> encode per batch.

`initialize(context)` loads the checkpoint and its model card once per worker: the model is
rebuilt from the card by `model_src` (weights_only), placed on `cuda:<gpu_id>` when TorchServe
assigns a GPU, and torch's thread count is set from the cores and the model's worker count.

`handle(data, context)` answers one TorchServe batch (one dict per request) in four stages,
with request data passed between stages as return values, never kept on `self`:

1. decode: `handlers.request.parse_request` (images + validated options, or an error);
2. preprocess: `model_src`'s eval transform, the same one training evaluates with;
3. predict: ONE forward pass (in `torch.inference_mode`) over every image of every good
   request in the batch, multi-image requests included; then, for `/explanations`
   requests only, the classifier's Captum attributions;
4. encode: one JSON-ready object per request.

Failure isolation: a request that fails gets its own error body
(`{"error": {"status", "type", "message"}}`) and status via
`context.set_response_status(status, message, idx)`, for a batch of one as for a batch of
many, while its neighbours get their normal results. Client faults are 4xx; anything else is
logged with its traceback and answered with a plain 500. MemoryError and CUDA out-of-memory
propagate so TorchServe answers the batch with its 507.
"""

from __future__ import annotations

import abc
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from PIL import Image
from torch import nn

from handlers.backends import BACKENDS, Selected, runtime_of, select_forward
from handlers.metrics import (
    EXPLANATION_SECONDS,
    INFERENCE_SECONDS,
    OUTCOME_BAD_INPUT,
    OUTCOME_ERROR,
    OUTCOME_OK,
    OUTCOME_PASSTHROUGH,
    POSTPROCESS_SECONDS,
    PREPROCESS_SECONDS,
    HandlerMetrics,
)
from handlers.request import (
    ImageRequest,
    Limits,
    Option,
    RequestError,
    UpstreamError,
    parse_request,
)
from model_src import (
    EvalTransform,
    ModelCard,
    Placement,
    available_cores,
    build_eval_transform,
    load_checkpoint,
    placement,
    to_model_mode,
    torch_threads,
)

logger = logging.getLogger(__name__)

INTERNAL_ERROR_MESSAGE = "internal error while handling this request (details in the server log)"
HANDLER_SETTINGS = (
    "max_image_pixels",
    "max_image_bytes",
    "max_images",
    "max_request_pixels",
    "max_explain_steps",
    "forward_batch_size",
    "ig_internal_batch_size",
    "torch_threads",
    "compile",
    "tile_size",
    "backend",
)
"""Keys of the optional `handler:` section of an archive's model-config.yaml."""
DEFAULT_FORWARD_BATCH = 64
ENV_THREADS = "CVSERVE_TORCH_THREADS"

T = TypeVar("T")


@dataclass(frozen=True)
class Prepared:
    """One image ready for the model, and what is needed to map results back onto it."""

    source: Image.Image  # as decoded: original mode, EXIF orientation not yet applied
    tensor: torch.Tensor  # C x H x W, normalised, on the CPU
    placement: Placement  # the upright original -> model canvas geometry

    @property
    def width(self) -> int:
        return self.placement.orig_w

    @property
    def height(self) -> int:
        return self.placement.orig_h

    def display_rgb(self) -> Image.Image:
        """The upright input in colour, for overlays (same conversion rules as the model's)."""
        return to_model_mode(self.source, 3)


@dataclass
class Job:
    """One good request moving through the stages of one `handle` call."""

    idx: int
    request: ImageRequest
    explain: bool
    items: list[Prepared] = field(default_factory=list)
    outputs: list[torch.Tensor] = field(default_factory=list)
    explanations: list[Any] = field(default_factory=list)


def pick_device(gpu_id: Any) -> torch.device:
    """`cuda:<gpu_id>` when TorchServe assigned a GPU and CUDA works here, else the CPU."""
    if gpu_id is not None and torch.cuda.is_available():
        return torch.device(f"cuda:{int(gpu_id)}")
    return torch.device("cpu")


def threads_per_worker(
    model_config: Mapping[str, Any],
    cores: int,
    environ: Mapping[str, str] | None = None,
    num_params: int | None = None,
) -> int | None:
    """Torch threads for one worker, or None to leave torch's setting alone (`thread_choice`
    without the reason)."""
    return thread_choice(model_config, cores, environ, num_params)[0]


def thread_choice(
    model_config: Mapping[str, Any],
    cores: int,
    environ: Mapping[str, str] | None = None,
    num_params: int | None = None,
) -> tuple[int | None, str]:
    """Torch threads for one worker (None: leave torch's setting alone), and why.

    Each TorchServe worker is a process with its own model; with torch's default (one thread
    per core) N workers oversubscribe the cores N times. Workers come from the model-config's
    `maxWorkers` (else `minWorkers`); without either, TorchServe starts one worker per core
    on a CPU host, hence one thread. The split is `model_src.torch_threads`, the archiver's
    rule too: a small model leaves one core to TorchServe's Java frontend, which moves every
    request (on a busy 2-core machine, one worker with 2 torch threads ran the classifier's
    forward in ~95 ms against 1.3 ms with 1 thread: the threads spin against the frontend).
    The archive leaves the threads to this rule on the serving host unless the user pinned
    them (`tools.archive --threads N` writes `handler: {torch_threads: N}`, which wins).
    `CVSERVE_TORCH_THREADS` beats both, as the operator's last word; without either an
    explicit `OMP_NUM_THREADS` is respected. `num_params` (None: unknown) picks the rule's
    side for the model's size.
    """
    environ = os.environ if environ is None else environ
    if environ.get(ENV_THREADS):
        return max(1, int(environ[ENV_THREADS])), f"{ENV_THREADS} in the environment"
    chosen = (model_config.get("handler") or {}).get("torch_threads")
    if chosen is not None:
        return positive_int(chosen, "handler torch_threads"), "the archive's handler settings"
    if environ.get("OMP_NUM_THREADS"):
        return None, "OMP_NUM_THREADS in the environment (left to torch)"
    workers = int(model_config.get("maxWorkers") or model_config.get("minWorkers") or cores)
    threads = torch_threads(cores, workers, num_params)
    return threads, f"{cores} cores here over {workers} workers (model_src.torch_threads)"


def positive_int(value: Any, what: str) -> int:
    """`value` as an int >= 1, or a ValueError naming the setting."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{what} must be a whole number >= 1, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError(f"{what} must be a whole number >= 1, got {value!r}")
    return number


def header(context: Any, idx: int, name: str) -> str | None:
    """Request header `name` of request `idx`, or None (also for contexts without headers)."""
    try:
        value = context.get_request_header(idx, name)
    except (AttributeError, IndexError, KeyError, TypeError):
        return None
    return value if isinstance(value, str) else None


def is_explain(context: Any, idx: int) -> bool:
    """TorchServe's frontend sets `explain: True` on `/explanations/...` requests. Read per
    request: in a batch, predictions and explanations can be neighbours."""
    return header(context, idx, "explain") == "True"


def safe_phrase(message: str, limit: int = 200) -> str:
    """An HTTP reason phrase: printable ASCII, one line (Netty rejects CR/LF)."""
    text = "".join(c if " " <= c <= "~" else " " for c in message)
    return text[:limit]


class ImageHandler(abc.ABC):
    """Base of cvserve's handlers; subclasses add options, the forward pass and encoding."""

    task: ClassVar[str]
    """The model card `task` this handler serves."""
    supports_explanations: ClassVar[bool] = False

    def __init__(self) -> None:
        self.initialized = False
        self.model: nn.Module
        self.network: Callable[[torch.Tensor], torch.Tensor]
        """The prediction forward: `model`, its compiled form or an exported runtime
        (`handler: {backend: ...}`, handlers.backends); explanations always use `model`."""
        self.selected: Selected | None = None
        self.card: ModelCard
        self.device = torch.device("cpu")
        self.transform: EvalTransform
        self.limits = Limits()
        self.settings: dict[str, Any] = {}
        self.model_name = ""
        self.version = ""
        self.serving: dict[str, Any] = {}
        """What this worker chose on its host (device, threads) and why: in `describe`."""

    # ---- loading ------------------------------------------------------------------------------

    def initialize(self, context: Any) -> None:
        """Load the checkpoint named by the archive manifest and everything derived from it."""
        properties = context.system_properties
        model_config = getattr(context, "model_yaml_config", None) or {}
        self.settings = dict(model_config.get("handler") or {})
        unknown = sorted(set(self.settings) - set(HANDLER_SETTINGS))
        if unknown:
            raise ValueError(
                f"unknown key(s) {unknown} in the model-config handler section; "
                f"valid keys: {', '.join(HANDLER_SETTINGS)}"
            )
        for key in ("forward_batch_size", "ig_internal_batch_size", "torch_threads", "tile_size"):
            if key in self.settings:
                self.settings[key] = positive_int(self.settings[key], f"handler {key}")
        if not isinstance(self.settings.get("compile", False), bool):
            raise ValueError(
                f"handler compile must be true or false, got {self.settings['compile']!r}"
            )
        backend = self.settings.get(
            "backend", "compile" if self.settings.get("compile") else "eager"
        )
        if backend not in BACKENDS:
            raise ValueError(
                f"handler backend must be one of {', '.join(BACKENDS)}, got {backend!r}"
            )
        self.device = pick_device(properties.get("gpu_id"))

        manifest = (getattr(context, "manifest", None) or {}).get("model", {})
        path = os.path.join(properties["model_dir"], manifest.get("serializedFile", "model.pt"))
        self.model, self.card = load_checkpoint(path, self.device)
        num_params = sum(p.numel() for p in self.model.parameters())
        threads, why = thread_choice(model_config, available_cores(), num_params=num_params)
        if threads is not None:  # before compiling: compiled kernels keep their thread pool
            torch.set_num_threads(threads)
        self.serving = {
            "device": str(self.device),
            "device_why": "the GPU TorchServe assigned"
            if self.device.type == "cuda"
            else "no GPU assigned by TorchServe, or CUDA unavailable here",
            "torch_threads": torch.get_num_threads(),
            "torch_threads_why": why,
            "parameters": num_params,
        }
        if self.card.task != self.task:
            raise ValueError(
                f"{path} holds a {self.card.task} model but this handler serves {self.task} "
                "models; archive it with the handler for its task"
            )
        # Explanations need input gradients only; frozen weights keep autograd from
        # accumulating parameter gradients.
        self.model.requires_grad_(False)
        spec = self.card.input
        self.selected = select_forward(
            backend,
            self.model,
            Path(properties["model_dir"]),
            torch.zeros(spec.channels, *spec.size, device=self.device),
            (1, int(model_config.get("batchSize") or 1)),
            self.device,
        )
        self.network = self.selected.network
        asked = backend == "compile"
        self.serving["compile_why"] = (
            "off: the archive's handler settings do not ask for it"
            if not asked
            else "the archive's handler settings"
            if self.network is not self.model
            else "asked for, but compiling failed: the eager model is served (see the log)"
        )
        ran = runtime_of(self.network, self.model, self.selected)["backend"]
        self.serving["backend"] = ran
        self.serving["backend_why"] = (
            "the archive's handler settings"
            if backend != "eager" and not self.selected.note
            else f"asked for {backend}, serving {ran}: {self.selected.note}"
            if self.selected.note
            else "off: the archive's handler settings ask for the eager model"
        )
        self.transform = build_eval_transform(self.card.input)
        self.limits = Limits.from_config(self.settings)
        self.limits.apply_to_pil()
        self.model_name = str(manifest.get("modelName") or self.card.name)
        self.version = str(manifest.get("modelVersion") or self.card.version)
        self.setup()
        self.initialized = True
        logger.info(
            "loaded %s %s (%s, %s) on %s with %d torch threads",
            self.model_name,
            self.version,
            self.card.task,
            self.card.arch,
            self.device,
            torch.get_num_threads(),
        )

    def setting(self, key: str, default: int) -> int:
        """A numeric setting of the model-config `handler:` section (validated at load)."""
        return int(self.settings.get(key, default))

    @abc.abstractmethod
    def setup(self) -> None:
        """Called once the model and card are loaded: build what depends on the card."""

    # ---- subclass interface ----------------------------------------------------------------

    @abc.abstractmethod
    def options(self, explain: bool) -> Mapping[str, Option]:
        """The options a request may carry on the predictions (or explanations) route."""

    @abc.abstractmethod
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """`N x C x H x W` inputs on the device -> per-image outputs (`N x ...`), no grad."""

    def explain(self, item: Prepared, output: torch.Tensor, options: dict[str, Any]) -> Any:
        """One image's explanation (only called for `/explanations` requests)."""
        raise NotImplementedError

    @abc.abstractmethod
    def encode(
        self, item: Prepared, output: torch.Tensor, options: dict[str, Any], explanation: Any
    ) -> dict[str, Any]:
        """One image's response object (explanation is None on the predictions route)."""

    @abc.abstractmethod
    def record(self, body: dict[str, Any], metrics: HandlerMetrics) -> None:
        """Record the metrics derived from one image's response object."""

    def describe(self) -> dict[str, Any]:
        """Answer to `GET /models/{name}?customized=true`: the model card's public part."""
        return {
            "model": self.model_name,
            "version": self.version,
            "task": self.card.task,
            "arch": self.card.arch,
            "classes": list(self.card.classes),
            "input": self.card.input.to_dict(),
            "metrics": self.card.metrics,
            "dataset": self.card.dataset,
            "created": self.card.created,
            "compiled": self.network is not self.model,
            "serving": self.serving,
            "runtime": self.runtime(),
        }

    def runtime(self) -> dict[str, Any]:
        """What this worker process really runs, read back here rather than inferred from
        the settings: torch's thread count, the prediction forward's backend (`eager`,
        `inductor`, `onnxruntime`, `openvino`: a failed compile or export load serves the
        eager model, `backend_note` says why), whether it is compiled, and the device."""
        return {
            "pid": os.getpid(),
            "torch_threads": torch.get_num_threads(),
            **runtime_of(self.network, self.model, self.selected),
            "device": str(self.device),
        }

    # ---- the four stages -----------------------------------------------------------------

    def handle(self, data: list[dict[str, Any]] | None, context: Any) -> list[Any] | None:
        """TorchServe's entry point: one response per request, in order."""
        if not self.initialized:
            self.initialize(context)
        if data is None:  # TorchServe's load-time call
            return None
        if header(context, 0, "describe") == "True":
            return [self.describe() for _ in data]
        metrics = HandlerMetrics(getattr(context, "metrics", None))
        replies: list[Any] = [None] * len(data)

        started = time.perf_counter()
        jobs = self._decode(data, context, replies, metrics)
        jobs = self._preprocess(jobs, context, replies, metrics)
        metrics.seconds(PREPROCESS_SECONDS, time.perf_counter() - started)

        started = time.perf_counter()
        jobs = self._predict(jobs, context, replies, metrics)
        if any(job.items for job in jobs):
            metrics.seconds(INFERENCE_SECONDS, time.perf_counter() - started)
        jobs = self._explain(jobs, context, replies, metrics)

        started = time.perf_counter()
        self._encode(jobs, context, replies, metrics)
        metrics.seconds(POSTPROCESS_SECONDS, time.perf_counter() - started)
        return replies

    def _decode(
        self, data: list[Any], context: Any, replies: list[Any], metrics: HandlerMetrics
    ) -> list[Job]:
        jobs = []
        for idx, row in enumerate(data):
            explain = is_explain(context, idx)
            parsed = self._guard(idx, context, replies, metrics, self._parse, row, explain)
            if isinstance(parsed, UpstreamError):
                replies[idx] = parsed.body
                metrics.request(OUTCOME_PASSTHROUGH, idx)
            elif parsed is not None:
                jobs.append(Job(idx, parsed, explain))
        return jobs

    def _parse(self, row: Any, explain: bool) -> ImageRequest | UpstreamError:
        if explain and not self.supports_explanations:
            raise RequestError(
                400,
                f"explanations are not available for {self.model_name} (a {self.card.task} "
                f"model); use /predictions/{self.model_name}",
            )
        return parse_request(
            row,
            self.options(explain),
            self.limits,
            canvas=self.canvas_pixels,
            check_work=lambda count, options: self.check_work(count, options, explain),
        )

    def canvas_pixels(self, width: int, height: int) -> int:
        """Pixels of the model canvas a `width x height` image becomes (its work budget)."""
        where = placement(self.card.input, width, height)
        return where.canvas_w * where.canvas_h

    def check_work(self, count: int, options: Mapping[str, Any], explain: bool) -> None:
        """Refuse (RequestError) a request of `count` images whose options ask for more work
        than this handler allows; called before any image is decoded. Nothing by default."""
        return None  # by default the Limits alone bound a request's work

    def _preprocess(
        self, jobs: list[Job], context: Any, replies: list[Any], metrics: HandlerMetrics
    ) -> list[Job]:
        def prepare_all(job: Job) -> Job:
            job.items = [self.prepare(image, job.request.options) for image in job.request.images]
            return job

        return self._each(jobs, context, replies, metrics, prepare_all)

    def prepare(self, image: Image.Image, options: dict[str, Any] | None = None) -> Prepared:
        """Decoded image -> model input, through the one eval transform training uses
        (`options`: the request's, for handlers whose preprocessing depends on them)."""
        upright = to_model_mode(image, self.card.input.channels)
        return Prepared(image, self.transform(upright), placement(self.card.input, *upright.size))

    def _predict(
        self, jobs: list[Job], context: Any, replies: list[Any], metrics: HandlerMetrics
    ) -> list[Job]:
        items = [item for job in jobs for item in job.items]
        if not items:
            return jobs
        try:
            outputs = self.predict_items(
                items, [job.request.options for job in jobs for _ in job.items]
            )
        except (MemoryError, torch.cuda.OutOfMemoryError):
            raise
        except Exception:  # a failed forward fails these requests, not the worker
            logger.exception("the forward pass failed for a batch of %d images", len(items))
            for job in jobs:
                self._reject(
                    job.idx, context, replies, metrics, RequestError(500, INTERNAL_ERROR_MESSAGE)
                )
            return []
        start = 0
        for job in jobs:
            job.outputs = list(outputs[start : start + len(job.items)])
            start += len(job.items)
        return jobs

    def predict_items(self, items: list[Prepared], options: list[dict[str, Any]]) -> list[Any]:
        """One output per prepared image (`options`: each image's request options). Here: ONE
        forward pass over all of them; the segmenter overrides it with tiles at each image's
        own scale."""
        return list(self._forward_all(torch.stack([item.tensor for item in items])))

    def _forward_all(self, batch: torch.Tensor) -> torch.Tensor:
        """The forward pass over all images, in chunks that bound memory (one chunk for any
        ordinary batch)."""
        size = self.setting("forward_batch_size", DEFAULT_FORWARD_BATCH)
        with torch.inference_mode():
            chunks = [
                self.forward(batch[i : i + size].to(self.device))
                for i in range(0, len(batch), size)
            ]
        return torch.cat(chunks)

    def _explain(
        self, jobs: list[Job], context: Any, replies: list[Any], metrics: HandlerMetrics
    ) -> list[Job]:
        def explain_all(job: Job) -> Job:
            if job.explain:
                for item, output in zip(job.items, job.outputs, strict=True):
                    started = time.perf_counter()
                    job.explanations.append(self.explain(item, output, job.request.options))
                    metrics.seconds(EXPLANATION_SECONDS, time.perf_counter() - started)
            return job

        return self._each(jobs, context, replies, metrics, explain_all)

    def _encode(
        self, jobs: list[Job], context: Any, replies: list[Any], metrics: HandlerMetrics
    ) -> None:
        def encode_all(job: Job) -> dict[str, Any]:
            explanations = job.explanations or [None] * len(job.items)
            bodies = [
                self.encode(item, output, job.request.options, explanation)
                for item, output, explanation in zip(
                    job.items, job.outputs, explanations, strict=True
                )
            ]
            for body in bodies:
                self.record(body, metrics)
            if job.request.several:
                return {"model": self.model_name, "version": self.version, "predictions": bodies}
            return bodies[0]

        for job in jobs:
            body = self._guard(job.idx, context, replies, metrics, encode_all, job)
            if body is not None:
                replies[job.idx] = body
                metrics.request(OUTCOME_OK, job.idx)

    # ---- failure isolation -----------------------------------------------------------------

    def _each(
        self,
        jobs: list[Job],
        context: Any,
        replies: list[Any],
        metrics: HandlerMetrics,
        step: Callable[[Job], Job],
    ) -> list[Job]:
        """Run `step` on every job; the jobs that fail are answered and dropped."""
        kept = []
        for job in jobs:
            if self._guard(job.idx, context, replies, metrics, step, job) is not None:
                kept.append(job)
        return kept

    def _guard(
        self,
        idx: int,
        context: Any,
        replies: list[Any],
        metrics: HandlerMetrics,
        step: Callable[..., T],
        *args: Any,
    ) -> T | None:
        """`step(*args)`, or None after answering request `idx` with its error."""
        try:
            return step(*args)
        except RequestError as err:
            self._reject(idx, context, replies, metrics, err)
        except (MemoryError, torch.cuda.OutOfMemoryError):
            raise
        except Exception:  # one request's bug must not fail its neighbours
            logger.exception("request %d of the batch failed", idx)
            self._reject(idx, context, replies, metrics, RequestError(500, INTERNAL_ERROR_MESSAGE))
        return None

    def _reject(
        self,
        idx: int,
        context: Any,
        replies: list[Any],
        metrics: HandlerMetrics,
        err: RequestError,
    ) -> None:
        replies[idx] = reject(context, idx, err)
        metrics.request(OUTCOME_ERROR if err.status >= 500 else OUTCOME_BAD_INPUT, idx)


def reject(context: Any, idx: int, err: RequestError) -> dict[str, Any]:
    """Answer request `idx` of a batch with `err`: its status set on that request only, and
    the error object to return for it. Handlers and the workflow's function nodes both use
    it, so a bad request gets the same answer from a model and from the pipeline."""
    if err.status < 500:
        logger.info("request %d rejected with %d: %s", idx, err.status, err.message)
    try:
        context.set_response_status(err.status, safe_phrase(err.message), idx)
    except (AttributeError, IndexError, TypeError):
        logger.warning("could not set the status of request %d", idx, exc_info=True)
    return err.to_body()


def module_entry_point(handler: ImageHandler) -> Callable[[Any, Any], Any]:
    """A module-level `handle(data, context)` for TorchServe around one handler instance."""

    def handle(data: Any, context: Any) -> Any:
        return handler.handle(data, context)

    handle.__doc__ = f"TorchServe entry point of {type(handler).__name__}."
    return handle
