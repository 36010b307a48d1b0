"""The benchmark's outputs: the JSON record, the markdown table and the PNG plot.

Rendering is pure (dict in, text out) so it is unit-tested without running anything
(tests/unit/test_bench_report.py). The JSON keeps every level of every row; the table shows
the figures the comparison is about (throughput and tail latency against concurrency, the
ratios to the in-process limit and to the hand-written Flask peer).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tools.bench.stats import ratio

PEER = "flask"
SERVER_ORDER = ("flask", "litserve", "torchserve")
CONFIG_ORDER = ("tuned", "workflow", "ts-default", "sweep")


def row_rank(row: Mapping[str, Any]) -> tuple[int, int, str]:
    """Table order within a target: peers, then TorchServe tuned, default, sweep variants."""
    server = SERVER_ORDER.index(row["server"]) if row["server"] in SERVER_ORDER else 9
    config = next((i for i, c in enumerate(CONFIG_ORDER) if row["config"].startswith(c)), 9)
    return server, config, row["config"]


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}f}"


def _level(row: Mapping[str, Any], concurrency: int) -> Mapping[str, Any] | None:
    for level in row.get("levels", []):
        if level["concurrency"] == concurrency:
            return level
    return None


def served_ratios(
    rows: Sequence[Mapping[str, Any]], limits: Mapping[str, Any], concurrency: int
) -> list[dict[str, float]]:
    """Per row: its req/s at `concurrency` over the target's limit and over the Flask peer."""
    peers = {
        r["target"]: (_level(r, concurrency) or {}).get("rps", math.nan)
        for r in rows
        if r["server"] == PEER
    }
    out = []
    for row in rows:
        rps = (_level(row, concurrency) or {}).get("rps", math.nan)
        limit = (limits.get(row["target"]) or {}).get("best_images_per_s", math.nan)
        out.append(
            {
                "vs_limit": ratio(rps, limit),
                "vs_peer": ratio(rps, peers.get(row["target"], math.nan)),
            }
        )
    return out


def markdown(result: Mapping[str, Any]) -> str:
    """The comparison table (one row per target x server), limits first for each target."""
    machine = result["machine"]
    levels = result["concurrency"]
    top = max(levels)
    short = f"{machine['cores']}c {machine['device']}"
    lines = [
        f"# cvserve benchmark {result['started']}{' (quick run)' if result.get('quick') else ''}",
        "",
        f"Machine: {machine['description']}. Load average at start: {result.get('loadavg')}.",
        *(
            [
                "**The machine was shared during this run** (load average above the core "
                "count): other processes took CPU time, so the figures are noisy; repeat on an "
                "idle machine before drawing fine conclusions.",
            ]
            if (result.get("loadavg") or [0])[0] > machine["cores"]
            else []
        ),
        f"Models: {result.get('weights_note', '')}",
        'Requests: JSON `{"image": base64}` bodies (same bytes to every server), keep-alive '
        f"connections, concurrency {', '.join(map(str, levels))}; req/s counts 200s only; "
        "latencies in ms; `client CPU` is the load generator's own CPU (1.0 = one core), "
        f"highest over the levels. Ratios at concurrency {top}: served req/s over the "
        "in-process limit (best batch size) and over the hand-written Flask server.",
        "",
    ]
    head = (
        ["target", "machine", "server", "config"]
        + [f"req/s c={c}" for c in levels]
        + [f"p50 c={levels[0]}"]
        + [f"p95 c={c}" for c in levels]
        + [f"p99 c={top}", "errors", "client CPU", f"/limit c={top}", f"/flask c={top}"]
    )
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = result["rows"]
    ratios = served_ratios(rows, result["limits"], top)
    by_target: dict[str, list[tuple[Mapping[str, Any], dict[str, float]]]] = {
        name: [] for name in [*result.get("targets", []), *result["limits"]]
    }
    for row, rat in zip(rows, ratios, strict=True):
        by_target.setdefault(row["target"], []).append((row, rat))
    blank = ["-"] * (len(head) - 4)
    for target, entries in by_target.items():
        limit = result["limits"].get(target)
        if limit:
            lim = f"{_fmt(limit['best_images_per_s'])} img/s"
            cfg = (
                f"batch {limit['best_batch_size']}, {limit.get('best_threads', '?')} thread(s), "
                f"p50/call {_fmt(limit['best_p50_ms'])} ms"
            )
            lines.append(
                "| "
                + " | ".join([target, short, "limit: in-process handler", cfg, lim, *blank[1:]])
                + " |"
            )
            if limit.get("forward_images_per_s"):
                fwd = f"{_fmt(limit['forward_images_per_s'])} img/s"
                cfg = (
                    f"batch {limit['forward_batch_size']}, "
                    f"{limit.get('forward_threads', '?')} thread(s)"
                )
                lines.append(
                    "| " + " | ".join([target, short, "bare forward", cfg, fwd, *blank[1:]]) + " |"
                )
        for row, rat in entries:
            cells = [target, short, row["server"], row["config"]]
            cells += [_fmt((_level(row, c) or {}).get("rps")) for c in levels]
            cells += [_fmt((_level(row, levels[0]) or {}).get("p50_ms"))]
            cells += [_fmt((_level(row, c) or {}).get("p95_ms")) for c in levels]
            cells += [_fmt((_level(row, top) or {}).get("p99_ms"))]
            failed = sum(lv["requests"] - lv["ok"] for lv in row.get("levels", []))
            cells += [str(failed) if row.get("levels") else row.get("error", "-")[:60]]
            cpu = [lv.get("client_cpu", math.nan) for lv in row.get("levels", [])]
            cells += [_fmt(max(cpu), 2) if cpu else "-"]
            cells += [_fmt(rat["vs_limit"], 2), _fmt(rat["vs_peer"], 2)]
            lines.append("| " + " | ".join(cells) + " |")
    if result.get("notes"):
        lines += ["", *[f"- {note}" for note in result["notes"]]]
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
            top.plot(xs, [lv["rps"] for lv in row["levels"]], marker="o", label=label, color=color)
            bottom.plot(xs, [lv["p95_ms"] for lv in row["levels"]], marker="o", color=color)
        limit = (result["limits"].get(target) or {}).get("best_images_per_s")
        if limit:
            top.axhline(limit, color="black", linestyle="--", linewidth=1, label="limit")
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
