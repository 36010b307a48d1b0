"""tools.bench.report: the tables, like-for-like ratios, goals and plot from a hand-made
result (nothing is run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tools.bench.report import (
    backend_rows,
    best_limit,
    goals,
    markdown,
    plot,
    ratio_rows,
    write_json,
)


def _s(median: float, low: float, high: float) -> dict[str, float]:
    return {"median": median, "min": low, "max": high}


def _level(c: int, rps: tuple[float, float, float], p50: float = 5.0) -> dict[str, Any]:
    return {
        "concurrency": c,
        "requests": 30,
        "ok": 30,
        "rps": _s(*rps),
        "p50_ms": _s(p50, p50, p50),
        "p95_ms": _s(10.0, 9.0, 11.0),
        "p99_ms": _s(20.0, 18.0, 22.0),
        "client_cpu": 0.1,
        "answers": {"checked": 8, "mismatches": 0, "examples": []},
    }


def _row(server: str, config: str, mode: str, c1: tuple, c8: tuple, **extra: Any) -> dict:
    return {
        "target": "bench_resnet18",
        "server": server,
        "config": config,
        "mode": mode,
        "ran": f"1 proc x 2 thread(s), {mode}",
        "levels": [_level(1, c1), _level(8, c8)],
        "answers": {"checked": 16, "mismatches": 0, "examples": []},
        "answers_ok": True,
        **extra,
    }


def _limit(mode: str, ips: tuple[float, float, float]) -> dict[str, Any]:
    point = {
        "batch_size": 4,
        "threads": 2,
        "compiled": mode == "compiled",
        "images_per_s": _s(*ips),
        "p50_ms": _s(40.0, 39.0, 41.0),
    }
    return {"mode": mode, "best": point, "batch1": point, "forward": point}


def _result() -> dict[str, Any]:
    return {
        "started": "2026-01-01T00:00:00+00:00",
        "machine": {"cores": 2, "device": "CPU", "description": "2 cores, CPU"},
        "concurrency": [1, 8],
        "duration_s_per_level": 10.0,
        "repeats": 3,
        "loadavg": [1.19, 2.53, 2.53],
        "loadavg_end": [2.0, 2.0, 2.0],
        "busy": "load average 1.19 (1 min) / 2.53 (5 min) above 0.50",
        "allow_busy": True,
        "published": True,
        "targets": ["bench_resnet18"],
        "limits": {
            "bench_resnet18": {
                "compiled": _limit("compiled", (60.0, 55.0, 65.0)),
                "eager": _limit("eager", (50.0, 48.0, 52.0)),
            }
        },
        "rows": [
            _row("gunicorn", "Flask on gunicorn", "compiled", (20, 19, 21), (30, 28, 32)),
            _row("litserve", "batch 4", "compiled", (20, 19, 21), (50, 49, 51)),
            _row("torchserve", "tuned: batch 4", "compiled", (25, 24, 26), (54, 52, 56)),
            _row("torchserve", "ts-default: no model-config", "eager", (20, 20, 20), (27, 27, 27)),
            _row("torchserve", "sweep eager: batch 4", "eager", (22, 21, 23), (40, 39, 41)),
            {
                "target": "bench_resnet18",
                "server": "flask",
                "config": "one process",
                "levels": [],
                "error": "RuntimeError: did not start",
            },
        ],
    }


def test_ratios_compare_like_with_like() -> None:
    table = {(r["row"], r["kind"]): r for r in ratio_rows(_result())}
    tuned = table[("tuned", "limit")]
    assert tuned["mode"] == "compiled" and tuned["over"] == "in-process limit (compiled)"
    assert tuned["ratios"][8].median == 54 / 60  # the best backend's limit, not the eager one
    assert tuned["ratios"][8].low == 52 / 65 and tuned["ratios"][8].high == 56 / 55
    assert table[("tuned", "gunicorn")]["ratios"][8].median == 54 / 30
    assert table[("tuned", "ts-default")]["ratios"][1].median == 25 / 20
    # the eager sweep row: over the best limit and the defaults, not over compiled peers
    assert table[("sweep eager", "limit")]["ratios"][8].median == 40 / 60
    assert ("sweep eager", "gunicorn") not in table and ("sweep eager", "litserve") not in table
    assert table[("sweep eager", "ts-default")]["ratios"][8].median == 40 / 27


def test_goals_need_the_whole_range() -> None:
    notes = goals(_result())
    limit = next(n for n in notes if "in-process limit" in n)
    assert limit.endswith(": met.") and "0.90 (0.80-1.02)" in limit  # lowest 52/65 = 0.80
    flask = next(n for n in notes if "gunicorn-Flask" in n)
    assert flask.endswith(": met.")  # lowest 52/32 = 1.63 >= 1.5
    lit = next(n for n in notes if "LitServe" in n)
    assert lit.endswith(": met.")  # lowest 52/51 > 1
    result = _result()
    result["limits"]["bench_resnet18"]["compiled"]["best"]["images_per_s"] = _s(60, 55, 70)
    result["rows"][1]["levels"][1]["rps"] = _s(50.0, 49.0, 53.0)  # LitServe's best repeat
    notes = goals(result)
    limit = next(n for n in notes if "in-process limit" in n)
    assert "0.90 (0.74-1.02)" in limit and "NOT MET" in limit  # the median alone would pass
    lit = next(n for n in notes if "LitServe" in n)
    assert "NOT MET" in lit  # 52 / 53 < 1: one LitServe repeat beat the worst tuned one


def test_goals_fail_when_answers_differ() -> None:
    result = _result()
    result["rows"][2]["answers_ok"] = False
    assert all("answers not checked equal" in n for n in goals(result) if "tuned" in n)


def test_markdown_tables() -> None:
    text = markdown(_result())
    served = [line for line in text.splitlines() if line.startswith("| bench_resnet18 | 2c")]
    assert len(served) == 4 + 6  # 2 limits + 2 bare forwards, 6 servers
    header = next(line for line in text.splitlines() if line.startswith("| target | machine"))
    assert all(line.count("|") == header.count("|") for line in served)
    tuned = next(line for line in served if "tuned" in line)
    assert "| 54.0 (52.0-56.0) |" in tuned and "| 16/16 |" in tuned
    assert "1 proc x 2 thread(s), compiled" in tuned
    assert "RuntimeError: did not start" in text
    assert "**BUSY machine**" in text and "--allow-busy" in text and "[1.19, 2.53, 2.53]" in text
    assert "## Like-for-like ratios" in text and "| 0.90 (0.80-1.02) |" in text
    assert "## Goals" in text


def test_markdown_reports_mismatched_answers() -> None:
    result = _result()
    result["rows"][0]["answers"] = {"checked": 16, "mismatches": 2, "examples": ["label 'a'"]}
    result["rows"][0]["answers_ok"] = False
    text = markdown(result)
    assert "| 14/16 FAIL |" in text and "label 'a'" in text


def test_plot_and_json(tmp_path: Path) -> None:
    result = _result()
    png = plot(result, tmp_path / "p.png")
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    path = write_json(result, tmp_path / "r" / "x.json")
    assert json.loads(path.read_text())["rows"][0]["server"] == "gunicorn"


def test_the_limit_moves_with_the_backend_and_the_sweep_has_its_table() -> None:
    result = _result()
    result["limits"]["bench_resnet18"]["onnxruntime"] = _limit("onnxruntime", (80.0, 78.0, 82.0))
    result["rows"][2]["startup_s"] = 95.0  # tuned, compiled
    result["rows"].append(
        _row("torchserve", "sweep onnxruntime: batch 4", "onnxruntime", (30, 29, 31), (75, 74, 76))
    )
    result["rows"][-1]["startup_s"] = 6.5
    assert best_limit(result["limits"], "bench_resnet18")[0] == "onnxruntime"
    table = {(r["row"], r["kind"]): r for r in ratio_rows(result)}
    tuned = table[("tuned", "limit")]
    assert (
        tuned["over"] == "in-process limit (onnxruntime)" and tuned["ratios"][8].median == 54 / 80
    )
    assert table[("sweep onnxruntime", "limit")]["ratios"][8].median == 75 / 80
    sweep = {e["mode"]: e for e in backend_rows(result)}
    assert set(sweep) == {"compiled", "eager", "onnxruntime"}
    assert (
        sweep["onnxruntime"]["startup_s"] == 6.5
        and sweep["onnxruntime"]["row"] == "sweep onnxruntime"
    )
    assert sweep["eager"]["startup_s"] is None  # no start-up timed for that row
    text = markdown(result)
    assert "## Backend sweep" in text
    line = next(x for x in text.splitlines() if x.startswith("| bench_resnet18 | onnxruntime |"))
    assert "| 80.0 (78.0-82.0) (batch 4) |" in line and "| 6.5 |" in line
    notes = goals(result)
    startup = next(n for n in notes if "start-up" in n)
    assert "95.0 s" in startup and "NOT MET" in startup  # tuned is still compiled here
