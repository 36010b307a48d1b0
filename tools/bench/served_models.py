"""`python -m tools.bench.served_models CHECKPOINT... [--image PNG] [--concurrency 8]`

Served throughput of several checkpoints side by side, the way `make serve` would serve each
(`tools.archive`'s rules for its size, one sandboxed TorchServe for all of them): the figure
a comparison of architectures needs next to their quality (issue 20's study, whose models are
not among `make bench`'s targets). Each model gets an untimed warm-up, then `--repeats`
levels of `--duration` seconds at `--concurrency`, one model after the other and the models
in turn within each repeat, so a slow minute of the machine does not land on one model only.
Every answer counted is a 200; the table gives req/s and p50 as `median (min-max)` over the
repeats, and the load averages at the start and the end (a busy start is said, not refused).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from model_src import available_cores, read_checkpoint
from tools.archive import archive_checkpoint
from tools.bench.loadgen import Request, run_level
from tools.bench.machine import busy_reason, loadavg
from tools.bench.stats import Spread, fmt
from tools.sandbox import sandbox_server
from tools.tsconfig import read_keys

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_IMAGE = REPO_ROOT / "docs" / "examples" / "scene.png"


def measure(
    checkpoints: Sequence[Path],
    image: bytes,
    *,
    concurrency: int = 8,
    duration: float = 10.0,
    repeats: int = 3,
) -> dict[str, Any]:
    """Archive, serve and load each checkpoint; per model the req/s and p50 spreads."""
    start_load = loadavg()
    body = json.dumps({"image": base64.b64encode(image).decode("ascii")}).encode()
    with tempfile.TemporaryDirectory(prefix="served-models-") as tmp:
        store = Path(tmp) / "store"
        names, files = [], []
        for checkpoint in checkpoints:
            card, _ = read_checkpoint(checkpoint)
            names.append(card.name)
            files.append(archive_checkpoint(checkpoint, store).path.name)  # any version
        if len(set(names)) != len(names):
            raise SystemExit(f"two checkpoints share a model name: {names}")
        overrides = {"load_models": ",".join(files)}
        with sandbox_server(store, Path(tmp) / "ts", workflows=(), overrides=overrides) as box:
            key = read_keys(box.key_file)["inference"]
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
            requests = {
                n: Request(f"{box.addresses.inference}/predictions/{n}", body, headers)
                for n in names
            }
            for request in requests.values():  # untimed: first batches, lazy imports
                run_level(request, concurrency, duration=max(1.0, duration / 4))
            levels: dict[str, list[Any]] = {n: [] for n in names}
            for _ in range(repeats):
                for name, request in requests.items():
                    levels[name].append(run_level(request, concurrency, duration=duration))
    rows = {
        name: {
            "rps": Spread.of([r.rps for r in results]).to_dict(),
            "p50_ms": Spread.of([r.p50_ms for r in results]).to_dict(),
            "failed": sum(r.requests - r.ok for r in results),
        }
        for name, results in levels.items()
    }
    return {
        "concurrency": concurrency,
        "duration_s": duration,
        "repeats": repeats,
        "cores": available_cores(),
        "load_start": start_load,
        "load_end": loadavg(),
        "busy": busy_reason(start_load, available_cores()),
        "models": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    """The result as a table, with the conditions it was measured under."""
    c = result["concurrency"]
    lines = [
        f"Served at concurrency {c}, {result['duration_s']:g} s per level, "
        f"{result['repeats']} repeats, {result['cores']} cores; load average "
        f"{result['load_start']} at the start, {result['load_end']} at the end"
        + (f" (**busy**: {result['busy']})" if result["busy"] else "")
        + ".",
        "",
        f"| model | req/s c={c} | p50 ms c={c} | failed |",
        "|---|---|---|---|",
    ]
    for name, row in result["models"].items():
        rps, p50 = Spread.from_dict(row["rps"]), Spread.from_dict(row["p50_ms"])
        lines.append(
            f"| {name} | {fmt(rps.median)} ({fmt(rps.low)}-{fmt(rps.high)}) "
            f"| {fmt(p50.median)} ({fmt(p50.low)}-{fmt(p50.high)}) | {row['failed']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path, help="model.pt files")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="the request's image")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per level")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write the JSON here (and .md next to it)")
    args = parser.parse_args(argv)
    result = measure(
        args.checkpoints,
        args.image.read_bytes(),
        concurrency=args.concurrency,
        duration=args.duration,
        repeats=args.repeats,
    )
    table = markdown(result)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        args.out.with_suffix(".md").write_text(table, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
