"""`python -m tools.bench [--quick] [--only classifier,...] [--duration S] [--repeats N]`
(`make bench`).

One run, one machine, every figure next to the figures it is compared with, like for like:
1. the in-process limit (handler, best batch size and thread count) and the bare forward,
   per target and per forward that a served row runs: the backend sweep (`--backends`,
   issue 17) limits and serves the digit models and the heavy pair with each of eager,
   torch.compile, ONNX Runtime and OpenVINO, and times one worker's start-up for each; a
   served row's limit is the best backend in-process;
2. the peers on the four models' prediction routes, each with the archive's model-config
   (torch threads, torch.compile) and the same CPU budget (workers x threads) as the tuned
   TorchServe archive: hand-written Flask in one process, Flask under gunicorn with the
   archive's workers, LitServe with its batching and the archive's workers;
3. TorchServe: cvserve's tuned archives, TorchServe's real defaults (archives without a
   model-config) and sweep variants, explanations too: one sandboxed server per model (its
   variants side by side), then one for the pipeline workflow;
4. training throughput of the default configs: the trainer's DataLoader vs a plain loop.
Every level runs `--duration` seconds (10) after a warm-up, `--repeats` times (3); tables
give the median (min-max), and a goal counts as met only when its whole range clears it.
Every row's answers are checked against the in-process answer (`answers`). What each row ran
is read back from the processes that ran it.
Writes `bench/results/<date>-<machine>[-quick].{json,md,png}`; `--publish` (default for a full
run) also copies the table and plot to `bench/latest.md` / `bench/latest.png` for the README,
which a busy machine refuses unless `--allow-busy` (the report says so).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gc
import json
import logging
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from handlers.contract import CLASSIFIER, PIPELINE, SEGMENTER
from tools.bench import answers, inprocess, report, subjects, training
from tools.bench.loadgen import Request, run_level
from tools.bench.machine import (
    busy_reason,
    cores,
    loadavg,
    machine_info,
    may_publish,
    wait_until_idle,
)
from tools.bench.servers import peer_server
from tools.bench.stats import Spread, combine_repeats
from tools.bench.subjects import Target

log = logging.getLogger("tools.bench")

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS = REPO_ROOT / "bench" / "results"
LEVELS = (1, 8, 32)
BATCH_SIZES = (1, 8, 32)
DURATION_S = 10.0
"""Seconds each level (and each limit point) measures, after its warm-up."""
REPEATS = 3
SAMPLE = 4
"""Responses per level and repeat compared with the in-process answer."""
GROUPS = {
    "classifier": [CLASSIFIER],
    "segmenter": [SEGMENTER],
    "digits": [CLASSIFIER, SEGMENTER],
    "pipeline": [PIPELINE, "digit_pipeline_page"],
    "page": ["digit_pipeline_page"],
    "explain": [f"explain_{m}" for m in subjects.EXPLAIN_METHODS],
    "heavy": [subjects.HEAVY_CLASSIFIER, subjects.HEAVY_SEGMENTER],
    "resnet18": [subjects.HEAVY_CLASSIFIER],
    "unet": [subjects.HEAVY_SEGMENTER],
}
QUICK_TARGETS = (CLASSIFIER, PIPELINE, "explain_saliency")
ONE_WORKER = {"min_workers": 1, "max_workers": 1}
SWEEP: dict[str, list[tuple[str, dict[str, Any]]]] = {
    CLASSIFIER: [
        ("w1", ONE_WORKER),
        ("b32", {"batch_size": 32}),
    ],
    SEGMENTER: [
        ("w1", ONE_WORKER),
    ],
    subjects.HEAVY_CLASSIFIER: [
        ("w1", ONE_WORKER),  # 1 x all threads: the earlier rule for large models
    ],
    subjects.HEAVY_SEGMENTER: [
        ("w1", ONE_WORKER),
    ],
}
"""TorchServe settings tried next to the tuned archive (tuning evidence; full run only)."""
BACKEND_SWEEP_MODELS = (
    CLASSIFIER,
    SEGMENTER,
    subjects.HEAVY_CLASSIFIER,
    subjects.HEAVY_SEGMENTER,
)
"""Models whose archive is also served with every other backend of `--backends` (rows
`sweep <mode>`), each with its in-process limit and its worker start-up time (issue 17)."""
CORES = cores()
JSON_HEADERS = {"Content-Type": "application/json"}
PEERS = ("flask", "gunicorn", "litserve")


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


def sweep_of(args: argparse.Namespace) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """The TorchServe sweep variants of this run (none with --no-sweep, one each when quick),
    plus one variant per backend of `--backends` for the backend-swept models (the one
    equal to the tuned archive's backend is left out later, see `Subjects.sweep`)."""
    if args.no_sweep:
        return {}
    sweep = {
        m: [] if args.backends_only else list(v[:1] if args.quick else v) for m, v in SWEEP.items()
    }
    for model in BACKEND_SWEEP_MODELS:
        sweep.setdefault(model, [])
        sweep[model] += [(mode, {"backend": subjects.MODES[mode]}) for mode in args.backends]
    return sweep


mode_of = subjects.mode_of
runtime_mode = subjects.runtime_mode


def backend_mode(overrides: dict[str, Any]) -> str | None:
    """The bench mode a sweep variant's overrides ask for (None: the tuned one)."""
    backend = overrides.get("backend")
    return {b: m for m, b in subjects.MODES.items()}.get(backend) if backend else None


class Subjects:
    """The archive configs, in-process handlers and reference answers of one run, shared by
    the limits, the peers and the answer checks.

    Handlers are held only while the run works with them: loading one of another model,
    forward or thread count releases the others (the digit models stay together, the
    pipeline runs both). Holding all of them got a full run OOM-killed at 17 GB: ONNX
    Runtime and OpenVINO sessions keep their memory arenas. Reference answers are kept."""

    def __init__(
        self, checkpoints: dict[str, Path], args: argparse.Namespace, work: Path | None = None
    ) -> None:
        self.checkpoints = checkpoints
        self.args = args
        self.work = work or Path(tempfile.mkdtemp(prefix="cvserve-bench-exports-"))
        self._configs: dict[str, dict[str, Any]] = {}
        self._handlers: dict[tuple[str, str, int | None], Any] = {}
        self.references: dict[tuple[str, str], dict[str, Any]] = {}

    def tuned(self, model: str) -> dict[str, Any]:
        """The tuned archive's model-config for `model` (what `tools.archive` writes)."""
        if model not in self._configs:
            self._configs[model] = subjects.archive_config(self.checkpoints[model])
        return self._configs[model]

    def config(self, model: str, mode: str) -> dict[str, Any]:
        """The tuned model-config with the forward `mode` (a backend sweep variant's)."""
        config = self.tuned(model)
        return config if mode_of(config) == mode else subjects.with_mode(config, mode)

    def sweep(self, model: str) -> list[tuple[str, dict[str, Any]]]:
        """The sweep variants of `model`, without the backend variant that equals the tuned
        archive (that row is the tuned one)."""
        tuned = mode_of(self.tuned(model))
        return [
            (tag, o) for tag, o in sweep_of(self.args).get(model, []) if backend_mode(o) != tuned
        ]

    def modes(self, target: Target) -> list[str]:
        """The forwards cvserve's rows of `target` run: the tuned one, plus every backend of
        the sweep for a prediction target (each gets its in-process limit; the limit a served
        row is compared with is the best of them, see report.best_limit)."""
        model = CLASSIFIER if target.route == "wfpredict" else target.model
        tuned = mode_of(self.tuned(model))
        if not target.peers:
            return [tuned]
        swept = [backend_mode(o) for _, o in self.sweep(model)]
        return list(dict.fromkeys([tuned, *(m for m in swept if m)]))

    def checkpoint(self, model: str, mode: str) -> Path:
        """The checkpoint the in-process handler and the peers load for `mode`: with its
        export next to it for the exported backends (built once per run)."""
        return subjects.exported_checkpoint(self.checkpoints[model], model, mode, self.work)

    def handler(self, model: str, mode: str, threads: int | None = None) -> Any:
        """The in-process handler of `model` with forward `mode`. `threads`: an exported
        runtime's thread count is fixed when its session is made, so each thread count of
        the limit's scan gets its own handler (torch's own forwards follow
        torch.set_num_threads and share one)."""
        threads = threads if mode in subjects.EXPORTED_MODES else None
        key = (model, mode, threads)
        if key not in self._handlers:
            self._release_all_but(key)
            log.info(
                "loading %s in-process (%s%s)",
                model,
                mode,
                f", {threads} threads" if threads else "",
            )
            config = self.config(model, mode)
            if threads:
                config = {**config, "handler": {**config["handler"], "torch_threads": threads}}
            self._handlers[key] = subjects.load_handler(self.checkpoint(model, mode), config)
        return self._handlers[key]

    def held(self) -> list[tuple[str, str, int | None]]:
        """The (model, mode, threads) of the handlers in memory now."""
        return list(self._handlers)

    def _release_all_but(self, key: tuple[str, str, int | None]) -> None:
        """Drop every handler `key`'s work does not share: another forward or thread count,
        or a model outside its group (both digit models form one, for the pipeline)."""
        model = key[0]
        group = set(subjects.DIGIT_MODELS) if model in subjects.DIGIT_MODELS else {model}
        dropped = [k for k in self._handlers if k[0] not in group or k[1:] != key[1:]]
        for k in dropped:
            del self._handlers[k]
        if dropped:
            gc.collect()  # sessions in reference cycles go now, not at some later collection

    def reference(self, target: Target, mode: str | None) -> dict[str, Any] | None:
        """The in-process answer to the target's request, with the forward `mode` the
        serving row ran (the tuned one when it is unknown)."""
        mode = mode if mode in subjects.MODES else self.modes(target)[0]
        key = (target.name, mode)
        if key not in self.references:
            if target.route == "wfpredict":
                answer = inprocess.pipeline_answer(
                    None,
                    None,
                    self.handler(SEGMENTER, mode),
                    self.handler(CLASSIFIER, mode),
                    target.payload,
                )
            else:
                answer = inprocess.reference_answer(
                    self.handler(target.model, mode),
                    target.payload,
                    explain=target.route == "explanations",
                )
            self.references[key] = answer
        return self.references[key]


# ---- 1. limits ----------------------------------------------------------------------------


def point_summary(points: Sequence[inprocess.LimitPoint]) -> dict[str, Any]:
    """Repeats of one in-process setting: throughput and per-call p50 as spreads."""
    return {
        "batch_size": points[0].batch_size,
        "threads": points[0].threads,
        "compiled": points[0].compiled,
        "backend": points[0].backend,
        "images_per_s": Spread.of([p.images_per_s for p in points]).to_dict(),
        "p50_ms": Spread.of([p.p50_ms for p in points]).to_dict(),
        "repeats": [p.to_dict() for p in points],
    }


def measure_limit(target: Target, mode: str, subs: Subjects) -> dict[str, Any]:
    """One target's limit with one forward: a short scan of batch sizes x thread counts (the
    archive's threads per worker and its whole budget), then the best setting and batch 1
    each measured `repeats` times; the bare forward likewise at the best setting."""
    args = subs.args
    scan_s = max(0.3, args.duration / 5)
    model = CLASSIFIER if target.route == "wfpredict" else target.model
    workers, threads = subjects.budget(subs.config(model, mode))
    thread_options = sorted({threads, workers * threads})

    def measure(sizes: Sequence[int], seconds: float, threads: int) -> list[inprocess.LimitPoint]:
        if target.route == "wfpredict":
            seg = subs.handler(SEGMENTER, mode, threads)
            cls = subs.handler(CLASSIFIER, mode, threads)
            torch.set_num_threads(threads)
            return inprocess.pipeline_limit(seg, cls, target.payload, seconds)
        handler = subs.handler(target.model, mode, threads)
        torch.set_num_threads(threads)
        explain = target.route == "explanations"
        return inprocess.handler_limit(handler, target.payload, sizes, seconds, explain=explain)

    explained = target.route in ("wfpredict", "explanations")
    sizes: Sequence[int] = [1] if explained else args.batch_sizes
    scan: list[inprocess.LimitPoint] = []
    for count in thread_options:
        scan += measure(sizes, scan_s, count)
    top = inprocess.best(scan)
    best_points: list[inprocess.LimitPoint] = []
    batch1: list[inprocess.LimitPoint] = []
    for _ in range(args.repeats):
        best_points += measure([top.batch_size], args.duration, top.threads)
        if top.batch_size != 1:
            batch1 += measure([1], args.duration / 2, top.threads)
    entry: dict[str, Any] = {
        "mode": mode,
        "scan": [p.to_dict() for p in scan],
        "best": point_summary(best_points),
        "batch1": point_summary(batch1 or best_points),
    }
    if target.route == "predictions":
        handler = subs.handler(target.model, mode, top.threads)
        torch.set_num_threads(top.threads)
        forward = inprocess.forward_limit(
            handler, target.payload, sorted({1, top.batch_size}), scan_s
        )
        fwd_top = inprocess.best(forward)
        entry["forward"] = point_summary(
            inprocess.repeat_point(
                lambda s: inprocess.forward_limit(handler, target.payload, [fwd_top.batch_size], s),
                args.duration / 2,
                args.repeats,
            )
        )
    return entry


def measure_limits(targets: list[Target], subs: Subjects) -> dict[str, Any]:
    """In-process limits per target and forward mode: `{target: {mode: entry}}`."""
    default_threads = torch.get_num_threads()
    limits: dict[str, Any] = {}
    try:
        for target in targets:
            limits[target.name] = {}
            for mode in subs.modes(target):
                log.info("limit: %s (%s)", target.name, mode)
                entry = measure_limit(target, mode, subs)
                best = Spread.from_dict(entry["best"]["images_per_s"])
                log.info(
                    "  %s %s: %s img/s at batch %d, %d thread(s)",
                    target.name,
                    mode,
                    best.text(),
                    entry["best"]["batch_size"],
                    entry["best"]["threads"],
                )
                limits[target.name][mode] = entry
    finally:
        torch.set_num_threads(default_threads)
    return limits


# ---- 2./3. served -------------------------------------------------------------------------


def load_levels(
    target: Target,
    url: str,
    headers: dict[str, str],
    args: argparse.Namespace,
    reference: Callable[[], dict[str, Any] | None],
) -> list[dict[str, Any]]:
    """Every concurrency level against one URL, `repeats` times (all levels, then again, so a
    slow minute of the machine does not land on one level only), each sampled answer checked
    against the in-process one; stops when a level fails entirely."""
    request = Request(url, target.payload, {**JSON_HEADERS, **headers})
    # Untimed warm-up: a server's first requests pay one-time costs (the JIT of TorchServe's
    # Java frontend, lazy imports and allocator growth in the workers) that would otherwise
    # land on whichever row happens to be measured first.
    run_level(request, min(8, max(args.levels)), duration=max(1.0, args.duration / 4))
    expected = reference()
    results: dict[int, list[Any]] = {c: [] for c in args.levels}
    checks: dict[int, list[dict[str, Any]]] = {c: [] for c in args.levels}
    for repeat in range(args.repeats):
        for concurrency in args.levels:
            result = run_level(request, concurrency, duration=args.duration, sample=SAMPLE)
            check = answers.check(expected, result.samples)
            results[concurrency].append(result)
            checks[concurrency].append(check)
            log.info(
                "  %-24s #%d c=%-3d %7.1f req/s p50 %7.1f p95 %7.1f ms (ok %d/%d, answers "
                "%d/%d, client cpu %.2f)",
                target.name,
                repeat + 1,
                concurrency,
                result.rps,
                result.p50_ms,
                result.p95_ms,
                result.ok,
                result.requests,
                check["checked"] - check["mismatches"],
                check["checked"],
                result.client_cpu,
            )
            if result.ok == 0:
                log.warning("  every request failed: %s", result.errors[:1])
                return [
                    {**combine_repeats(results[c]), "answers": answers.merge(checks[c])}
                    for c in args.levels
                    if results[c]
                ]
    return [
        {**combine_repeats(results[c]), "answers": answers.merge(checks[c])} for c in args.levels
    ]


def row(target: str, server: str, config: str, **extra: Any) -> dict[str, Any]:
    return {"target": target, "server": server, "config": config, **extra}


def not_measured(targets: list[Target], exc: Exception) -> list[dict[str, Any]]:
    """TorchServe rows for `targets` whose server failed: the error kept, the run going on."""
    return [row(t.name, "torchserve", "not measured", levels=[], error=str(exc)) for t in targets]


def finish_row(entry: dict[str, Any]) -> dict[str, Any]:
    """The row's answer check over all its levels (a mismatch anywhere fails the row)."""
    checks = [lv["answers"] for lv in entry.get("levels", []) if "answers" in lv]
    entry["answers"] = answers.merge(checks) if checks else None
    entry["answers_ok"] = answers.passed(entry["answers"])
    if entry["answers"] and entry["answers"]["mismatches"]:
        log.error(
            "%s on %s answered differently from in-process: %s",
            entry["target"],
            entry["server"],
            entry["answers"]["examples"],
        )
    return entry


def guarded(rows: list[dict[str, Any]], entry: dict[str, Any], run: Callable[[], Any]) -> None:
    """Run one row's measurement; a failure is recorded in the row, the run goes on."""
    try:
        entry["levels"] = run()
    except Exception as exc:  # one broken server must not lose the whole run's figures
        log.exception("%s on %s failed", entry["target"], entry["server"])
        entry["levels"] = []
        entry["error"] = f"{type(exc).__name__}: {exc}"
    rows.append(finish_row(entry))


def read_back(entry: dict[str, Any], runtimes: list[dict[str, Any]]) -> None:
    """Put what the serving processes reported into the row."""
    entry["runtime"] = runtimes
    entry["mode"] = runtime_mode(runtimes)
    entry["ran"] = subjects.describe_runtime(runtimes)


@dataclass(frozen=True)
class Peer:
    """One peer server of one target: how to start it and what to call it in the table."""

    server: str
    config: str
    command: Callable[[int, Path], list[str]]  # (port, runtime folder) -> argv
    route: str
    processes: int
    env: dict[str, str] = field(default_factory=dict)


def peers_of(target: Target, ckpt: str, config: dict[str, Any]) -> list[Peer]:
    """Flask in one process, Flask on gunicorn and LitServe for one target, each with the
    tuned archive's model-config (torch threads, compiling) and CPU budget (workers x
    threads): the single process gets the whole budget as torch threads."""
    workers, threads = subjects.budget(config)
    batch, delay = config["batchSize"], config["maxBatchDelay"]
    single = json.dumps(subjects.with_workers(config, 1, workers * threads))
    tuned = json.dumps(config)
    python = sys.executable
    return [
        Peer(
            "flask",
            f"one process (Werkzeug threaded), 1 forward/request, {workers * threads} torch "
            "thread(s)",
            lambda port, runtime: [
                python,
                "-m",
                "tools.bench.flask_server",
                ckpt,
                "--port",
                str(port),
                "--model-config",
                single,
                "--runtime-dir",
                str(runtime),
            ],
            target.path(),
            1,
        ),
        Peer(
            "gunicorn",
            f"Flask on gunicorn gthread, {workers} worker(s) x 1 request thread, {threads} "
            "torch thread(s) each",
            lambda port, runtime: [
                python,
                "-m",
                "gunicorn",
                "--worker-class",
                "gthread",
                "--workers",
                str(workers),
                "--threads",
                "1",
                "--bind",
                f"127.0.0.1:{port}",
                "--timeout",
                "600",
                "--log-level",
                "warning",
                "tools.bench.flask_server:app_from_env()",
            ],
            target.path(),
            workers,
            {"CVSERVE_BENCH_CHECKPOINT": ckpt, "CVSERVE_BENCH_MODEL_CONFIG": tuned},
        ),
        Peer(
            "litserve",
            f"batch {batch}, {delay} ms, {workers} worker(s) x {threads} torch thread(s)",
            lambda port, runtime: [
                python,
                "-m",
                "tools.bench.litserve_server",
                ckpt,
                "--port",
                str(port),
                "--max-batch-size",
                str(batch),
                "--batch-timeout",
                str(delay / 1000),
                "--workers",
                str(workers),
                "--model-config",
                tuned,
                "--runtime-dir",
                str(runtime),
            ],
            "/predict",
            workers,
        ),
    ]


def measure_peers(
    targets: list[Target], subs: Subjects, work: Path, skip: set[str]
) -> list[dict[str, Any]]:
    """Every peer of every peer target (`peers_of`), answers checked, runtimes read back."""
    rows: list[dict[str, Any]] = []
    for target in (t for t in targets if t.peers):
        try:
            tuned = subs.tuned(target.model)
            ckpt = str(subs.checkpoint(target.model, mode_of(tuned)))
        except Exception as exc:  # one target's failure is its rows' error, not the run's
            log.exception("peers of %s could not be set up", target.name)
            rows.append(row(target.name, "peers", "not measured", levels=[], error=str(exc)))
            continue
        for peer in peers_of(target, ckpt, tuned):
            if peer.server in skip:
                continue
            log.info("%s: %s (%s)", peer.server, target.name, peer.config)
            entry = row(target.name, peer.server, peer.config)
            guarded(
                rows,
                entry,
                lambda entry=entry, peer=peer, target=target: serve_peer(
                    entry, peer, target, subs, work
                ),
            )
    return rows


def serve_peer(
    entry: dict[str, Any], peer: Peer, target: Target, subs: Subjects, work: Path
) -> list[dict[str, Any]]:
    runtime_dir = work / f"runtime-{peer.server}-{target.name}"
    runtime_dir.mkdir()
    with peer_server(
        lambda port: peer.command(port, runtime_dir),
        "/health" if peer.server == "litserve" else "/ping",
        log_file=work / f"{peer.server}-{target.name}.log",
        runtime_dir=runtime_dir,
        processes=peer.processes,
        env={**peer.env, "CVSERVE_BENCH_RUNTIME_DIR": str(runtime_dir)},
    ) as base:
        read_back(entry, subjects.read_runtimes(runtime_dir))
        log.info("%s: %s runs %s", peer.server, target.name, entry["ran"])
        return load_levels(
            target,
            base + peer.route,
            {},
            subs.args,
            lambda: subs.reference(target, entry["mode"]),
        )


def measure_torchserve(
    targets: list[Target],
    subs: Subjects,
    work: Path,
    on_server: Callable[[list[dict[str, Any]]], None] = lambda rows: None,
) -> list[dict[str, Any]]:
    """Every TorchServe row, one sandboxed server per group (`server_groups`); `on_server`
    gets the rows so far after each server, so a run that dies keeps them."""
    from tools.bench import torchserve_runner as tsr

    models = list(dict.fromkeys(t.model for t in targets if t.route != "wfpredict"))
    workflow = any(t.route == "wfpredict" for t in targets)
    if workflow:
        models = list(dict.fromkeys([*models, CLASSIFIER, SEGMENTER]))
    variants = tsr.variants_for(models, {m: subs.sweep(m) for m in models})
    peer_models = {t.model for t in targets if t.peers}
    variants = [v for v in variants if v.config == "tuned" or v.model in peer_models]
    log.info("torchserve: archiving %d variants", len(variants))
    settings = tsr.build_store(work / "store", subs.checkpoints, variants, workflow=workflow)
    rows: list[dict[str, Any]] = []
    for i, (group, group_targets) in enumerate(server_groups(targets, variants)):
        names = ", ".join(v.name for v in group)
        started = time.monotonic()
        uses_workflow = any(t.route == "wfpredict" for t in group_targets)
        try:
            with tsr.torchserve(
                work / f"ts-{i}", work / "store", group, workflow=uses_workflow
            ) as server:
                log.info("torchserve up in %.0f s: %s", time.monotonic() - started, names)
                rows += measure_on_server(server, group_targets, group, settings, subs)
        except Exception as exc:  # one server's failure is its rows' error, not the run's
            log.exception("TorchServe with %s could not be measured", names)
            rows += not_measured(group_targets, exc)
        on_server(rows)
    return rows


def server_groups(
    targets: list[Target], variants: list[Any]
) -> list[tuple[list[Any], list[Target]]]:
    """One TorchServe per model (its tuned archive and its variants) and one for the
    workflow (the tuned digit models it calls), each with the targets it serves.

    Why not one server for all: a full run registers about 25 variants, 50 worker
    processes, which did not come up on 2 cores and 24 GiB within the start-up timeout,
    and idle workers of other models would share the machine with every measurement."""
    groups: list[tuple[list[Any], list[Target]]] = []
    for model in dict.fromkeys(v.model for v in variants):
        served = [t for t in targets if t.model == model and t.route != "wfpredict"]
        if served:
            groups.append(([v for v in variants if v.model == model], served))
    flows = [t for t in targets if t.route == "wfpredict"]
    if flows:
        nodes = [v for v in variants if v.config == "tuned" and v.model in (CLASSIFIER, SEGMENTER)]
        groups.append((nodes, flows))
    return groups


def measure_on_server(
    server: Any,
    targets: list[Target],
    variants: list[Any],
    settings: dict[str, dict[str, Any]],
    subs: Subjects,
) -> list[dict[str, Any]]:
    """Every row of `targets` on one running TorchServe that serves `variants`."""
    args = subs.args
    rows: list[dict[str, Any]] = []
    for target in targets:
        if target.route == "wfpredict":
            url = f"{server.inference}/wfpredict/{target.model}"
            entry = row(target.name, "torchserve", "workflow (spec.yaml)")

            def run_workflow(
                entry: dict[str, Any] = entry, url: str = url, target: Target = target
            ) -> list[dict[str, Any]]:
                # the workflow's model nodes are registered as <workflow>__<node>
                runtimes = []
                for node in ("segmenter", "classifier"):
                    with contextlib.suppress(Exception):  # read-back is best effort
                        runtimes += server.describe(f"{target.model}__{node}")["runtimes"]
                read_back(entry, runtimes)
                entry["ran"] = f"segmenter + classifier nodes: {entry['ran']}"
                return load_levels(
                    target, url, server.headers, args, lambda: subs.reference(target, None)
                )

            guarded(rows, entry, run_workflow)
            continue
        for variant in (v for v in variants if v.model == target.model):
            if variant.config != "tuned" and not target.peers:
                continue  # explanations: tuned archive only
            s = settings.get(variant.name, {})
            config = (
                f"{variant.config}: batch {s.get('batch_size')}, "
                f"{s.get('max_batch_delay_ms')} ms, {s.get('min_workers')} worker(s), "
                f"threads {s.get('torch_threads') or 'rule'}, "
                f"{mode_of({'handler': {'backend': s.get('backend', 'eager')}})}"
                if s
                else f"{variant.config}: no model-config (TorchServe's defaults)"
            )
            entry = row(target.name, "torchserve", config, settings=s)
            url = f"{server.inference}/{target.route}/{variant.name}"
            timed = (
                target.model in BACKEND_SWEEP_MODELS
                and target.route == "predictions"
                and bool(args.backends)
                and (variant.config == "tuned" or "backend" in variant.overrides)
            )

            def run(
                entry: dict[str, Any] = entry,
                url: str = url,
                target: Target = target,
                name: str = variant.name,
                timed: bool = timed,
            ) -> list[dict[str, Any]]:
                if timed:
                    entry["startup_s"] = worker_startup(server, name)
                    log.info("torchserve: %s worker start-up %.1f s", name, entry["startup_s"])
                described = server.describe(name)
                read_back(entry, described["runtimes"])
                entry["ran"] = (
                    f"{described['workers']} worker(s), batch {described['batch_size']}, "
                    f"{described['max_batch_delay_ms']} ms; read back: {entry['ran']}"
                )
                entry["described"] = described
                log.info("torchserve: %s runs %s", name, entry["ran"])
                return load_levels(
                    target,
                    url,
                    server.headers,
                    args,
                    lambda: subs.reference(target, entry["mode"]),
                )

            guarded(rows, entry, run)
    return rows


def worker_startup(server: Any, name: str) -> float:
    """Seconds TorchServe takes to add one worker to `name` and have it READY (a
    synchronous scale-up: process start, handler load, compile or export session), measured
    on the running server; the worker count is then set back."""
    workers = len(server.client.describe(name)[0].get("workers") or [])
    started = time.monotonic()
    server.client.scale(name, workers + 1, workers + 1, synchronous=True)
    elapsed = time.monotonic() - started
    server.client.scale(name, workers, workers, synchronous=True)
    return round(elapsed, 1)


# ---- goals --------------------------------------------------------------------------------


def goal_notes(result: dict[str, Any]) -> list[str]:
    """The issue's goals, recomputed from this run's tables: met only when the whole
    min-max range clears the goal, and never for a row whose answers differed."""
    return report.goals(result)


# ---- CLI ----------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident memory (MiB): the run's own footprint, in the report."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small run for development")
    parser.add_argument("--only", help=f"targets or groups ({', '.join(GROUPS)}), comma-separated")
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)), help="concurrency levels")
    parser.add_argument(
        "--batch-sizes",
        default=",".join(map(str, BATCH_SIZES)),
        help="batch sizes the in-process limit scans (smaller ones for a short run of the "
        "heavy models on a busy machine)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help=f"seconds each level measures after its warm-up (default {DURATION_S:g}, quick 2)",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help=f"runs of each level (default {REPEATS}, quick 1)"
    )
    parser.add_argument(
        "--skip",
        default="",
        help="comma list of: limit, flask, gunicorn, litserve, torchserve, training "
        "(peers = flask,gunicorn,litserve)",
    )
    parser.add_argument("--no-sweep", action="store_true", help="no TorchServe sweep variants")
    parser.add_argument(
        "--backends",
        default=",".join(subjects.MODES),
        help="backend sweep: the forwards every backend-swept model is also limited and "
        f"served with ({', '.join(subjects.MODES)}; 'none' for no backend sweep)",
    )
    parser.add_argument(
        "--backends-only", action="store_true", help="the backend sweep without the other variants"
    )
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
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="S",
        help="wait up to S seconds for the 1- and 5-minute load to fall to the idle bar "
        "before measuring (`make bench` waits 20 min); the run then goes on, marked busy "
        "if it still is",
    )
    parser.add_argument(
        "--allow-busy",
        action="store_true",
        help="publish even when the machine was busy at the start (the report says so)",
    )
    return parser


def publish_files(stem_path: Path, png: Path | None) -> None:
    shutil.copyfile(stem_path.with_suffix(".md"), REPO_ROOT / "bench" / "latest.md")
    if png:
        shutil.copyfile(png, REPO_ROOT / "bench" / "latest.png")


def render(path: Path, *, publish: bool, allow_busy: bool) -> int:
    """Rewrite `<stem>.md` / `<stem>.png` from `<stem>.json` (e.g. after a report change)."""
    result = json.loads(path.read_text(encoding="utf-8"))
    order = {name: i for i, name in enumerate(result.get("targets", []))}
    result["rows"].sort(key=lambda r: (order.get(r["target"], 99), *report.row_rank(r)))
    result["notes"] = goal_notes(result)
    refused = publish and not may_publish(result.get("busy"), allow_busy)
    result["published"] = publish and not refused
    table = report.markdown(result)
    path.with_suffix(".md").write_text(table, encoding="utf-8")
    png = report.plot(result, path.with_suffix(".png"))
    print(table)
    if refused:
        print(f"refusing to publish a busy-machine run ({result['busy']}); --allow-busy")
        return 3
    if publish:
        publish_files(path, png)
    return 0


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM (e.g. `timeout`) unwinds like Ctrl-C, so every server started is stopped."""
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    noisy_loggers = ("tools.archive", "tools.serve", "tools.sandbox", "model_src", "handlers")
    for noisy in (*noisy_loggers, "onnxscript", "onnx_ir"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.render:
        return render(args.render, publish=bool(args.publish), allow_busy=args.allow_busy)
    args.levels = [int(c) for c in args.levels.split(",")]
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    args.backends = [] if args.backends == "none" else [b.strip() for b in args.backends.split(",")]
    unknown = [b for b in args.backends if b not in subjects.MODES]
    if unknown:
        raise SystemExit(f"unknown backend(s) {unknown}; choose from {', '.join(subjects.MODES)}")
    if args.duration is None:
        args.duration = 2.0 if args.quick else DURATION_S
    if args.repeats is None:
        args.repeats = 1 if args.quick else REPEATS
    skip = {
        s.strip()
        for s in args.skip.replace("peers", "flask,gunicorn,litserve").split(",")
        if s.strip()
    }
    machine = machine_info()
    load_start = wait_until_idle(machine["cores"], args.wait_idle, read=loadavg)  # 0: no wait
    now = _dt.datetime.now(_dt.UTC)
    busy = busy_reason(load_start, machine["cores"])
    publish = (not args.quick) if args.publish is None else args.publish
    if busy:
        log.warning("the machine is busy: %s", busy)
        if publish and not args.allow_busy:
            log.warning("this run will not replace bench/latest.* (use --allow-busy)")
    result: dict[str, Any] = {
        "started": now.isoformat(timespec="seconds"),
        "machine": machine,
        "loadavg": load_start,
        "busy": busy,
        "allow_busy": args.allow_busy,
        "quick": args.quick,
        "concurrency": args.levels,
        "duration_s_per_level": args.duration,
        "repeats": args.repeats,
        "argv": list(argv) if argv is not None else sys.argv[1:],
    }
    host = machine["host"].split(".")[0]
    stem = f"{now:%Y%m%d-%H%M}-{host}-{machine['cores']}c-{machine['device'].lower()}"
    stem += "-quick" if args.quick else ""
    stem += "-busy" if busy else ""
    args.out.mkdir(parents=True, exist_ok=True)
    partial = args.out / f"{stem}.partial.json"
    rows: list[dict[str, Any]] = []

    def save_partial(phase: str) -> None:
        """What was measured so far, after each phase: a crash or a kill an hour into a full
        run keeps its figures (the file goes when the run completes)."""
        report.write_json({**result, "rows": rows, "partial_after": phase}, partial)

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
        subs = Subjects(checkpoints, args, work / "exports")
        t0 = time.monotonic()
        result["limits"] = {} if "limit" in skip else measure_limits(targets, subs)
        save_partial("limits")
        if any(t.peers for t in targets) and not set(PEERS) <= skip:
            rows += measure_peers(targets, subs, work, skip)
            save_partial("peers")
        if "torchserve" not in skip:

            def served_so_far(served: list[dict[str, Any]]) -> None:
                report.write_json(
                    {**result, "rows": rows + served, "partial_after": "torchserve (part)"},
                    partial,
                )

            try:
                rows += measure_torchserve(targets, subs, work, served_so_far)
            except Exception as exc:  # keep the figures measured so far
                log.exception("TorchServe could not be measured")
                rows += not_measured(targets, exc)
            save_partial("torchserve")
        if "training" not in skip:
            log.info("training throughput: %s", ", ".join(training.DEFAULT_CONFIGS))
            result["training"] = training.measure_all(
                max_batches=15 if args.quick else 10_000,  # full: one epoch or 15 s
                max_seconds=min(15.0, args.duration * 1.5),
            )
        order = {t.name: i for i, t in enumerate(targets)}
        rows.sort(key=lambda r: (order[r["target"]], *report.row_rank(r)))
        result["rows"] = rows
        result["duration_s"] = round(time.monotonic() - t0, 1)
        result["loadavg_end"] = loadavg()
        result["bench_peak_rss_mb"] = peak_rss_mb()
        result["notes"] = goal_notes(result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["published"] = publish and may_publish(busy, args.allow_busy)
    report.write_json(result, args.out / f"{stem}.json")
    partial.unlink(missing_ok=True)
    table = report.markdown(result)
    (args.out / f"{stem}.md").write_text(table, encoding="utf-8")
    png = report.plot(result, args.out / f"{stem}.png")
    print(table)
    print(f"wrote {args.out / stem}.json/.md/.png in {result['duration_s']} s")
    if publish and not result["published"]:
        print(f"NOT published to bench/latest.*: the machine was busy ({busy}); --allow-busy")
        return 3
    if result["published"]:
        publish_files(args.out / stem, png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
