"""`python -m tools.bench [--quick] [--only classifier,...] [--requests N]` (`make bench`).

One run, one machine, every figure next to the figures it is compared with:
1. the in-process limit (handler at batch 1/8/32) and the bare forward, per target;
2. the peers on the four models' prediction routes: hand-written Flask (one forward per
   request) and LitServe (batching on, same batch size / delay as cvserve's archive);
3. TorchServe: cvserve's tuned archives, TorchServe-default archives (batch 1) and sweep
   variants, all on one sandboxed server; the pipeline workflow and explanations too;
4. training throughput of the default configs: the trainer's DataLoader vs a plain loop.
Writes `bench/results/<date>-<machine>[-quick].{json,md,png}`; `--publish` (default for a full
run) also copies the table and plot to `bench/latest.md` / `bench/latest.png` for the README.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import math
import os
import platform
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from tools.bench import inprocess, report, subjects, training
from tools.bench.loadgen import Request, run_level
from tools.bench.servers import peer_server
from tools.bench.stats import ratio
from tools.bench.subjects import Target

log = logging.getLogger("tools.bench")

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS = REPO_ROOT / "bench" / "results"
LEVELS = (1, 8, 32)
BATCH_SIZES = (1, 8, 32)
GROUPS = {
    "classifier": ["digit_classifier"],
    "segmenter": ["digit_segmenter"],
    "pipeline": ["digit_pipeline", "digit_pipeline_page"],
    "page": ["digit_pipeline_page"],
    "explain": [f"explain_{m}" for m in subjects.EXPLAIN_METHODS],
    "heavy": [subjects.HEAVY_CLASSIFIER, subjects.HEAVY_SEGMENTER],
    "resnet18": [subjects.HEAVY_CLASSIFIER],
    "unet": [subjects.HEAVY_SEGMENTER],
}
QUICK_TARGETS = ("digit_classifier", "digit_pipeline", "explain_saliency")
ONE_WORKER = {"min_workers": 1, "max_workers": 1}
SWEEP: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "digit_classifier": [
        ("w1", ONE_WORKER),
        ("w1_b8_d5", {**ONE_WORKER, "batch_size": 8, "max_batch_delay": 5}),  # the old rule
        ("b32", {"batch_size": 32}),
    ],
    "digit_segmenter": [
        ("w1", ONE_WORKER),
        ("w1_b2_d10", {**ONE_WORKER, "batch_size": 2, "max_batch_delay": 10}),  # the old rule
    ],
    subjects.HEAVY_CLASSIFIER: [
        ("t1_d10", {"torch_threads": 1, "max_batch_delay": 10, "compile": False}),  # old rule
        ("eager", {"compile": False}),
        ("w2", {"min_workers": 2, "max_workers": 2}),  # 2 workers x 1 thread
    ],
    subjects.HEAVY_SEGMENTER: [
        ("eager", {"compile": False}),
        ("b1", {"batch_size": 1}),
        (
            "t1_b2_d10",
            {"torch_threads": 1, "batch_size": 2, "max_batch_delay": 10, "compile": False},
        ),
    ],
}
"""TorchServe settings tried next to the tuned archive (tuning evidence; full run only)."""
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
JSON_HEADERS = {"Content-Type": "application/json"}


def machine_info() -> dict[str, Any]:
    """What every row is measured on (cores, GPU or not), for the table and the file name."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    device = f"GPU {gpu}" if gpu else "CPU"
    return {
        "host": socket.gethostname(),
        "cores": cores,
        "device": "GPU" if gpu else "CPU",
        "gpu": gpu,
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "description": f"{cores} cores, {device}, torch {torch.__version__}, "
        f"{platform.python_implementation()} {platform.python_version()}",
    }


def select_targets(all_targets: list[Target], only: str | None, quick: bool) -> list[Target]:
    """Targets named by `--only` (names or group names), else all (quick: a small set)."""
    if only:
        wanted: set[str] = set()
        for item in (i.strip() for i in only.split(",") if i.strip()):
            names = GROUPS.get(item, [item])
            unknown = [n for n in names if n not in {t.name for t in all_targets}]
            if unknown:
                known = sorted({t.name for t in all_targets} | set(GROUPS))
                raise SystemExit(f"unknown target {item!r}; choose from {', '.join(known)}")
            wanted.update(names)
    else:
        wanted = set(QUICK_TARGETS) if quick else {t.name for t in all_targets}
    return [t for t in all_targets if t.name in wanted]


def request_count(target: Target, args: argparse.Namespace) -> int:
    if args.requests:
        return args.requests
    return max(16, target.requests // 8) if args.quick else target.requests


# ---- 1. limits ----------------------------------------------------------------------------


def measure_limits(
    targets: list[Target], checkpoints: dict[str, Path], args: argparse.Namespace
) -> dict[str, Any]:
    """In-process handler throughput (best batch size) and bare forward, per target."""
    handlers: dict[str, Any] = {}

    def handler(name: str) -> Any:
        if name not in handlers:
            handlers[name] = subjects.load_handler(checkpoints[name])
        return handlers[name]

    limits: dict[str, Any] = {}
    default_threads = torch.get_num_threads()
    thread_options = sorted({1, default_threads})
    for target in targets:
        n = request_count(target, args)
        log.info("limit: %s (%d images per point, threads %s)", target.name, n, thread_options)
        points: list[inprocess.LimitPoint] = []
        forward: list[inprocess.LimitPoint] = []
        needed = (
            ["digit_segmenter", "digit_classifier"]
            if target.route == "wfpredict"
            else [target.model]
        )
        for name in needed:  # loading sets torch's thread count: load first, then choose
            handler(name)
        for threads in thread_options:
            # The limit is the best the handler does here: with few cores and a busy machine
            # one torch thread can beat all of them, so both are tried.
            torch.set_num_threads(threads)
            if target.route == "wfpredict":
                points += inprocess.pipeline_limit(
                    handler("digit_segmenter"), handler("digit_classifier"), target.payload, n
                )
            elif target.route == "explanations":
                points += inprocess.handler_limit(
                    handler(target.model), target.payload, [1], n, explain=True
                )
            else:
                points += inprocess.handler_limit(
                    handler(target.model), target.payload, BATCH_SIZES, n
                )
        if target.route == "predictions":
            # The bare forward at the handler's best setting (and batch 1): how much of the
            # limit is the network itself.
            top = inprocess.best(points)
            torch.set_num_threads(top.threads)
            forward = inprocess.forward_limit(
                handler(target.model), target.payload, sorted({1, top.batch_size}), n
            )
        torch.set_num_threads(default_threads)
        top = inprocess.best(points)
        entry: dict[str, Any] = {
            "handler": [p.to_dict() for p in points],
            "best_images_per_s": top.images_per_s,
            "best_batch_size": top.batch_size,
            "best_threads": top.threads,
            "best_p50_ms": top.p50_ms,
            "batch1_p50_ms": min(p.p50_ms for p in points if p.batch_size == 1),
        }
        if forward:
            fwd = inprocess.best(forward)
            entry |= {
                "forward": [p.to_dict() for p in forward],
                "forward_images_per_s": fwd.images_per_s,
                "forward_batch_size": fwd.batch_size,
                "forward_threads": fwd.threads,
            }
        limits[target.name] = entry
    return limits


# ---- 2./3. served -------------------------------------------------------------------------


def load_levels(
    target: Target, url: str, headers: dict[str, str], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Every concurrency level against one URL; stops early when a level fails entirely."""
    request = Request(url, target.payload, {**JSON_HEADERS, **headers})
    # Untimed warm-up: a server's first requests pay one-time costs (the JIT of TorchServe's
    # Java frontend, lazy imports and allocator growth in the workers) that would otherwise
    # land on whichever row happens to be measured first.
    count = request_count(target, args)
    run_level(request, min(8, max(args.levels)), max(8, count // 4), max_seconds=args.max_seconds)
    out = []
    for concurrency in args.levels:
        result = run_level(request, concurrency, count, max_seconds=args.max_seconds)
        log.info(
            "  %-28s c=%-3d %7.1f req/s p50 %7.1f p95 %7.1f ms (ok %d/%d, client cpu %.2f)",
            target.name,
            concurrency,
            result.rps,
            result.p50_ms,
            result.p95_ms,
            result.ok,
            result.requests,
            result.client_cpu,
        )
        out.append(result.to_dict())
        if result.ok == 0:
            log.warning("  every request failed: %s", result.errors[:1])
            break
    return out


def row(target: str, server: str, config: str, **extra: Any) -> dict[str, Any]:
    return {"target": target, "server": server, "config": config, **extra}


def guarded(rows: list[dict[str, Any]], entry: dict[str, Any], run: Callable[[], Any]) -> None:
    """Run one row's measurement; a failure is recorded in the row, the run goes on."""
    try:
        entry["levels"] = run()
    except Exception as exc:  # one broken server must not lose the whole run's figures
        log.exception("%s on %s failed", entry["target"], entry["server"])
        entry["levels"] = []
        entry["error"] = f"{type(exc).__name__}: {exc}"
    rows.append(entry)


def serving_of(checkpoint: Path) -> Any:
    """cvserve's archive settings for this checkpoint on this machine (for LitServe too)."""
    from model_src import read_checkpoint
    from tools.archive import Machine, choose_serving_config, count_parameters

    card, state = read_checkpoint(checkpoint)
    return choose_serving_config(card, count_parameters(state), Machine.detect())


def measure_peers(
    targets: list[Target], checkpoints: dict[str, Path], work: Path, args: argparse.Namespace
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for target in (t for t in targets if t.peers):
        ckpt = str(checkpoints[target.model])
        log.info("flask: %s", target.name)

        def flask(target: Target = target, ckpt: str = ckpt) -> list[dict[str, Any]]:
            with peer_server(
                "tools.bench.flask_server",
                [ckpt],
                "/ping",
                log_file=work / f"flask-{target.name}.log",
            ) as base:
                return load_levels(target, base + target.path(), {}, args)

        guarded(
            rows,
            row(target.name, "flask", f"threaded, 1 forward/request, {CORES} thread(s)"),
            flask,
        )
        serving = serving_of(checkpoints[target.model])
        batch, delay = serving.batch_size, serving.max_batch_delay_ms
        log.info("litserve: %s (batch %d, %d ms)", target.name, batch, delay)

        cmd = [ckpt, "--max-batch-size", str(batch), "--batch-timeout", str(delay / 1000)]

        def lit(target: Target = target, cmd: list[str] = cmd) -> list[dict[str, Any]]:
            with peer_server(
                "tools.bench.litserve_server",
                cmd,
                "/health",
                log_file=work / f"litserve-{target.name}.log",
            ) as base:
                return load_levels(target, base + "/predict", {}, args)

        guarded(
            rows, row(target.name, "litserve", f"batch {batch}, {delay} ms, {CORES} thread(s)"), lit
        )
    return rows


def measure_torchserve(
    targets: list[Target], checkpoints: dict[str, Path], work: Path, args: argparse.Namespace
) -> list[dict[str, Any]]:
    from tools.bench import torchserve_runner as tsr

    models = list(dict.fromkeys(t.model for t in targets if t.route != "wfpredict"))
    workflow = any(t.route == "wfpredict" for t in targets)
    if workflow:
        models = list(dict.fromkeys([*models, "digit_classifier", "digit_segmenter"]))
    sweep = {} if args.no_sweep else SWEEP
    if args.quick:  # one alternative per model
        sweep = {m: v[:1] for m, v in sweep.items()}
    variants = tsr.variants_for(models, sweep)
    peer_models = {t.model for t in targets if t.peers}
    variants = [v for v in variants if v.config == "tuned" or v.model in peer_models]
    log.info("torchserve: archiving %d variants", len(variants))
    settings = tsr.build_store(work / "store", checkpoints, variants, workflow=workflow)
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    with tsr.torchserve(work / "ts", work / "store", variants, workflow=workflow) as server:
        log.info("torchserve up in %.0f s", time.monotonic() - started)
        for target in targets:
            if target.route == "wfpredict":
                url = f"{server.inference}/wfpredict/{target.model}"
                guarded(
                    rows,
                    row(target.name, "torchserve", "workflow (spec.yaml)"),
                    lambda url=url, target=target: load_levels(target, url, server.headers, args),
                )
                continue
            for variant in (v for v in variants if v.model == target.model):
                if variant.config != "tuned" and not target.peers:
                    continue  # explanations: tuned archive only
                s = settings.get(variant.name, {})
                threads = worker_threads(s)
                config = (
                    f"{variant.config}: batch {s.get('batch_size')}, "
                    f"{s.get('max_batch_delay_ms')} ms, {s.get('min_workers')} worker(s) x "
                    f"{threads} thread(s)"
                )
                url = f"{server.inference}/{target.route}/{variant.name}"
                guarded(
                    rows,
                    row(target.name, "torchserve", config, settings=s),
                    lambda url=url, target=target: load_levels(target, url, server.headers, args),
                )
    return rows


def worker_threads(settings: dict[str, Any]) -> int | str:
    """The torch threads each worker of an archive with these settings runs (the handler's
    own rule, so the table says what really ran)."""
    from handlers.base import threads_per_worker
    from tools.archive import ServingConfig

    try:
        model_config = ServingConfig(**settings).to_yaml_dict()
    except TypeError:  # settings of an older archive stamp
        return "?"
    return threads_per_worker(model_config, CORES, os.environ) or torch.get_num_threads()


def goal_notes(result: dict[str, Any]) -> list[str]:
    """The issue's goals, computed from this run's figures (stated, never faked)."""
    rows, limits, top = result["rows"], result["limits"], max(result["concurrency"])

    def level(target: str, server: str, config_prefix: str, c: int) -> dict[str, Any]:
        for r in rows:
            if (r["target"], r["server"]) == (target, server) and r["config"].startswith(
                config_prefix
            ):
                for lv in r.get("levels", []):
                    if lv["concurrency"] == c:
                        return lv
        return {}

    notes = []
    for target in (
        subjects.HEAVY_CLASSIFIER,
        subjects.HEAVY_SEGMENTER,
        "digit_classifier",
        "digit_segmenter",
    ):
        tuned = level(target, "torchserve", "tuned", top).get("rps", math.nan)
        if math.isnan(tuned):
            continue
        lim = (limits.get(target) or {}).get("best_images_per_s", math.nan)
        flask = level(target, "flask", "", top).get("rps", math.nan)
        lit = level(target, "litserve", "", top).get("rps", math.nan)
        notes.append(
            f"{target} c={top}: tuned TorchServe {tuned:.1f} req/s = "
            f"{ratio(tuned, lim):.2f} x limit (goal >= 0.8 for the heavy pair), "
            f"{ratio(tuned, flask):.2f} x Flask (goal >= 1.5), {ratio(tuned, lit):.2f} x LitServe "
            "(goal > 1)."
        )
    c1 = level("digit_classifier", "torchserve", "tuned", 1).get("p50_ms", math.nan)
    inproc = (limits.get("digit_classifier") or {}).get("batch1_p50_ms", math.nan)
    if not math.isnan(c1):
        notes.append(
            f"digit_classifier c=1 overhead: p50 {c1:.1f} ms served vs {inproc:.1f} ms "
            f"in-process = {c1 - inproc:.1f} ms (goal < 3 ms)."
        )
    pipe = level("digit_pipeline", "torchserve", "workflow", 1).get("p50_ms", math.nan)
    seg = level("digit_segmenter", "torchserve", "tuned", 1).get("p50_ms", math.nan)
    if not math.isnan(pipe):
        notes.append(
            f"digit_pipeline c=1 p50 {pipe:.1f} ms vs segmenter + classifier p50 + 10 ms = "
            f"{seg + c1 + 10:.1f} ms (goal: below)."
        )
    return notes


# ---- CLI ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small run for development (< 3 min)")
    parser.add_argument("--only", help=f"targets or groups ({', '.join(GROUPS)}), comma-separated")
    parser.add_argument("--requests", type=int, help="requests per concurrency level (all targets)")
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)), help="concurrency levels")
    parser.add_argument(
        "--skip",
        default="",
        help="comma list of: limit, flask, litserve, torchserve, training (peers = flask,litserve)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="time cap per level (default 45 s, quick 15 s)",
    )
    parser.add_argument("--no-sweep", action="store_true", help="no TorchServe sweep variants")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument(
        "--render",
        type=Path,
        help="only re-render the table and plot of a results JSON (next to it)",
    )
    parser.add_argument(
        "--publish",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="copy table and plot to bench/latest.* (default: full runs)",
    )
    return parser


def render(path: Path, *, publish: bool) -> int:
    """Rewrite `<stem>.md` / `<stem>.png` from `<stem>.json` (e.g. after a report change)."""
    import json

    result = json.loads(path.read_text(encoding="utf-8"))
    order = {name: i for i, name in enumerate(result.get("targets", []))}
    result["rows"].sort(key=lambda r: (order.get(r["target"], 99), *report.row_rank(r)))
    table = report.markdown(result)
    path.with_suffix(".md").write_text(table, encoding="utf-8")
    png = report.plot(result, path.with_suffix(".png"))
    if publish:
        shutil.copyfile(path.with_suffix(".md"), REPO_ROOT / "bench" / "latest.md")
        if png:
            shutil.copyfile(png, REPO_ROOT / "bench" / "latest.png")
    print(table)
    return 0


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM (e.g. `timeout`) unwinds like Ctrl-C, so every server started is stopped."""
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("tools.archive", "tools.serve", "tools.sandbox", "model_src", "handlers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.render:
        return render(args.render, publish=bool(args.publish))
    args.levels = [int(c) for c in args.levels.split(",")]
    if args.max_seconds is None:
        args.max_seconds = 15.0 if args.quick else 45.0
    skip = {s.strip() for s in args.skip.replace("peers", "flask,litserve").split(",") if s}
    machine = machine_info()
    now = _dt.datetime.now(_dt.UTC)
    result: dict[str, Any] = {
        "started": now.isoformat(timespec="seconds"),
        "machine": machine,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "quick": args.quick,
        "concurrency": args.levels,
        "argv": list(argv) if argv is not None else None,
    }
    work = Path(tempfile.mkdtemp(prefix="cvserve-bench-"))
    try:
        checkpoints = subjects.prepare_checkpoints(work / "checkpoints")
        trained = subjects.trained(checkpoints)
        result["weights_note"] = ", ".join(
            f"{name} {'trained' if ok else 'random weights'}" for name, ok in trained.items()
        )
        targets = select_targets(
            subjects.build_targets(subjects.sample_images()), args.only, args.quick
        )
        result["targets"] = [t.name for t in targets]
        t0 = time.monotonic()
        result["limits"] = {} if "limit" in skip else measure_limits(targets, checkpoints, args)
        rows: list[dict[str, Any]] = []
        peers = [t for t in targets if t.peers]
        if peers and not {"flask", "litserve"} <= skip:
            rows += [
                r for r in measure_peers(peers, checkpoints, work, args) if r["server"] not in skip
            ]
        if "torchserve" not in skip:
            try:
                rows += measure_torchserve(targets, checkpoints, work, args)
            except Exception as exc:  # keep the figures measured so far
                log.exception("TorchServe could not be measured")
                rows += [
                    row(t.name, "torchserve", "not measured", levels=[], error=str(exc))
                    for t in targets
                ]
        if "training" not in skip:
            log.info("training throughput: %s", ", ".join(training.DEFAULT_CONFIGS))
            result["training"] = training.measure_all(
                max_batches=15 if args.quick else 10_000,  # full: one epoch or 15 s
                max_seconds=min(15.0, args.max_seconds),
            )
        order = {t.name: i for i, t in enumerate(targets)}
        rows.sort(key=lambda r: (order[r["target"]], *report.row_rank(r)))
        result["rows"] = rows
        result["duration_s"] = round(time.monotonic() - t0, 1)
        result["notes"] = goal_notes(result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    host = machine["host"].split(".")[0]
    stem = f"{now:%Y%m%d-%H%M}-{host}-{machine['cores']}c-{machine['device'].lower()}"
    stem += "-quick" if args.quick else ""
    args.out.mkdir(parents=True, exist_ok=True)
    report.write_json(result, args.out / f"{stem}.json")
    table = report.markdown(result)
    (args.out / f"{stem}.md").write_text(table, encoding="utf-8")
    png = report.plot(result, args.out / f"{stem}.png")
    publish = (not args.quick) if args.publish is None else args.publish
    if publish:
        shutil.copyfile(args.out / f"{stem}.md", REPO_ROOT / "bench" / "latest.md")
        if png:
            shutil.copyfile(png, REPO_ROOT / "bench" / "latest.png")
    print(table)
    print(f"wrote {args.out / stem}.json/.md/.png in {result['duration_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
