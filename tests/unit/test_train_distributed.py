"""The same training command under torchrun: 2 CPU processes, gloo, DistributedDataParallel."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model_src import load_checkpoint
from training.config import load_config
from training.distributed import DistInfo, ShardSampler
from training.engine import evaluate
from training.loaders import load_splits
from training.losses import build_loss
from training.metrics import build_metrics
from training.runtime import Runtime
from training.transforms import TransformedDataset, pair_transform

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "training" / "configs" / "digits_convnet.yaml"  # BatchNorm: buffers must agree


def test_shards_are_disjoint_and_cover_the_split() -> None:
    shards = [list(ShardSampler(7, DistInfo(rank=r, world_size=2))) for r in range(2)]
    assert shards == [[0, 2, 4, 6], [1, 3, 5]]


@pytest.mark.slow
def test_two_processes_on_cpu_write_the_checkpoint_rank_zero_reports(tmp_path: Path) -> None:
    overrides = [
        f"output_dir={tmp_path}",
        "epochs=2",
        "data.limit=64",
        "data.batch_size=16",
        "model.kwargs.channels=[8,16]",
    ]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # rendezvous on a free local port
        "--nproc-per-node=2",
        "-m",
        "training.train",
        str(CONFIG),
        *overrides,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CI": "1"}
    proc = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    printed = [line for line in proc.stdout.splitlines() if line.startswith("wrote ")]
    assert len(printed) == 1, proc.stdout  # only rank 0 reports
    rank0_test = ast.literal_eval(printed[0].split(": test ", 1)[1])

    config = load_config(CONFIG, overrides)
    run_dir = tmp_path / config.name / config.version
    report = json.loads((run_dir / "report.json").read_text())
    assert report["device"]["world_size"] == 2
    assert report["test"] == rank0_test

    # One process, the saved checkpoint, the whole test split: the numbers rank 0 reported
    # from two shards and two replicas.
    model, card = load_checkpoint(run_dir / "model.pt")
    assert card.metrics["test"] == rank0_test
    splits = load_splits(config)
    test = TransformedDataset(splits.test, pair_transform(card.task, card.input))
    loader = torch.utils.data.DataLoader(test, batch_size=16)
    runtime = Runtime(device=torch.device("cpu"), dist=DistInfo())
    loss_fn = build_loss(load_config(run_dir / "config.yaml").loss, card.task)
    alone = evaluate(model, loader, loss_fn, runtime, build_metrics(card.task, 10)).summary()
    assert alone["accuracy"] == rank0_test["accuracy"]
    assert alone["loss"] == pytest.approx(rank0_test["loss"], rel=1e-5)
