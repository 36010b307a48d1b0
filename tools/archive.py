"""Checkpoints -> TorchServe model archives (.mar); workflow folders -> workflow archives (.war).

    python -m tools.archive                          # the two default models + workflows
    python -m tools.archive --version 2.0            # every checkpoints/<name>/2.0/model.pt
    python -m tools.archive runs/x/model.pt --batch-size 16 --workers 2

Everything about a model comes from its checkpoint's card (name, version, task, classes);
nothing is typed twice. An archive holds the handler for the card's task, the `handlers/` and
`model_src/` packages (the handler imports both), `model.pt`, `index_to_name.json` (the label
list) and a `model-config.yaml` with serving settings chosen from the model's size and this
machine (see `choose_serving_config`).

Naming: the version that ships by default (`--default-version`, "1.0" unless given) is
archived as `<name>.mar`, the name `config.properties` loads at start; any other version as
`<name>-<version>.mar`, registered later with `POST /models?url=<name>-<version>.mar`.

Archiving is skipped when nothing changed: a fingerprint of every input (checkpoint bytes,
handler and package sources, the generated configs, the archiver version) is stored next to
the archive as `.<archive>.inputs.json` together with the archive's own hash, so an edited or
missing archive is rebuilt too. Builds happen in a hidden folder inside the model store and
the finished file is moved into place atomically: a running server never sees half a file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path

import yaml

from handlers.backends import BACKENDS, EXPORTED_BACKENDS
from handlers.contract import DEFAULT_MODELS, DEFAULT_VERSION
from model_src import (
    SMALL_PARAMS,
    CheckpointError,
    ModelCard,
    available_cores,
    load_checkpoint,
    read_checkpoint,
)
from tools.export import export_for_backend, exporter_versions

log = logging.getLogger("tools.archive")

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Handler file per card task; the archiver copies it to the archive root.
TASK_HANDLERS = {
    "classification": "handlers/classifier.py",
    "segmentation": "handlers/segmenter.py",
}
#: Packages shipped inside every archive (the handler imports them with absolute imports).
PACKAGES = ("handlers", "model_src")
#: A workflow folder holds `spec.yaml` and this file with its function nodes.
WORKFLOW_SPEC = "spec.yaml"
WORKFLOW_HANDLER = "pipeline.py"
FINGERPRINT_FORMAT = "cvserve-archive-inputs/1"


@dataclass(frozen=True)
class Machine:
    """The hardware the serving settings are chosen for."""

    cpu_count: int
    gpu_count: int

    @classmethod
    def detect(cls) -> Machine:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return cls(cpu_count=available_cores(), gpu_count=gpus)


@dataclass(frozen=True)
class ServingConfig:
    """The per-model settings written to the archive's `model-config.yaml`."""

    min_workers: int
    max_workers: int
    batch_size: int
    max_batch_delay_ms: int
    response_timeout_s: int
    startup_timeout_s: int
    device_type: str | None = None  # None: the serving host's (see choose_serving_config)
    torch_threads: int | None = None  # None: the handler's rule on its host (handlers.base)
    backend: str = "eager"  # the prediction forward's backend (handlers.backends)
    max_images: int | None = None  # images per request; None: the handler's 64

    def to_yaml_dict(self) -> dict[str, object]:
        """TorchServe's key names for `model-config.yaml` (our handler's own under `handler`)."""
        config: dict[str, object] = {
            "minWorkers": self.min_workers,
            "maxWorkers": self.max_workers,
            "batchSize": self.batch_size,
            "maxBatchDelay": self.max_batch_delay_ms,
            "responseTimeout": self.response_timeout_s,
            "startupTimeout": self.startup_timeout_s,
        }
        if self.device_type is not None:
            config["deviceType"] = self.device_type
        handler: dict[str, object] = {}
        if self.torch_threads is not None:
            handler["torch_threads"] = self.torch_threads
        if self.backend != "eager":
            handler["backend"] = self.backend
        if self.max_images is not None:
            handler["max_images"] = self.max_images
        if handler:
            config["handler"] = handler
        return config


#: Command-line override names -> ServingConfig fields.
OVERRIDES = {
    "min_workers": "min_workers",
    "max_workers": "max_workers",
    "batch_size": "batch_size",
    "max_batch_delay": "max_batch_delay_ms",
    "response_timeout": "response_timeout_s",
    "startup_timeout": "startup_timeout_s",
    "device": "device_type",
    "torch_threads": "torch_threads",
    "backend": "backend",
    "max_images": "max_images",
}

STARTUP_COMPILED_S = 300
"""Worker start-up limit when the forward is compiled at load (tens of seconds per shape)."""
LARGE_PARAMS = 30_000_000
CLASSIFIER_MAX_IMAGES = 128
"""Images per request for classifiers: the pipeline sends all its cut-outs (up to
`workflows/digit_pipeline/pipeline.py` MAX_CUTS = 100) to the classifier in one request.
Other tasks keep the handler's default (handlers.request.DEFAULT_MAX_IMAGES, 64)."""


def choose_serving_config(
    card: ModelCard, num_params: int, machine: Machine, **overrides: object
) -> ServingConfig:
    """Serving settings from the model's size and the machine, then explicit overrides.

    The archive states what the model needs and what the user pinned, not what the machine
    that builds it has: the device and the torch threads are resolved where the model runs.
    The rule (documented in the README's configuration section):
    - device: not written unless `--device` pins it. Without `deviceType`, TorchServe 0.12
      gives a worker a GPU whenever the serving host has one (`Model.java`), and the handler
      puts the model on it (`handlers.base.pick_device`); a written `cpu` would keep a GPU
      host's model on the CPU. `machine` (the builder's) still sizes the batch, workers and
      backend below for a GPU when it has one.
    - workers: on GPU one per GPU (at most 4); on CPU one per core (1 to 4), whatever the
      model's size, each with `cores // workers` threads for a large model. A small model's
      request is mostly Python and IPC, which only more processes spread over the cores
      (measured on 2 cores: the digit classifier served 1822 req/s at 32 concurrent with 2
      single-threaded workers against 1383 with one). A large model's worker also decodes,
      preprocesses and moves its requests on one thread between forwards, so one worker
      with all the threads leaves cores idle under load. On the 2-core machine, ONNX
      Runtime, two runs of 5 s levels (bench/history/README.md), 2 x 1 threads against
      1 x 2 served resnet18 at 72-75 against 52-55 req/s at 32 concurrent, the 256-px U-Net
      at 10.6-11.1 against 9.6-9.8. The price is a lone request's latency (p50 at
      concurrency 1: resnet18 34-36 against 29-31 ms, the U-Net 183-190 against 118-121
      ms); `--workers 1` buys it back. Two workers of 2
      threads each on 2 cores are worse than either (34 and 7 req/s: the runtimes' thread
      pools preempt each other), with ONNX Runtime's spinning on or off.
    - torch threads per worker: not written unless `--threads` pins them. Each worker
      resolves them from its host's cores and the model-config's worker count
      (`handlers.base.thread_choice`, by the rule `model_src.host.torch_threads`: small
      models leave a core to the Java frontend, larger ones use them all; the measurements
      are in bench/history/README.md), and `describe` / `tools.serve status` say why.
    - batch size and delay: bigger batches for smaller models (<= 2M parameters: 16 with a
      1 ms delay, <= 30M: 4 with 5 ms, larger: 2 with 20 ms), doubled on GPU. Segmenters
      used to get half the batch; measured, the digit segmenter (1.1M parameters) served
      186 req/s at 32 concurrent with batch 8 against 130 with batch 2. TorchServe waits up
      to the delay for a batch to fill even when a request is alone, so the delay is added
      to every quiet-time call: the digit classifier's p50 at concurrency 1 was 10.1 ms with
      5 ms against 3.8 ms with 1 ms, at the same throughput under load (the queue fills
      the batches then).
    - the prediction forward's backend (`--backend`; `handlers/backends.py`): ONNX Runtime
      for models above 2M parameters on CPU, exported and parity-checked at archive time
      (`tools/export.py`); eager for small models and on GPU. Measured on 2 cores (issue 17,
      in one process, idle enough to compare): resnet18 at 224 px 61 against 44 img/s eager,
      the 256-px U-Net 37.7 against 16.6; torch.compile, the earlier default for these
      models, served 1.3x and 1.47x eager but made a worker start in up to 300 s, where an
      ONNX Runtime session starts in seconds (bench/history/README.md has this run's
      busy-machine sweep and what did not help). Small models stay eager for now, although the
      idle full run of 2026-12-02 (bench/latest.md) served them faster with ONNX Runtime
      (the digit classifier 1.23x, the segmenter 1.16x at 32 concurrent): one run, and the
      change of default is still to be made and tested. GPU:
      unmeasured, eager (an ONNX Runtime archive times the CUDA provider against eager at
      load).
    - response timeout: explanations (integrated gradients, up to 256 steps) are the slowest
      call: 60 s for small models or any GPU, 120 s up to 30M parameters, 300 s beyond, on CPU.
    - startup timeout: 120 s (TorchServe's default; loading a checkpoint or an ONNX Runtime
      session is quick), 300 s when compiling.
    - images per request (`handler: max_images`): 128 for classifiers, which receive the
      pipeline's cut-outs in one request; the handler's default (64) otherwise.
    """
    gpu = machine.gpu_count > 0
    small = num_params <= SMALL_PARAMS
    workers = max(1, min(4, machine.gpu_count if gpu else machine.cpu_count))
    if small:
        batch, delay, timeout = 16, 1, 60
    elif num_params <= LARGE_PARAMS:
        batch, delay, timeout = 4, 5, 120
    else:
        batch, delay, timeout = 2, 20, 300
    if gpu:
        batch, timeout = batch * 2, 60
    exported = not gpu and not small
    config = ServingConfig(
        min_workers=workers,
        max_workers=workers,
        batch_size=batch,
        max_batch_delay_ms=delay,
        response_timeout_s=timeout,
        startup_timeout_s=120,
        backend="onnxruntime" if exported else "eager",
        max_images=CLASSIFIER_MAX_IMAGES if card.task == "classification" else None,
    )
    chosen = {OVERRIDES[k]: v for k, v in overrides.items() if v is not None}
    if "min_workers" in chosen and "max_workers" not in chosen:
        chosen["max_workers"] = max(int(chosen["min_workers"]), config.max_workers)
    config = replace(config, **chosen)
    if config.backend not in BACKENDS:
        raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}, got {config.backend!r}")
    if config.backend == "openvino" and config.device_type == "gpu":
        raise ValueError("--backend openvino runs on the CPU only; use onnxruntime or eager on GPU")
    if "startup_timeout_s" not in chosen:
        compiling = config.backend == "compile"
        config = replace(config, startup_timeout_s=STARTUP_COMPILED_S if compiling else 120)
    if config.min_workers < 1 or config.max_workers < config.min_workers:
        raise ValueError(
            f"workers must satisfy 1 <= min ({config.min_workers}) <= max "
            f"({config.max_workers}); fix --min-workers/--max-workers"
        )
    if config.batch_size < 1 or config.max_batch_delay_ms < 0:
        raise ValueError("--batch-size must be >= 1 and --max-batch-delay >= 0")
    if config.max_batch_delay_ms == 0 and config.batch_size > 1:
        raise ValueError(
            "--max-batch-delay 0 with a batch size above 1 makes TorchServe 0.12 wait its "
            "default 100 ms for every batch (measured: 105 ms p50 for a lone request); use 1"
        )
    if config.torch_threads is not None and config.torch_threads < 1:
        raise ValueError(f"--threads must be >= 1, got {config.torch_threads}")
    if config.max_images is not None and config.max_images < 1:
        raise ValueError(f"--max-images must be >= 1, got {config.max_images}")
    if config.device_type not in (None, "cpu", "gpu"):
        raise ValueError(f"--device must be cpu or gpu, got {config.device_type!r}")
    return config


@dataclass(frozen=True)
class ArchiveResult:
    """What `archive_checkpoint` / `archive_workflow` produced and whether it had to build."""

    path: Path
    name: str
    version: str | None
    built: bool


def archive_file_name(card: ModelCard, default_version: str = DEFAULT_VERSION) -> str:
    """`<name>.mar` for the version that ships by default, `<name>-<version>.mar` otherwise."""
    if card.version == default_version:
        return f"{card.name}.mar"
    return f"{card.name}-{card.version}.mar"


def package_files(root: Path = REPO_ROOT, packages: Sequence[str] = PACKAGES) -> list[Path]:
    """Source files of the shipped packages, sorted (fixed order = deterministic staging)."""
    files = []
    for package in packages:
        base = root / package
        if not (base / "__init__.py").is_file():
            raise FileNotFoundError(
                f"{base}/__init__.py is missing: `{package}` must be a package to be shipped "
                "inside the archive"
            )
        for path in base.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files.append(path)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _tool_version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def _fingerprint(entries: Iterable[tuple[str, bytes]]) -> str:
    digest = hashlib.sha256(FINGERPRINT_FORMAT.encode())
    for name, data in entries:
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _stamp_path(archive: Path) -> Path:
    return archive.with_name(f".{archive.name}.inputs.json")


def _up_to_date(archive: Path, inputs_sha: str) -> bool:
    stamp = _stamp_path(archive)
    if not archive.is_file() or not stamp.is_file():
        return False
    try:
        recorded = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return recorded.get("inputs_sha256") == inputs_sha and recorded.get(
        "archive_sha256"
    ) == _file_sha256(archive)


def _write_stamp(archive: Path, inputs_sha: str, info: dict[str, object]) -> None:
    stamp = {"inputs_sha256": inputs_sha, "archive_sha256": _file_sha256(archive), **info}
    _stamp_path(archive).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")


def _stage_packages(dest: Path, root: Path = REPO_ROOT) -> None:
    for path in package_files(root):
        target = dest / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def _run_tool(cmd: list[str], tmpdir: Path) -> None:
    """Run an archiver with TMPDIR pointed at our build folder.

    Both archivers stage files in `$TMPDIR/<name>` and delete that folder first, so two
    builds of the same name (a test session and `make archive`) would otherwise clobber each
    other.
    """
    env = {**os.environ, "TMPDIR": str(tmpdir), "TEMP": str(tmpdir)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{Path(cmd[0]).name} {' '.join(cmd[1:3])} failed ({proc.returncode}):\n"
            f"{proc.stdout}{proc.stderr}"
        )


def _archiver(name: str) -> str:
    """The archiver next to this Python (the venv's), else the one on PATH."""
    local = Path(sys.executable).with_name(name)
    if local.is_file():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found; run `make install`")
    return found


def count_parameters(state_dict: dict[str, object]) -> int:
    return int(sum(getattr(t, "numel", lambda: 0)() for t in state_dict.values()))


def archive_checkpoint(
    checkpoint: str | Path,
    model_store: str | Path,
    *,
    default_version: str = DEFAULT_VERSION,
    machine: Machine | None = None,
    force: bool = False,
    with_model_config: bool = True,
    **overrides: object,
) -> ArchiveResult:
    """Build `<model_store>/<name>[-<version>].mar` from one checkpoint (skip if unchanged).

    `with_model_config=False` leaves the model-config out: TorchServe's own defaults (batch 1,
    its worker count) and the handler's fallback rules, the benchmark's out-of-the-box row.
    """
    checkpoint = Path(checkpoint)
    card, state = read_checkpoint(checkpoint)
    if card.task not in TASK_HANDLERS:
        raise ValueError(f"no handler for task {card.task!r}; known: {sorted(TASK_HANDLERS)}")
    handler = REPO_ROOT / TASK_HANDLERS[card.task]
    if not handler.is_file():
        raise FileNotFoundError(f"handler {handler} is missing")
    machine = machine or Machine.detect()
    serving = choose_serving_config(card, count_parameters(state), machine, **overrides)
    model_config = (
        "# Written by tools/archive.py from the model's size and the pinned flags (rule:\n"
        "# tools.archive.choose_serving_config); device and threads are the host's.\n"
        + yaml.safe_dump(serving.to_yaml_dict(), sort_keys=False)
        if with_model_config
        else ""
    )
    index_to_name = json.dumps({str(i): c for i, c in enumerate(card.classes)}, indent=2) + "\n"

    store = Path(model_store)
    store.mkdir(parents=True, exist_ok=True)
    out = store / archive_file_name(card, default_version)
    packages = package_files()
    exported = with_model_config and serving.backend in EXPORTED_BACKENDS
    inputs_sha = _fingerprint(
        [
            ("model.pt", checkpoint.read_bytes()),
            ("exporter", (exporter_versions() if exported else "").encode()),
            ("handler:" + TASK_HANDLERS[card.task], handler.read_bytes()),
            ("model-config.yaml", model_config.encode()),
            ("index_to_name.json", index_to_name.encode()),
            ("torch-model-archiver", _tool_version("torch-model-archiver").encode()),
        ]
        + [(p.relative_to(REPO_ROOT).as_posix(), p.read_bytes()) for p in packages]
    )
    if not force and _up_to_date(out, inputs_sha):
        log.info("%s is up to date", out)
        return ArchiveResult(out, card.name, card.version, built=False)

    with tempfile.TemporaryDirectory(prefix=".build-", dir=store) as tmp:
        build = Path(tmp)
        extra = build / "extra"
        _stage_packages(extra)
        (extra / "index_to_name.json").write_text(index_to_name, encoding="utf-8")
        export_info = None
        if exported:  # model.onnx + export.json travel next to model.pt (tools.export)
            model, _ = load_checkpoint(checkpoint)
            export_info = export_for_backend(
                model, card, serving.backend, extra, threads=serving.torch_threads or 1
            )
        (build / "model-config.yaml").write_text(model_config, encoding="utf-8")
        export = build / "export"
        export.mkdir()
        # --extra-files flattens the folder it is given, so it gets the folder that CONTAINS
        # the packages (docs/torchserve.md): the archive keeps handlers/ and model_src/.
        _run_tool(
            [
                _archiver("torch-model-archiver"),
                "--model-name", card.name,
                "--version", card.version,
                "--serialized-file", str(checkpoint.resolve()),
                "--handler", str(handler),
                "--extra-files", str(extra),
                *(["--config-file", str(build / "model-config.yaml")] if model_config else []),
                "--archive-format", "default",
                "--export-path", str(export),
                "--force",
            ],
            build,
        )  # fmt: skip
        os.replace(export / f"{card.name}.mar", out)
    _write_stamp(
        out,
        inputs_sha,
        {
            "name": card.name,
            "version": card.version,
            "task": card.task,
            "checkpoint": str(checkpoint),
            "serving": asdict(serving) if with_model_config else None,
            "export": export_info,
        },
    )
    log.info("built %s (%s %s, %s)", out, card.name, card.version, serving)
    return ArchiveResult(out, card.name, card.version, built=True)


def archive_workflow(
    workflow_dir: str | Path, model_store: str | Path, *, force: bool = False
) -> ArchiveResult:
    """Build `<model_store>/<workflow>.war` from `workflows/<workflow>/` (skip if unchanged).

    torch-workflow-archiver copies `--extra-files` flat (files only), so the packages the
    workflow functions import (`handlers`, `model_src`) are added to the finished .war as
    folders afterwards: TorchServe extracts the .war and puts its root on the function
    workers' `sys.path`, exactly like a .mar.
    """
    workflow_dir = Path(workflow_dir)
    name = workflow_dir.name
    spec, handler = workflow_dir / WORKFLOW_SPEC, workflow_dir / WORKFLOW_HANDLER
    for path in (spec, handler):
        if not path.is_file():
            raise FileNotFoundError(f"workflow {name}: {path} is missing")
    store = Path(model_store)
    store.mkdir(parents=True, exist_ok=True)
    out = store / f"{name}.war"
    packages = package_files()
    inputs_sha = _fingerprint(
        [
            (WORKFLOW_SPEC, spec.read_bytes()),
            (WORKFLOW_HANDLER, handler.read_bytes()),
            ("torch-workflow-archiver", _tool_version("torch-workflow-archiver").encode()),
        ]
        + [(p.relative_to(REPO_ROOT).as_posix(), p.read_bytes()) for p in packages]
    )
    if not force and _up_to_date(out, inputs_sha):
        log.info("%s is up to date", out)
        return ArchiveResult(out, name, None, built=False)

    with tempfile.TemporaryDirectory(prefix=".build-", dir=store) as tmp:
        build = Path(tmp)
        export = build / "export"
        export.mkdir()
        _run_tool(
            [
                _archiver("torch-workflow-archiver"),
                "--workflow-name", name,
                "--spec-file", str(spec),
                "--handler", str(handler),
                "--export-path", str(export),
                "--force",
            ],
            build,
        )  # fmt: skip
        war = export / f"{name}.war"
        with zipfile.ZipFile(war, "a", compression=zipfile.ZIP_DEFLATED) as z:
            for path in packages:
                z.write(path, path.relative_to(REPO_ROOT).as_posix())
        os.replace(war, out)
    _write_stamp(out, inputs_sha, {"workflow": name, "source": str(workflow_dir)})
    log.info("built %s", out)
    return ArchiveResult(out, name, None, built=True)


def default_checkpoints(
    version: str = DEFAULT_VERSION, root: Path = REPO_ROOT / "checkpoints"
) -> list[Path]:
    """The default models' checkpoints of `version`."""
    return [root / name / version / "model.pt" for name in DEFAULT_MODELS]


def checkpoints_of_version(version: str, root: Path = REPO_ROOT / "checkpoints") -> list[Path]:
    """Every `checkpoints/<name>/<version>/model.pt` (what `make archive VERSION=...` means)."""
    return sorted(root.glob(f"*/{version}/model.pt"))


def workflow_dirs(root: Path = REPO_ROOT / "workflows") -> list[Path]:
    return sorted(p.parent for p in root.glob(f"*/{WORKFLOW_SPEC}"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.archive",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Without checkpoints: the default models' checkpoints/<name>/1.0/model.pt, or with\n"
            "--version V every checkpoints/<name>/V/model.pt. Serving flags override the\n"
            "chosen model-config.yaml values for every archive built by this call."
        ),
    )
    parser.add_argument("checkpoints", nargs="*", type=Path, help="model.pt files to archive")
    parser.add_argument(
        "--version", help="archive every checkpoints/<name>/<VERSION>/model.pt instead"
    )
    parser.add_argument(
        "--default-version",
        default=DEFAULT_VERSION,
        help="the version archived as <name>.mar (others: <name>-<version>.mar); default 1.0",
    )
    parser.add_argument("--model-store", type=Path, default=REPO_ROOT / "model_store")
    parser.add_argument("--checkpoint-root", type=Path, default=REPO_ROOT / "checkpoints")
    parser.add_argument("--no-workflows", action="store_true", help="skip workflows/*/")
    parser.add_argument("--force", action="store_true", help="rebuild even if unchanged")
    group = parser.add_argument_group("serving overrides (model-config.yaml)")
    group.add_argument("--workers", type=int, help="min and max workers")
    group.add_argument("--min-workers", type=int)
    group.add_argument("--max-workers", type=int)
    group.add_argument("--batch-size", type=int)
    group.add_argument("--max-batch-delay", type=int, help="milliseconds")
    group.add_argument("--response-timeout", type=int, help="seconds")
    group.add_argument("--startup-timeout", type=int, help="seconds")
    group.add_argument(
        "--device",
        choices=("cpu", "gpu"),
        help="pin the device (default: the serving host's GPU if it has one, else its CPU)",
    )
    group.add_argument(
        "--threads",
        dest="torch_threads",
        type=int,
        help="torch threads per worker (default: each worker's host decides from its cores "
        "and the model size, see README)",
    )
    group.add_argument(
        "--backend",
        choices=BACKENDS,
        help="the prediction forward: eager PyTorch, torch.compile at load time, or the model "
        "exported to ONNX at archive time (checked against eager) and run by ONNX Runtime "
        "or OpenVINO (default: from the model size and the device, see README)",
    )
    group.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="shorthand for --backend compile (--no-compile: --backend eager)",
    )
    group.add_argument(
        "--max-images",
        type=int,
        help="images per request (default: 128 for classifiers, which receive the pipeline's "
        "cut-outs, else the handler's 64); other limits: docs/api.md, Limits",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # The CLI prints one line per archive; library callers get the details through logging.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args = build_parser().parse_args(argv)
    if args.compile is not None and args.backend is not None:
        raise SystemExit("give --backend or --compile/--no-compile, not both")
    if args.compile is not None:
        args.backend = "compile" if args.compile else "eager"
    if args.checkpoints and args.version:
        raise SystemExit("give checkpoint files or --version, not both")
    if args.checkpoints:
        checkpoints = list(args.checkpoints)
    elif args.version:
        checkpoints = checkpoints_of_version(args.version, args.checkpoint_root)
        if not checkpoints:
            raise SystemExit(
                f"no checkpoints/<name>/{args.version}/model.pt found; train one first, e.g. "
                f"`make train CONFIG=training/configs/digits_tinyvgg.yaml VERSION={args.version}`"
            )
    else:
        checkpoints = default_checkpoints(args.default_version, args.checkpoint_root)
    missing = [str(c) for c in checkpoints if not Path(c).is_file()]
    if missing:
        print(
            f"archive failed: missing {', '.join(missing)}; `make train` trains the default "
            "models (or pass the model.pt files to archive)",
            file=sys.stderr,
        )
        return 1
    overrides = {
        key: getattr(args, key)
        for key in OVERRIDES
        if key != "min_workers" and key != "max_workers"
    }
    overrides["min_workers"] = args.min_workers or args.workers
    overrides["max_workers"] = args.max_workers or args.workers
    machine = Machine.detect()
    try:
        for checkpoint in checkpoints:
            result = archive_checkpoint(
                checkpoint,
                args.model_store,
                default_version=args.default_version,
                machine=machine,
                force=args.force,
                **overrides,
            )
            print(f"{'built' if result.built else 'unchanged'} {result.path}")
        if not args.no_workflows:
            for folder in workflow_dirs():
                result = archive_workflow(folder, args.model_store, force=args.force)
                print(f"{'built' if result.built else 'unchanged'} {result.path}")
    except (CheckpointError, FileNotFoundError, ValueError, RuntimeError) as exc:  # ExportError too
        print(f"archive failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
