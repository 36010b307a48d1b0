"""`python -m training.data.report <dataset>`: look at the data before training on it.

Step 0 of any segmentation project: which classes are frequent, how big and how many the
objects are, how much of each image is foreground, and what samples look like with their
masks. Prints a markdown table and writes `<out>/<dataset>.md` plus three plots:

- `<dataset>_classes.png`: pixel and object frequency per class;
- `<dataset>_objects.png`: object size (longer box side), objects per image, mask coverage;
- `<dataset>_samples.png`: a grid of samples, each with its mask.

Objects are the connected components of each non-background class (`training.objects.
mask_objects`, 8-connectivity): the same definition the object scores use for datasets
without a list of placed objects. A classification dataset gets the class table and the
sample grid only.

    python -m training.data.report digit_scenes --split train --limit 1000 --out docs/data
    python -m training.data.report digit_scenes --option n_train=200
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .splits import Splits, build_splits

SAMPLES = 12  # images in the sample grid


@dataclass
class DataReport:
    """What `analyse` measured on `images` items of one split."""

    dataset: str
    split: str
    task: str
    classes: list[str]
    images: int
    image_sizes: dict[str, int] = field(default_factory=dict)  # "HxW" -> count
    class_items: list[int] = field(default_factory=list)  # classification: items per class
    class_pixels: list[int] = field(default_factory=list)  # segmentation: pixels per class
    class_objects: list[int] = field(default_factory=list)  # segmentation: objects per class
    class_images: list[int] = field(default_factory=list)  # images containing the class
    object_sizes: list[int] = field(default_factory=list)  # longer box side, px
    objects_per_image: list[int] = field(default_factory=list)
    coverage: list[float] = field(default_factory=list)  # foreground fraction per image


def analyse(splits: Splits, dataset: str, split: str = "train", limit: int | None = None):
    """Measure one split of `splits` (at most `limit` items, the first ones)."""
    from training.objects import mask_objects

    data = getattr(splits, split)
    n = len(data) if limit is None else min(limit, len(data))
    k = len(splits.classes)
    report = DataReport(dataset, split, splits.task, list(splits.classes), n)
    items, pixels, objects, present = (
        np.zeros(k, int),
        np.zeros(k, int),
        np.zeros(k, int),
        np.zeros(k, int),
    )
    for i in range(n):
        image, target = data[i]
        size = f"{image.height}x{image.width}"
        report.image_sizes[size] = report.image_sizes.get(size, 0) + 1
        if splits.task == "classification":
            items[int(target)] += 1
            continue
        mask = np.asarray(target)
        valid = mask if splits.ignore_index is None else mask[mask != splits.ignore_index]
        counts = np.bincount(valid.ravel(), minlength=k)[:k]
        pixels += counts
        present += counts > 0
        found = mask_objects(mask, splits.classes)
        for obj in found:
            x0, y0, x1, y1 = obj.bbox
            objects[splits.classes.index(obj.label)] += 1
            report.object_sizes.append(max(x1 - x0, y1 - y0))
        report.objects_per_image.append(len(found))
        report.coverage.append(float(counts[1:].sum() / max(1, valid.size)))
    report.class_items = items.tolist() if splits.task == "classification" else []
    if splits.task == "segmentation":
        report.class_pixels, report.class_objects = pixels.tolist(), objects.tolist()
        report.class_images = present.tolist()
    return report


def _stats(values: Sequence[float]) -> str:
    if not values:
        return "-"
    v = np.asarray(values, dtype=float)
    p5, p50, p95 = np.percentile(v, [5, 50, 95])
    return (
        f"mean {v.mean():.3g}, min {v.min():.3g}, p5 {p5:.3g}, median {p50:.3g}, "
        f"p95 {p95:.3g}, max {v.max():.3g}"
    )


def markdown(report: DataReport, plots: Sequence[str] = ()) -> str:
    """The report as markdown: a summary, the per-class table, and the plots' links."""
    sizes = ", ".join(f"{s} ({n})" for s, n in sorted(report.image_sizes.items()))
    lines = [
        f"# Dataset report: {report.dataset} ({report.split})",
        "",
        f"Written by `python -m training.data.report {report.dataset}`. "
        f"{report.images} {report.split} images, {report.task}, sizes {sizes}.",
        "",
    ]
    if report.task == "classification":
        total = max(1, sum(report.class_items))
        lines += ["| class | items | share |", "|---|---:|---:|"]
        lines += [
            f"| {c} | {n} | {n / total:.1%} |"
            for c, n in zip(report.classes, report.class_items, strict=True)
        ]
    else:
        pixels, objects = max(1, sum(report.class_pixels)), max(1, sum(report.class_objects))
        lines += [
            "| class | pixel share | objects | object share | images with it |",
            "|---|---:|---:|---:|---:|",
        ]
        for c, p, o, im in zip(
            report.classes,
            report.class_pixels,
            report.class_objects,
            report.class_images,
            strict=True,
        ):
            obj = "-" if c == report.classes[0] else f"{o}"
            share = "-" if c == report.classes[0] else f"{o / objects:.1%}"
            lines.append(f"| {c} | {p / pixels:.2%} | {obj} | {share} | {im} |")
        lines += [
            "",
            f"- Object size (longer box side, px): {_stats(report.object_sizes)}.",
            f"- Objects per image: {_stats(report.objects_per_image)}.",
            f"- Mask coverage (foreground share of the image): {_stats(report.coverage)}.",
        ]
    lines += ["", *[f"![{Path(p).stem}]({Path(p).name})" for p in plots]]
    return "\n".join(lines) + "\n"


def plot(report: DataReport, splits: Splits, out: Path) -> list[Path]:
    """Write the class, object and sample plots; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    stem = out / report.dataset
    fig, axes = plt.subplots(1, 2 if report.task == "segmentation" else 1, figsize=(10, 3.2))
    axes = np.atleast_1d(axes)
    if report.task == "classification":
        axes[0].bar(report.classes, report.class_items)
        axes[0].set_title("items per class")
    else:
        share = np.asarray(report.class_pixels, float) / max(1, sum(report.class_pixels))
        axes[0].bar(report.classes, share)
        axes[0].set_yscale("log")
        axes[0].set_title("pixel share per class (log)")
        axes[1].bar(report.classes[1:], report.class_objects[1:])
        axes[1].set_title("objects per class")
    for ax in axes:
        ax.tick_params(axis="x", labelrotation=45)
    fig.tight_layout()
    paths.append(stem.with_name(f"{report.dataset}_classes.png"))
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)

    if report.task == "segmentation":
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
        axes[0].hist(report.object_sizes, bins=30)
        axes[0].set_title("object size (longer box side, px)")
        counts = np.bincount(report.objects_per_image)
        axes[1].bar(range(len(counts)), counts)
        axes[1].set_title("objects per image")
        axes[2].hist(report.coverage, bins=30)
        axes[2].set_title("mask coverage (foreground share)")
        fig.tight_layout()
        paths.append(stem.with_name(f"{report.dataset}_objects.png"))
        fig.savefig(paths[-1], dpi=90)
        plt.close(fig)

    data = getattr(splits, report.split)
    n = min(SAMPLES, report.images)
    rows = 2 if report.task == "segmentation" else 1
    fig, axes = plt.subplots(rows, n, figsize=(1.3 * n, 1.4 * rows), squeeze=False)
    for i in range(n):
        image, target = data[i]
        axes[0, i].imshow(np.asarray(image), cmap="gray")
        if report.task == "segmentation":
            axes[1, i].imshow(
                np.asarray(target), cmap="tab20", vmin=0, vmax=19, interpolation="nearest"
            )
        else:
            axes[0, i].set_title(report.classes[int(target)], fontsize=8)
    for ax in axes.ravel():
        ax.axis("off")
    fig.tight_layout()
    paths.append(stem.with_name(f"{report.dataset}_samples.png"))
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)
    return paths


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--option takes key=value, got {text!r}")
    return key, yaml.safe_load(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.data.report", description=__doc__.split("\n")[0]
    )
    parser.add_argument("dataset")
    parser.add_argument("--split", default="train", choices=("train", "val", "test"))
    parser.add_argument("--limit", type=int, default=1000, help="items measured (0: all)")
    parser.add_argument("--seed", type=int, default=0, help="the dataset's split seed")
    parser.add_argument("--root", default="data")
    parser.add_argument("--option", type=_option, action="append", default=[], help="key=value")
    parser.add_argument("--out", type=Path, default=Path("reports/data"))
    args = parser.parse_args(argv)
    splits = build_splits(args.dataset, root=args.root, seed=args.seed, **dict(args.option))
    report = analyse(splits, args.dataset, args.split, args.limit or None)
    args.out.mkdir(parents=True, exist_ok=True)
    plots = plot(report, splits, args.out)
    text = markdown(report, [str(p) for p in plots])
    (args.out / f"{args.dataset}.md").write_text(text)
    print(text)
    print(f"wrote {args.out / f'{args.dataset}.md'} and {', '.join(p.name for p in plots)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
