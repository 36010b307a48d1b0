"""TorchServe in the comparison: one sandboxed server holding every variant at once.

Variants of the same checkpoint are separate archives registered under separate names
(`load_models` accepts `name=file.mar`), so one server start serves them all and every
variant is measured on the same server, in the same run:
- `<model>`: cvserve's tuned archive (`tools.archive` defaults: batch size / delay / workers
  chosen from the model's size and the machine);
- `<model>_tsdefault`: TorchServe's real defaults, an archive WITHOUT a model-config (batch
  size 1, eager, the handler's fallback of one torch thread per worker), scaled once up to
  TorchServe's default worker count, one per core (cvserve's config.properties sets
  `default_workers_per_model=1`, which the workflow's nodes rely on, so it stays);
- sweep variants `<model>_<tag>` with explicit overrides (tuning evidence).
The digit_pipeline workflow is registered on top (it needs digit_classifier.mar and
digit_segmenter.mar, the tuned archives, in the same store). What each variant really runs
(workers, batch size, torch threads, compiled or not) is read back from the running server
(`describe`), not inferred from the settings.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from handlers.contract import PIPELINE
from model_src import available_cores
from tools.archive import archive_checkpoint, archive_workflow
from tools.sandbox import sandbox_server
from tools.tsconfig import read_keys, read_properties, rewrite_properties

log = logging.getLogger("tools.bench.torchserve")

REPO_ROOT = Path(__file__).resolve().parents[2]
TS_DEFAULT = {"with_model_config": False}
"""TorchServe's own defaults: the archive carries no model-config at all."""
WORKFLOW = PIPELINE


@dataclass(frozen=True)
class Variant:
    """One registered name: which checkpoint, with which `archive_checkpoint` overrides."""

    name: str
    model: str
    config: str  # how the row is labelled in the report
    overrides: Mapping[str, Any] = field(default_factory=dict)


def variants_for(
    models: list[str], sweep: Mapping[str, list[tuple[str, Mapping[str, Any]]]]
) -> list[Variant]:
    """Tuned, TorchServe-default and sweep variants of each model."""
    out = []
    for model in models:
        out.append(Variant(model, model, "tuned"))
        out.append(Variant(f"{model}_tsdefault", model, "ts-default", TS_DEFAULT))
        for tag, overrides in sweep.get(model, []):
            out.append(Variant(f"{model}_{tag}", model, f"sweep {tag}", overrides))
    return out


def build_store(
    store: Path, checkpoints: Mapping[str, Path], variants: list[Variant], *, workflow: bool
) -> dict[str, dict[str, Any]]:
    """Archive every variant into `store` as `<variant name>.mar`; return their settings."""
    store.mkdir(parents=True, exist_ok=True)
    settings: dict[str, dict[str, Any]] = {}
    for variant in variants:
        build_dir = store.parent / f"build-{variant.name}"
        result = archive_checkpoint(checkpoints[variant.model], build_dir, **variant.overrides)
        target = store / f"{variant.name}.mar"
        shutil.copyfile(result.path, target)
        settings[variant.name] = _serving_settings(result.path) or {}
    if workflow:
        archive_workflow(REPO_ROOT / "workflows" / WORKFLOW, store)
    return settings


def _serving_settings(mar: Path) -> dict[str, Any]:
    """The model-config.yaml values recorded next to an archive by tools.archive."""
    import json

    stamp = mar.with_name(f".{mar.name}.inputs.json")
    with contextlib.suppress(OSError, ValueError):
        return dict(json.loads(stamp.read_text(encoding="utf-8")).get("serving") or {})
    return {}


def write_config(dest: Path, variants: list[Variant]) -> Path:
    """The repo's config.properties with `load_models` naming every variant.

    `metrics_config` is made absolute: the sandbox resolves it relative to this copy."""
    source = REPO_ROOT / "config.properties"
    props = read_properties(source)
    updates = {"load_models": ",".join(f"{v.name}={v.name}.mar" for v in variants)}
    if props.get("metrics_config"):
        updates["metrics_config"] = str((REPO_ROOT / props["metrics_config"]).resolve())
    dest.write_text(rewrite_properties(source.read_text(encoding="utf-8"), updates), "utf-8")
    return dest


@dataclass
class RunningServer:
    """Where to send inference requests, with the token they need; `describe` reads back
    what a registered model runs."""

    inference: str
    headers: dict[str, str]
    client: Any = None

    def describe(self, name: str) -> dict[str, Any]:
        """What `name` runs, from the server: workers, batch size and delay (TorchServe's
        describe) and each answering worker's torch threads and forward (the handler's
        `runtime`, read in the worker process). Several reads, to reach several workers."""
        described = self.client.describe(name)[0]
        runtimes: dict[int, dict[str, Any]] = {}
        workers = described.get("workers") or []
        for _ in range(max(2, 3 * len(workers))):
            custom = self.client.describe(name, customized=True)[0]
            runtime = (custom.get("customizedMetadata") or {}).get("runtime")
            if isinstance(runtime, dict):
                runtimes[int(runtime.get("pid", 0))] = runtime
            if len(runtimes) >= len(workers):
                break
        return {
            "workers": len(workers),
            "batch_size": described.get("batchSize"),
            "max_batch_delay_ms": described.get("maxBatchDelay"),
            "runtimes": list(runtimes.values()),
        }


@contextlib.contextmanager
def torchserve(
    workdir: Path, store: Path, variants: list[Variant], *, workflow: bool, timeout: float = 600
) -> Iterator[RunningServer]:
    """A sandboxed TorchServe serving `variants` (and the workflow); stopped on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = write_config(workdir / "bench.properties", variants)
    with sandbox_server(
        store,
        workdir / "server",
        config=config,
        timeout=timeout,
        workflows=(WORKFLOW,) if workflow else (),
    ) as box:
        key = read_keys(box.key_file)["inference"]
        client = box.client(timeout=timeout)
        for variant in (v for v in variants if v.config == "ts-default"):
            # TorchServe's own default: one worker per core (cvserve's config says 1)
            client.scale(variant.name, available_cores(), available_cores())
        yield RunningServer(box.addresses.inference, {"Authorization": f"Bearer {key}"}, client)
