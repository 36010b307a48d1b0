"""tools.bench.report: the table, ratios and plot from a hand-made result (nothing is run)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tools.bench.report import markdown, plot, served_ratios, write_json


def _level(c: int, rps: float, p95: float = 10.0) -> dict[str, Any]:
    return {
        "concurrency": c,
        "requests": 10,
        "ok": 10,
        "rps": rps,
        "p50_ms": 5.0,
        "p95_ms": p95,
        "p99_ms": p95 * 2,
        "client_cpu": 0.1,
    }


def _result() -> dict[str, Any]:
    levels = [1, 8]
    return {
        "started": "2026-01-01T00:00:00+00:00",
        "machine": {"cores": 2, "device": "CPU", "description": "2 cores, CPU"},
        "concurrency": levels,
        "loadavg": [0.5, 0.5, 0.5],
        "limits": {
            "m": {
                "best_images_per_s": 200.0,
                "best_batch_size": 8,
                "best_threads": 1,
                "best_p50_ms": 40.0,
                "forward_images_per_s": 1000.0,
                "forward_batch_size": 32,
                "forward_threads": 2,
            },
        },
        "rows": [
            {
                "target": "m",
                "server": "flask",
                "config": "threaded",
                "levels": [_level(1, 50.0), _level(8, 80.0)],
            },
            {
                "target": "m",
                "server": "torchserve",
                "config": "tuned",
                "levels": [_level(1, 60.0), _level(8, 160.0)],
            },
            {
                "target": "m",
                "server": "litserve",
                "config": "batch 8",
                "levels": [],
                "error": "RuntimeError: did not start",
            },
        ],
        "notes": ["a note"],
    }


def test_ratios_against_limit_and_flask() -> None:
    result = _result()
    ratios = served_ratios(result["rows"], result["limits"], 8)
    assert ratios[0] == {"vs_limit": 0.4, "vs_peer": 1.0}
    assert ratios[1]["vs_limit"] == 0.8 and ratios[1]["vs_peer"] == 2.0
    assert math.isnan(ratios[2]["vs_limit"])


def test_markdown_has_one_row_per_server_plus_limits() -> None:
    text = markdown(_result())
    table = [line for line in text.splitlines() if line.startswith("| m |")]
    assert len(table) == 5  # limit, bare forward, 3 servers
    widths = {line.count("|") for line in text.splitlines() if line.startswith("|")}
    assert len(widths) == 1  # every row has the header's number of cells
    tuned = next(line for line in table if "tuned" in line)
    assert "| 160 |" in tuned and "| 0.80 | 2.00 |" in tuned
    assert "2c CPU" in tuned
    assert "RuntimeError: did not start" in text
    assert "- a note" in text


def test_plot_and_json(tmp_path: Path) -> None:
    result = _result()
    png = plot(result, tmp_path / "p.png")
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    path = write_json(result, tmp_path / "r" / "x.json")
    assert json.loads(path.read_text())["rows"][0]["server"] == "flask"
