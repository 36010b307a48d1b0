"""The benchmark's outputs: the JSON record, the markdown tables and the PNG plot.

Rendering is pure (dict in, text out) so it is unit-tested without running anything
(tests/unit/test_bench_report.py). The JSON keeps every repeat of every level of every row;
the tables show the figures the comparison is about as `median (min-max)` over the repeats:
throughput and tail latency against concurrency, what each row really ran, its answer check,
the like-for-like ratios (to the in-process limit of the best backend, gunicorn-Flask, LitServe and
TorchServe's defaults) and the goals recomputed from them (`goals`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from handlers.contract import CLASSIFIER, PIPELINE, SEGMENTER
from tools.bench.stats import Spread, fmt, ratio

SERVER_ORDER = ("flask", "gunicorn", "litserve", "torchserve")
CONFIG_ORDER = ("tuned", "workflow", "ts-default", "sweep")
COMPARED = (
    ("limit", "in-process limit"),
    ("gunicorn", "gunicorn-Flask"),
    ("litserve", "LitServe"),
    ("ts-default", "TorchServe defaults"),
)
"""What each cvserve row is divided by in the ratio table, in order."""
HEAVY = ("bench_resnet18", "bench_unet256")


def row_rank(row: Mapping[str, Any]) -> tuple[int, int, str]:
    """Table order within a target: peers, then TorchServe tuned, default, sweep variants."""
    server = SERVER_ORDER.index(row["server"]) if row["server"] in SERVER_ORDER else 9
    config = next((i for i, c in enumerate(CONFIG_ORDER) if row["config"].startswith(c)), 9)
    return server, config, row["config"]


_fmt = fmt


def level_of(row: Mapping[str, Any], concurrency: int) -> Mapping[str, Any] | None:
    for level in row.get("levels", []):
        if level["concurrency"] == concurrency:
            return level
    return None


def spread(row: Mapping[str, Any] | None, concurrency: int, key: str = "rps") -> Spread:
    """A row's figure at one level over its repeats (missing when not measured)."""
    level = level_of(row, concurrency) if row else None
    return Spread.from_dict((level or {}).get(key))


def limit_entry(
    limits: Mapping[str, Any], target: str, mode: str | None
) -> Mapping[str, Any] | None:
    """The target's limit with forward `mode` (compiled / eager); None when not measured."""
    entries = limits.get(target) or {}
    return entries.get(mode) if mode else None


def limit_spread(limits: Mapping[str, Any], target: str, mode: str | None) -> Spread:
    entry = limit_entry(limits, target, mode)
    return Spread.from_dict(entry["best"]["images_per_s"] if entry else None)


def best_limit(limits: Mapping[str, Any], target: str) -> tuple[str | None, Spread]:
    """The target's in-process limit: the best backend in-process (highest median img/s
    over the forwards measured), and which backend that is (issue 17: the limit moves with
    the backend, every served row is compared with it)."""
    entries = limits.get(target) or {}
    spreads = {mode: Spread.from_dict(e["best"]["images_per_s"]) for mode, e in entries.items()}
    spreads = {m: v for m, v in spreads.items() if not v.missing}
    if not spreads:
        return None, Spread.from_dict(None)
    mode = max(spreads, key=lambda m: spreads[m].median)
    return mode, spreads[mode]


def is_cvserve(row: Mapping[str, Any]) -> bool:
    """A row of cvserve's own archives (tuned, sweep): the rows the ratios are about."""
    return row["server"] == "torchserve" and row["config"].startswith(("tuned", "sweep"))


def counterpart(
    rows: Sequence[Mapping[str, Any]], row: Mapping[str, Any], kind: str
) -> Mapping[str, Any] | None:
    """The row `row` is compared with: the peer `kind` running the same forward, or the
    TorchServe-defaults row of the same target (defaults are what they are: eager)."""
    for other in rows:
        if other["target"] != row["target"] or not other.get("levels"):
            continue
        if kind == "ts-default":
            if other["server"] == "torchserve" and other["config"].startswith("ts-default"):
                return other
        elif other["server"] == kind and other.get("mode") == row.get("mode"):
            return other
    return None


def ratio_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Like-for-like ratios: each cvserve row's req/s at each level over the in-process
    limit (the best backend in-process, `best_limit`), gunicorn-Flask and LitServe running
    the same forward, and TorchServe's defaults, as spreads. Rows that nothing is compared
    with are left out: tuned rows always, sweep rows only where their forward differs from
    the tuned one."""
    rows, limits, levels = result["rows"], result["limits"], result["concurrency"]
    tuned_mode = {
        r["target"]: r.get("mode")
        for r in rows
        if is_cvserve(r) and r["config"].startswith("tuned")
    }
    out = []
    for row in rows:
        if not is_cvserve(row) or not row.get("levels"):
            continue
        if row["config"].startswith("sweep") and row.get("mode") == tuned_mode.get(row["target"]):
            continue
        for kind, label in COMPARED:
            if kind == "limit":
                best_mode, best = best_limit(limits, row["target"])
                den = [best] * len(levels)
                label = f"{label} ({best_mode})" if best_mode else label
                other_ok = True
            else:
                other = counterpart(rows, row, kind)
                den = [spread(other, c) for c in levels]
                other_ok = bool(other) and other.get("answers_ok", True)
            values = [spread(row, c).over(d) for c, d in zip(levels, den, strict=True)]
            if all(v.missing for v in values):
                continue
            out.append(
                {
                    "target": row["target"],
                    "row": row["config"].split(":")[0],
                    "mode": row.get("mode") or "?",
                    "over": label,
                    "kind": kind,
                    "ratios": {c: v for c, v in zip(levels, values, strict=True)},
                    "answers_ok": bool(row.get("answers_ok")) and other_ok,
                }
            )
    return out


def goals(result: Mapping[str, Any]) -> list[str]:
    """The project's serving goals, recomputed from this run's tables. A goal is met only
    when the whole min-max range over the repeats clears it and the answers of both rows
    were checked equal to the in-process ones."""
    rows, top = result["rows"], max(result["concurrency"])
    table = {(r["target"], r["row"], r["kind"]): r for r in ratio_rows(result)}
    notes = []

    def verdict(ok: bool, answers_ok: bool) -> str:
        if not answers_ok:
            return "NOT MET (answers not checked equal)"
        return "met" if ok else "NOT MET"

    for target in (*HEAVY, CLASSIFIER, SEGMENTER):
        checks = [
            ("limit", 0.8, False, ">= 0.8" if target in HEAVY else ">= 0.8 (heavy pair only)"),
            ("gunicorn", 1.5, False, ">= 1.5"),
            ("litserve", 1.0, True, "> 1"),
        ]
        for kind, threshold, strict, goal in checks:
            entry = table.get((target, "tuned", kind))
            if not entry:
                continue
            value = entry["ratios"][top]
            ok = value.meets(threshold, strict=strict)
            graded = target in HEAVY or kind != "limit"
            status = verdict(ok, entry["answers_ok"]) if graded else "not a goal"
            notes.append(
                f"{target} c={top}: tuned TorchServe ({entry['mode']}) / {entry['over']} = "
                f"{value.text(2)}, goal {goal}: "
                f"{status}."
            )
    notes += backend_goals(result)

    def find(target: str, server: str, prefix: str) -> Mapping[str, Any] | None:
        return next(
            (
                r
                for r in rows
                if (r["target"], r["server"]) == (target, server)
                and r["config"].startswith(prefix)
                and r.get("levels")
            ),
            None,
        )

    cls = find(CLASSIFIER, "torchserve", "tuned")
    first = result["concurrency"][0]
    cls_limit = limit_entry(result["limits"], CLASSIFIER, (cls or {}).get("mode"))
    if cls and cls_limit and first == 1:
        served = spread(cls, 1, "p50_ms")
        inproc = Spread.from_dict(cls_limit["batch1"]["p50_ms"])
        overhead = served.minus(inproc)
        met = overhead.meets(3.0, above=False, strict=True)
        notes.append(
            f"digit_classifier c=1 overhead: p50 {served.text()} ms served - "
            f"{inproc.text()} ms in-process = {overhead.text()} ms, goal < 3 ms: "
            f"{verdict(met, bool(cls.get('answers_ok')))}."
        )
    pipe = find(PIPELINE, "torchserve", "workflow")
    seg = find(SEGMENTER, "torchserve", "tuned")
    if pipe and seg and cls and first == 1:
        served = spread(pipe, 1, "p50_ms")
        s, c = spread(seg, 1, "p50_ms"), spread(cls, 1, "p50_ms")
        budget = Spread(s.median + c.median + 10, s.low + c.low + 10, s.high + c.high + 10)
        ok = served.minus(budget).meets(0.0, above=False, strict=True)
        notes.append(
            f"digit_pipeline c=1 p50 {served.text()} ms vs segmenter + classifier p50 + 10 ms "
            f"= {budget.text()} ms, goal below: {verdict(ok, bool(pipe.get('answers_ok')))}."
        )
    return notes


def _ran_limit(entry: Mapping[str, Any], key: str = "best") -> str:
    best = entry[key]
    backend = best.get("backend") or ("compiled" if best["compiled"] else "eager")
    backend = "compiled (inductor)" if backend == "compiled" else backend
    return f"1 proc x {best['threads']} thread(s), {backend}"


def backend_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per target and forward that the backend sweep measured: the in-process limit
    with that forward, cvserve's TorchServe row running it (the tuned archive or a `sweep
    <mode>` variant, read back) at each level, p50 at the first level, p95 at the top one,
    and the worker start-up time."""
    rows, limits, levels = result["rows"], result["limits"], result["concurrency"]
    out = []
    for target, entries in limits.items():
        served = {
            r.get("mode"): r
            for r in rows
            if r["target"] == target and is_cvserve(r) and "startup_s" in r
        }
        if len(entries) < 2 and not served:
            continue  # no backend sweep for this target
        for mode in dict.fromkeys([*entries, *(m for m in served if m)]):
            row = served.get(mode)
            entry = entries.get(mode)
            out.append(
                {
                    "target": target,
                    "mode": mode,
                    "row": row["config"].split(":")[0] if row else "-",
                    "limit": Spread.from_dict(entry["best"]["images_per_s"] if entry else None),
                    "limit_batch": entry["best"]["batch_size"] if entry else None,
                    "rps": {c: spread(row, c) for c in levels},
                    "p50_first": spread(row, levels[0], "p50_ms"),
                    "p95_top": spread(row, max(levels), "p95_ms"),
                    "startup_s": (row or {}).get("startup_s"),
                    "answers_ok": bool(row and row.get("answers_ok")),
                }
            )
    return out


def backend_table(result: Mapping[str, Any]) -> list[str]:
    """The backend sweep as markdown (empty without one)."""
    entries = backend_rows(result)
    if not entries:
        return []
    levels = result["concurrency"]
    lines = [
        "",
        "## Backend sweep",
        "",
        "Each forward of the same checkpoint: its in-process limit (best batch size and "
        "thread count within the archive's CPU budget) and TorchServe serving it with the "
        "archive's other settings, read back from the workers; `start-up` is one worker "
        "added to the running server until READY (synchronous scale-up: process, load, "
        "compile or runtime session).",
        "",
        "| target | forward | served row | limit img/s | "
        + " | ".join(f"req/s c={c}" for c in levels)
        + f" | p50 c={levels[0]} | p95 c={max(levels)} | start-up s | answers |",
        "|" + "---|" * (8 + len(levels)),
    ]
    for e in entries:
        batch = f" (batch {e['limit_batch']})" if e["limit_batch"] else ""
        cells = [e["target"], e["mode"], e["row"], e["limit"].text() + batch]
        cells += [e["rps"][c].text() for c in levels]
        cells += [_fmt(e["p50_first"].median), _fmt(e["p95_top"].median)]
        cells += [_fmt(e["startup_s"]) if e["startup_s"] is not None else "-"]
        cells += ["ok" if e["answers_ok"] else ("-" if e["row"] == "-" else "FAIL")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


BACKEND_GOALS = {"bench_resnet18": 1.3, "bench_unet256": 1.5}
"""Issue 17: served c=32 of the tuned archive over this run's compiled row."""
STARTUP_GOAL_S = 30.0


def backend_goals(result: Mapping[str, Any]) -> list[str]:
    """Issue 17's goals from this run's backend sweep: the heavy pair's tuned archive over
    the compiled row of the same run at the top level, and its worker start-up time."""
    rows, top = result["rows"], max(result["concurrency"])
    notes = []
    for target, goal in BACKEND_GOALS.items():
        tuned = next(
            (r for r in rows if r["target"] == target and is_cvserve(r)
             and r["config"].startswith("tuned") and r.get("levels")),
            None,
        )  # fmt: skip
        compiled = next(
            (r for r in rows if r["target"] == target and is_cvserve(r)
             and r.get("mode") == "compiled" and r.get("levels")),
            None,
        )  # fmt: skip
        if tuned and compiled and tuned is not compiled:
            value = spread(tuned, top).over(spread(compiled, top))
            ok = value.meets(goal) and bool(tuned.get("answers_ok"))
            notes.append(
                f"{target} c={top}: tuned ({tuned.get('mode')}) / compiled served = "
                f"{value.text(2)}, goal >= {goal}: {'met' if ok else 'NOT MET'}."
            )
        if tuned and tuned.get("startup_s") is not None:
            ok = tuned["startup_s"] <= STARTUP_GOAL_S
            notes.append(
                f"{target}: tuned ({tuned.get('mode')}) worker start-up {tuned['startup_s']} s, "
                f"goal <= {STARTUP_GOAL_S:g} s: {'met' if ok else 'NOT MET'}."
            )
    return notes


def markdown(result: Mapping[str, Any]) -> str:
    """The comparison tables: served rows with limits first per target, then the
    like-for-like ratios and the goals; every figure `median (min-max)` over the repeats."""
    machine = result["machine"]
    levels = result["concurrency"]
    top = max(levels)
    short = f"{machine['cores']}c {machine['device']}"
    busy = result.get("busy")
    load_line = (
        f"Load average (1/5/15 min) at start {result.get('loadavg')}, at end "
        f"{result.get('loadavg_end', '-')}."
    )
    if busy:
        state = (
            f"**BUSY machine** ({busy}): other processes shared the cores, the figures are "
            "noisy and this run is not a reference."
            + (
                " Published to bench/latest.* with `--allow-busy`."
                if result.get("published")
                else " Not published to bench/latest.*."
            )
        )
    else:
        state = "Idle at the start by that measure (1- and 5-minute load at most 0.25 per core)."
    lines = [
        f"# cvserve benchmark {result['started']}{' (quick run)' if result.get('quick') else ''}",
        "",
        f"Machine: {machine['description']}. {load_line} {state}",
        "",
        f"Models: {result.get('weights_note', '')}",
        "",
        'Requests: JSON `{"image": base64}` bodies (same bytes to every server), keep-alive '
        f"connections, concurrency {', '.join(map(str, levels))}. Each level measures "
        f"{_fmt(result.get('duration_s_per_level'))} s after a warm-up, "
        f"{result.get('repeats', 1)} time(s); figures are `median (min-max)` over the repeats. "
        "req/s counts 200s only; latencies in ms (medians over repeats); `failed` counts "
        "non-200s; `answers` is sampled responses equal to the in-process answer (label, "
        "mask) over those checked; `ran` is what the serving processes reported about "
        "themselves (torch threads, compiled or eager); `client CPU` is the load generator's "
        "own CPU (1.0 = one core), highest over the levels.",
        "",
    ]
    head = (
        ["target", "machine", "server", "config", "ran (read back)"]
        + [f"req/s c={c}" for c in levels]
        + [f"p50 c={levels[0]}", f"p95 c={top}", f"p99 c={top}"]
        + ["failed", "answers", "client CPU"]
    )
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = result["rows"]
    by_target: dict[str, list[Mapping[str, Any]]] = {
        name: [] for name in [*result.get("targets", []), *result["limits"]]
    }
    for row in rows:
        by_target.setdefault(row["target"], []).append(row)
    blank = ["-"] * (len(head) - 6)
    for target, entries in by_target.items():
        for mode, limit in (result["limits"].get(target) or {}).items():
            best = limit["best"]
            per_call = Spread.from_dict(best["p50_ms"]).text()
            cfg = f"{mode}, batch {best['batch_size']}, p50/call {per_call} ms"
            lim = f"{Spread.from_dict(best['images_per_s']).text()} img/s"
            lines.append(
                "| "
                + " | ".join(
                    [
                        target,
                        short,
                        "limit: in-process handler",
                        cfg,
                        _ran_limit(limit),
                        lim,
                        *blank,
                    ]
                )
                + " |"
            )
            if limit.get("forward"):
                fwd = limit["forward"]
                lines.append(
                    "| "
                    + " | ".join(
                        [
                            target,
                            short,
                            "bare forward",
                            f"{mode}, batch {fwd['batch_size']}",
                            _ran_limit(limit, "forward"),
                            f"{Spread.from_dict(fwd['images_per_s']).text()} img/s",
                            *blank,
                        ]
                    )
                    + " |"
                )
        for row in entries:
            cells = [target, short, row["server"], row["config"], row.get("ran", "-")]
            cells += [spread(row, c).text() for c in levels]
            cells += [_fmt(spread(row, levels[0], "p50_ms").median)]
            cells += [_fmt(spread(row, top, "p95_ms").median)]
            cells += [_fmt(spread(row, top, "p99_ms").median)]
            failed = sum(lv["requests"] - lv["ok"] for lv in row.get("levels", []))
            cells += [str(failed) if row.get("levels") else row.get("error", "-")[:60]]
            checked = row.get("answers") or {}
            if checked:
                good = checked["checked"] - checked["mismatches"]
                mark = "" if row.get("answers_ok") else " FAIL"
                cells += [f"{good}/{checked['checked']}{mark}"]
            else:
                cells += ["-"]
            cpu = [lv.get("client_cpu", math.nan) for lv in row.get("levels", [])]
            cells += [_fmt(max(cpu), 2) if cpu else "-"]
            lines.append("| " + " | ".join(cells) + " |")
    mismatched = [r for r in rows if (r.get("answers") or {}).get("mismatches")]
    if mismatched:
        lines += ["", "Answers that differed from the in-process ones (these rows fail):"]
        lines += [
            f"- {r['target']} {r['server']} {r['config'].split(':')[0]}: "
            + "; ".join(r["answers"]["examples"])
            for r in mismatched
        ]
    ratios = ratio_rows(result)
    if ratios:
        lines += [
            "",
            "## Like-for-like ratios",
            "",
            "cvserve's TorchServe rows over what they are compared with, req/s over req/s "
            "(over img/s for the limit), `median (min-max)`: the median over the median, the "
            "range the lowest and highest repeats allow. The limit is the best backend "
            "in-process (named in brackets); the peers run the same forward as the row "
            "(read back) and the same CPU budget; TorchServe's "
            "defaults run what they run (eager, batch 1, one single-threaded worker per core).",
            "",
            "| target | served | forward | over | " + " | ".join(f"c={c}" for c in levels) + " |",
            "|" + "---|" * (4 + len(levels)),
        ]
        for r in ratios:
            mark = "" if r["answers_ok"] else " (answers not checked equal)"
            cells = [r["target"], r["row"], r["mode"], r["over"] + mark]
            cells += [r["ratios"][c].text(2) for c in levels]
            lines.append("| " + " | ".join(cells) + " |")
    lines += backend_table(result)
    notes = goals(result)  # recomputed from the tables above, never carried over
    if notes:
        lines += ["", "## Goals (met only when the whole range clears them)", ""]
        lines += [f"- {note}" for note in notes]
    if result.get("training"):
        lines += ["", *training_table(result["training"], short)]
    return "\n".join(lines) + "\n"


def training_table(rows: Sequence[Mapping[str, Any]], machine: str) -> list[str]:
    """Training steps per second of each default config per DataLoader variant, with the
    ratio to the plain loop (num_workers=0, no pinning) of the same config."""
    plain = {r["config"]: r["images_per_s"] for r in rows if r["loader"] == "plain"}
    lines = [
        "## Training throughput",
        "",
        "The trainer's own step (model, optimiser, augmentation) with each DataLoader; "
        "`tuned` is what the trainer picks on this machine, `plain` is `num_workers=0` "
        "without pinned memory.",
        "",
        "| config | machine | loader | workers | pinned | batch | device | images/s | /plain |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [
            r["config"],
            machine,
            r["loader"],
            str(r["num_workers"]),
            "yes" if r["pin_memory"] else "no",
            str(r["batch_size"]),
            r["device"] + (f" {r['amp']}" if r.get("amp") else ""),
            _fmt(r["images_per_s"]),
            _fmt(ratio(r["images_per_s"], plain.get(r["config"], math.nan)), 2),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def series_label(row: Mapping[str, Any]) -> str:
    """Legend name: the server, plus the variant for TorchServe (tuned, ts-default, ...)."""
    if row["server"] != "torchserve":
        return str(row["server"])
    return f"torchserve {row['config'].split(':')[0].split(' (')[0]}"


def plot(result: Mapping[str, Any], path: Path) -> Path | None:
    """Throughput (top) and p95 latency (bottom) against concurrency, one column per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r.get("levels")]
    targets = list(dict.fromkeys(r["target"] for r in rows))
    if not targets:
        return None
    fig, axes = plt.subplots(2, len(targets), figsize=(2.4 * len(targets), 5.2), squeeze=False)
    colors: dict[str, str] = {}  # one colour per series across all targets
    for col, target in enumerate(targets):
        top, bottom = axes[0][col], axes[1][col]
        for row in (r for r in rows if r["target"] == target):
            xs = [lv["concurrency"] for lv in row["levels"]]
            label = series_label(row)
            color = colors.setdefault(label, f"C{len(colors) % 10}")
            rps = [Spread.from_dict(lv["rps"]) for lv in row["levels"]]
            top.errorbar(
                xs,
                [r.median for r in rps],
                yerr=[[r.median - r.low for r in rps], [r.high - r.median for r in rps]],
                marker="o",
                label=label,
                color=color,
                capsize=2,
            )
            bottom.plot(
                xs,
                [Spread.from_dict(lv["p95_ms"]).median for lv in row["levels"]],
                marker="o",
                color=color,
            )
        for mode, entry in (result["limits"].get(target) or {}).items():
            limit = Spread.from_dict(entry["best"]["images_per_s"]).median
            style = {"compiled": "--", "onnxruntime": "-.", "openvino": (0, (1, 3))}.get(mode, ":")
            top.axhline(limit, color="black", linestyle=style, linewidth=1, label=f"limit {mode}")
        top.set_title(target, fontsize=8)
        for ax in (top, bottom):
            ax.set_xscale("log", base=2)
            ax.tick_params(labelsize=6)
        bottom.set_yscale("log")
        bottom.set_xlabel("concurrency", fontsize=7)
        if col == 0:
            top.set_ylabel("req/s", fontsize=7)
            bottom.set_ylabel("p95 ms", fontsize=7)
    fig.suptitle(
        f"cvserve bench {result['started']} ({result['machine']['description']})", fontsize=8
    )
    handles: dict[str, Any] = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    fig.legend(
        list(handles.values()),
        list(handles),
        loc="lower center",
        ncol=min(7, len(handles)),
        fontsize=7,
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=60)
    plt.close(fig)
    return path


def write_json(result: Mapping[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
    return path
