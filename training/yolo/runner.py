"""Train `yolov8n-seg` from its YAML on cvserve's scenes and score it with cvserve's metrics.

    python -m training.yolo.runner --out runs/yolo --epochs 6 --seed 0 \
        --option n_train=2000 --option n_val=200 --option n_test=200

Offline by construction: the model is built from ultralytics' bundled YAML (random init,
`pretrained=False`), `plots=False` (plots fetch a font), `amp=False` (the AMP check fetches
yolo11n.pt; AMP is off on CPU anyway), and `YOLO_OFFLINE` is set (`training.yolo`).

Scores are NOT ultralytics' mAP: each held-out scene is predicted at its own size, the
instance masks are painted into one class mask (higher confidence on top), each instance is
an object (its class and its mask's box), and `training.objects.ObjectScores` gives the
same mean digit Dice, object F1 at IoU >= 0.5 and label accuracy as a cvserve segmenter's
report.json (foreground Dice included).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from training.objects import Found, ObjectScores, page_items
from training.reporting import json_safe, write_json
from training.yolo.convert import write_yolo_dataset

MODEL_YAML = "yolov8n-seg.yaml"


def yolo_class() -> Any:
    """ultralytics' `YOLO`, imported without leaving its process-wide settings behind.

    Importing ultralytics writes `OMP_NUM_THREADS=1`, `NUMEXPR_MAX_THREADS=1` and a few log
    levels into `os.environ`. Every torch subprocess started afterwards (a cvserve training
    run, a TorchServe worker) would inherit one OpenMP thread, and cvserve's own thread rule
    defers to an explicit `OMP_NUM_THREADS`. The environment is put back as it was."""
    saved = dict(os.environ)
    try:
        from ultralytics import YOLO
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return YOLO


def train(
    data_yaml: Path,
    out: Path,
    *,
    epochs: int,
    imgsz: int = 64,
    batch: int = 32,
    seed: int = 0,
    model_yaml: str = MODEL_YAML,
    time_hours: float | None = None,
) -> tuple[Path, float, int]:
    """Train from scratch; returns (weights file, training seconds, epochs trained).

    `time_hours` (optional) caps the run by wall clock (ultralytics' own `time` argument),
    which then overrides `epochs`."""
    YOLO = yolo_class()
    model = YOLO(model_yaml, task="segment")
    started = time.perf_counter()
    kwargs: dict[str, Any] = {"time": time_hours} if time_hours else {}
    model.train(
        data=str(data_yaml),
        epochs=epochs,
        imgsz=imgsz,
        batch=batch,
        seed=seed,
        deterministic=True,
        device="cpu",
        workers=0,
        pretrained=False,
        amp=False,
        plots=False,
        project=str(out.resolve()),
        name="train",
        exist_ok=True,
        verbose=False,
        **kwargs,
    )
    seconds = time.perf_counter() - started
    weights = out.resolve() / "train" / "weights"
    best = weights / "best.pt"
    epochs_done = int(model.trainer.epoch) + 1
    return (best if best.is_file() else weights / "last.pt"), seconds, epochs_done


def _bgr(image: Any) -> np.ndarray:
    a = np.asarray(image)
    return np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a[..., ::-1].copy()


def predict_scene(model: Any, image: Any, classes: Sequence[str], imgsz: int, conf: float):
    """One scene -> (objects, class mask) at the scene's own size."""
    result = model.predict(_bgr(image), imgsz=imgsz, conf=conf, retina_masks=True, verbose=False)[0]
    h, w = np.asarray(image).shape[:2]
    mask = np.zeros((h, w), dtype=np.int64)
    found: list[Found] = []
    if result.masks is not None:
        inst = result.masks.data.cpu().numpy() > 0.5
        cls = result.boxes.cls.cpu().numpy().astype(int) + 1
        score = result.boxes.conf.cpu().numpy()
        for k in np.argsort(score):  # increasing confidence: the most confident on top
            mask[inst[k]] = cls[k]
        for k in range(len(cls)):
            ys, xs = np.nonzero(inst[k])
            if len(xs):
                box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
                found.append(Found(classes[cls[k]], box))
    return found, mask


def evaluate(
    weights: Path,
    test: Any,
    classes: Sequence[str],
    *,
    imgsz: int = 64,
    conf: float = 0.25,
    limit: int | None = None,
    latency_items: int = 50,
) -> dict[str, Any]:
    """cvserve's object and pixel scores on `test`, and the median in-process latency
    (predict + masks + objects, one scene at a time) in ms."""
    import torch

    YOLO = yolo_class()
    model = YOLO(str(weights), task="segment")
    scores = ObjectScores(len(classes))
    times = []
    for n, (image, truth, true_mask) in enumerate(page_items(test, limit)):
        started = time.perf_counter()
        predicted, mask = predict_scene(model, image, classes, imgsz, conf)
        if n < latency_items:
            times.append(time.perf_counter() - started)
        scores.update(truth, predicted, true_mask, mask)
    report = scores.compute()
    report["latency_ms"] = round(1000 * statistics.median(times[1:] or times), 2)
    report["params"] = sum(p.numel() for p in model.model.parameters())
    report["torch_threads"] = torch.get_num_threads()
    return report


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--option takes key=value, got {text!r}")
    return key, yaml.safe_load(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.yolo.runner", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dataset", default="digit_scenes")
    parser.add_argument("--data-seed", type=int, default=0, help="the split seed (data.seed)")
    parser.add_argument(
        "--option", type=_option, action="append", default=[], help="data option key=value"
    )
    parser.add_argument("--seed", type=int, default=0, help="the training seed")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--time-minutes", type=float, default=None, help="wall-clock cap")
    parser.add_argument("--imgsz", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    args = parser.parse_args(argv)
    import torch

    from training.data import build_splits

    if args.threads:
        torch.set_num_threads(args.threads)
    options = dict(args.option)
    data_yaml = write_yolo_dataset(args.out / "data", args.dataset, args.data_seed, **options)
    time_hours = args.time_minutes / 60 if args.time_minutes else None
    weights, seconds, epochs_done = train(
        data_yaml,
        args.out,
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        seed=args.seed,
        time_hours=time_hours,
    )
    splits = build_splits(args.dataset, seed=args.data_seed, **options)
    torch.set_num_threads(1)
    test = evaluate(weights, splits.test, splits.classes, imgsz=args.imgsz)
    report = {
        "arch": MODEL_YAML,
        "weights": str(weights),
        "train_seconds": round(seconds, 1),
        "options": {"dataset": args.dataset, "data_seed": args.data_seed, **options},
        "seed": args.seed,
        "epochs": args.epochs,
        "epochs_done": epochs_done,
        "imgsz": args.imgsz,
        "test": test,
    }
    write_json(report, args.out / "report.json")
    print(json.dumps(json_safe(report), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
