"""Worker processes and memory of the pipeline: shared model nodes against private copies.

`python -m tools.bench.pipeline_memory` against a running server (`make serve`). cvserve's
frontend patch lets a workflow node name a registered model (`model: digit_classifier`);
TorchServe 0.12.0 could only load a private copy per node (`url: digit_classifier.mar`,
registered as `<workflow>__<node>`). This registers a copy of `digit_pipeline` written the
0.12.0 way next to the real one, counts the worker processes and their resident memory
(RSS, read with psutil from the PIDs TorchServe's describe API reports) for both layouts,
prints a table and unregisters the copy again.
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from handlers.contract import CLASSIFIER, PIPELINE, SEGMENTER
from tools.archive import PIPELINE_SPEC, archive_workflow, workflow_dirs
from tools.client import DEFAULT_CONFIG, DEFAULT_KEY_FILE, Client
from tools.serve import ServerSpec

LEGACY = "digit_pipeline_copies"
FUNCTIONS = ("prepare", "cut", "aggregate")


@dataclass(frozen=True)
class Layout:
    name: str
    models: tuple[str, ...]

    def measure(self, client: Client) -> tuple[int, float]:
        """(worker processes, their RSS in MiB) of every model of this layout."""
        pids = [
            worker["pid"]
            for model in self.models
            for version in client.describe(model)
            for worker in version.get("workers", [])
            if worker.get("pid")
        ]
        rss = 0
        for pid in pids:
            try:
                rss += psutil.Process(pid).memory_info().rss
            except psutil.Error:
                continue
        return len(pids), rss / 2**20


def legacy_spec(text: str) -> str:
    """The spec with each `model: <name>` node turned into a private `url: <name>.mar` copy."""
    return re.sub(r"^(\s+)model: (\w+)", r"\1url: \2.mar", text, flags=re.MULTILINE)


def build_legacy_war(model_store: Path) -> Path:
    source = next(d for d in workflow_dirs() if d.name == PIPELINE)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / LEGACY
        shutil.copytree(source, folder)
        spec = folder / PIPELINE_SPEC
        spec.write_text(legacy_spec(spec.read_text(encoding="utf-8")), encoding="utf-8")
        archive_workflow(folder, model_store)
    return model_store / f"{LEGACY}.war"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.pipeline_memory")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--key-file", type=Path, default=DEFAULT_KEY_FILE)
    args = parser.parse_args(argv)
    client = Client(args.config, args.key_file, timeout=600)
    store = ServerSpec(config=args.config).model_store
    nodes = tuple(f"{PIPELINE}__{f}" for f in FUNCTIONS)
    shared = Layout("shared models (cvserve patch)", (CLASSIFIER, SEGMENTER, *nodes))
    war = build_legacy_war(store)
    client.register_workflow(war.name)
    try:
        copies = tuple(f"{LEGACY}__{n}" for n in (*FUNCTIONS, "segmenter", "classifier"))
        legacy = Layout("private copies (TorchServe 0.12.0)", (CLASSIFIER, SEGMENTER, *copies))
        rows = [(layout.name, *layout.measure(client)) for layout in (legacy, shared)]
    finally:
        client.unregister_workflow(LEGACY)
        war.unlink(missing_ok=True)
    print("| pipeline layout | worker processes | RSS of those workers |")
    print("| --- | --- | --- |")
    for name, workers, mib in rows:
        print(f"| {name} | {workers} | {mib:,.0f} MiB |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
