"""tools.bench.training: a few real training steps per DataLoader variant, and its table."""

from __future__ import annotations

import math

from tools.bench.report import training_table
from tools.bench.training import LoaderVariant, measure, variants


def test_variants_are_the_trainer_choice_plain_and_all_cores() -> None:
    names = [(v.name, v.num_workers, v.pin_memory) for v in variants(4)]
    assert names == [("tuned", None, None), ("plain", 0, False), ("workers=4", 4, None)]


def test_measure_runs_real_training_steps() -> None:
    row = measure("digits_tinyvgg", LoaderVariant("plain", 0, False), max_batches=4, max_seconds=30)
    assert (row["config"], row["loader"], row["num_workers"], row["pin_memory"]) == (
        "digits_tinyvgg",
        "plain",
        0,
        False,
    )
    assert row["steps"] == 4 and row["images"] == 4 * row["batch_size"]
    assert row["images_per_s"] > 0 and math.isfinite(row["images_per_s"])


def test_measure_with_a_worker_process() -> None:
    row = measure("digits_tinyvgg", LoaderVariant("workers=1", 1, None), 2, max_seconds=30)
    assert row["num_workers"] == 1 and row["steps"] == 2


def test_training_table_ratios_to_plain() -> None:
    rows = [
        {"config": "c", "loader": "tuned", "num_workers": 0, "pin_memory": False,
         "batch_size": 32, "device": "cpu", "amp": None, "images_per_s": 300.0},
        {"config": "c", "loader": "plain", "num_workers": 0, "pin_memory": False,
         "batch_size": 32, "device": "cpu", "amp": None, "images_per_s": 200.0},
    ]  # fmt: skip
    lines = training_table(rows, "2c CPU")
    assert lines[0] == "## Training throughput"
    assert lines[-2].endswith("| 300 | 1.50 |") and lines[-1].endswith("| 200 | 1.00 |")
