"""Score the SERVED digit pipeline on held-out digit pages: `make eval-pipeline`.

Every page goes to `POST /wfpredict/digit_pipeline` (tools.client), exactly as a user sends it;
the answer's objects (boxes, the classifier's labels) and mask are scored against the page's
placed digits with `training.objects` (IoU >= 0.5 matching, precision, recall, F1, label
accuracy of the matched, mean Dice): the figures the trainer's report.json gives a segmenter.

Two sets of pages, both of test-split MNIST-5k digits that no default model was trained on:

- `--pages N` (default 20): the `digit_pages` test split (64..1024 px, 1..100 digits of
  16..112 px, black, noisy or textured backgrounds);
- `--scenes N` (default 60): the first 64 px `digit_scenes` test scenes, the training scale
  (issue 15's floor: >= 52 of the first 60 answered with exactly their digits);
- `--issue`: issue 15's table, five black pages per row (128x64 with 4 digits of 28 px,
  256x256 with 16, 512x512 with 64, 640x480 with 12 digits of 56 px), and one 1024x1024 page
  with 100 digits of 28 px, whose seconds are the pipeline's latency on a big page.

    python -m tools.eval_pipeline [--pages 20] [--scenes 60] [--issue] [--json]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from tools.client import DEFAULT_CONFIG, DEFAULT_KEY_FILE, DEFAULT_WORKFLOW, Client

#: The digit_segmenter's classes: background, then "0".."9".
NUM_CLASSES = 11


@dataclass(frozen=True)
class PageSet:
    """A named list of pages: `(image, [(label, bbox)], mask)` items."""

    name: str
    pages: list[tuple[Image.Image, list[Any], np.ndarray]]


def held_out_pages(count: int, seed: int = 0, **options: Any) -> PageSet:
    """The first `count` pages of the `digit_pages` test split (data seed `seed`)."""
    from training.data import build_splits
    from training.objects import page_items

    splits = build_splits("digit_pages", seed=seed, n_test=count, **options)
    return PageSet(f"digit_pages test, seed {seed}", list(page_items(splits.test)))


def held_out_scenes(count: int, seed: int = 0) -> PageSet:
    """The first `count` 64 px scenes of the `digit_scenes` test split (data seed `seed`):
    issue 15's floor against regressions at the training scale (>= 52 of the first 60
    scenes with exactly their digits)."""
    from training.data import build_splits
    from training.objects import page_items

    test = build_splits("digit_scenes", seed=seed).test
    return PageSet(f"digit_scenes test, first {count}", list(page_items(test, count)))


#: Issue 15's rows: (name, (height, width), digits, digit size px, pages).
ISSUE_ROWS = (
    ("128x64, 4 digits of 28 px", (64, 128), 4, 28, 5),
    ("256x256, 16 digits of 28 px", (256, 256), 16, 28, 5),
    ("512x512, 64 digits of 28 px", (512, 512), 64, 28, 5),
    ("640x480, 12 digits of 56 px", (480, 640), 12, 56, 5),
    ("1024x1024, 100 digits of 28 px", (1024, 1024), 100, 28, 1),
)


def issue_page(seed: int, row: int, i: int) -> Any:
    """Page `i` of issue 15's row `row` (a `Scene`): test-split digits at the row's size on a
    black canvas, drawn from the seed `(seed, row, i)`."""
    from training.data import digit_scene
    from training.data.digits import DigitImages, digit_split_indices

    _, size, count, side, _ = ISSUE_ROWS[row]
    pool = DigitImages(digit_split_indices(seed)["test"])
    rng = np.random.default_rng([seed, row, i])
    picks = rng.integers(0, len(pool.images), size=count)
    return digit_scene(
        rng,
        pool.images[picks],
        pool.labels[picks],
        size,
        n_digits=None,
        digit_size=(side, side),
        tries=200,
        background="black",
    )


def issue_pages(seed: int = 0) -> list[PageSet]:
    """Issue 15's pages, every row (`issue_page`)."""
    from training.objects import Found

    sets = []
    for row, (name, *_, pages) in enumerate(ISSUE_ROWS):
        items = []
        for i in range(pages):
            scene = issue_page(seed, row, i)
            truth = [Found(str(d.label), tuple(d.bbox)) for d in scene.digits]
            items.append((scene.image, truth, np.asarray(scene.mask)))
        sets.append(PageSet(name, items))
    return sets


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def score_pipeline(client: Client, pages: PageSet, workflow: str = DEFAULT_WORKFLOW) -> dict:
    """The served pipeline's object scores on `pages`, and its seconds per page."""
    from training.objects import Found, ObjectScores

    scores = ObjectScores(NUM_CLASSES)
    seconds = []
    exact = 0
    for image, truth, true_mask in pages.pages:
        data = png(image)
        started = time.perf_counter()
        body = client.pipeline(data, workflow)
        seconds.append(time.perf_counter() - started)
        predicted = [
            Found(str(o["classifier"]["label"]), tuple(o["bbox"])) for o in body["objects"]
        ]
        mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["mask_png"]))))
        scores.update(truth, predicted, true_mask, mask)
        exact += Counter(f.label for f in predicted) == Counter(f.label for f in truth)
    return {
        "set": pages.name,
        **scores.compute(),
        "exact": exact,
        "seconds_per_page": round(float(np.mean(seconds)), 3) if seconds else None,
        "seconds_max": round(float(np.max(seconds)), 3) if seconds else None,
    }


COLUMNS = (
    ("set", "pages"),
    ("images", "n"),
    ("objects", "digits"),
    ("found", "found"),
    ("matched", "matched"),
    ("labels_right", "labels right"),
    ("f1", "F1"),
    ("label_accuracy", "label acc"),
    ("exact", "images with exactly their digits"),
    ("mean_dice", "mean Dice"),
    ("seconds_per_page", "s/page"),
)


def table(rows: Iterable[dict]) -> str:
    """A Markdown table of score rows (the README and the issue use these columns)."""
    lines = [
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "| " + " | ".join("---" for _ in COLUMNS) + " |",
    ]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(key, "")) for key, _ in COLUMNS) + " |")
    return "\n".join(lines)


def save_figure(image: Image.Image, body: dict[str, Any], path: str, crop: int = 448) -> None:
    """The page and the pipeline's answer side by side, the whole page reduced and its
    top-left `crop` px at full size: the mask in its palette, each object's box with the
    classifier's label (README, "Segmentation at any size")."""
    from PIL import ImageDraw, ImageFont

    mask = Image.open(io.BytesIO(base64.b64decode(body["mask_png"]))).convert("RGB")
    draw = ImageDraw.Draw(mask)
    font = ImageFont.load_default(size=14)
    for obj in body["objects"]:
        x0, y0, x1, y1 = obj["bbox"]
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=(200, 200, 200))
        label = str(obj["classifier"]["label"])
        draw.text((x0, max(0, y0 - 15)), label, fill=(255, 255, 0), font=font)
    page = image.convert("RGB")
    factor = crop / max(image.size)
    small = (round(image.width * factor), round(image.height * factor))
    box = (0, 0, min(crop, image.width), min(crop, image.height))
    panels = [
        page.resize(small, Image.Resampling.LANCZOS),
        mask.resize(small, Image.Resampling.NEAREST),
        page.crop(box),
        mask.crop(box),
    ]
    gap = 8
    figure = Image.new("RGB", (2 * crop + gap, 2 * crop + gap), (255, 255, 255))
    for k, panel in enumerate(panels):
        figure.paste(panel, ((k % 2) * (crop + gap), (k // 2) * (crop + gap)))
    ImageDraw.Draw(figure).rectangle(
        [0, 0, round(box[2] * factor), round(box[3] * factor)], outline=(255, 80, 80)
    )
    figure.save(path, optimize=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.eval_pipeline", description=__doc__)
    p.add_argument("--pages", type=int, default=20, help="held-out digit_pages to score")
    p.add_argument(
        "--scenes", type=int, default=60, help="held-out 64 px digit_scenes to score (0: none)"
    )
    p.add_argument("--issue", action="store_true", help="also score issue 15's page table")
    p.add_argument("--only-issue", action="store_true", help="score issue 15's table only")
    p.add_argument("--seed", type=int, default=0, help="data seed (the models' split)")
    p.add_argument("--workflow", default=DEFAULT_WORKFLOW)
    p.add_argument("--config", default=str(DEFAULT_CONFIG))
    p.add_argument("--key-file", default=str(DEFAULT_KEY_FILE))
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument("--figure", help="save the 1024 px issue page and its answer to this PNG")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    client = Client(args.config, args.key_file, timeout=args.timeout)
    sets: list[PageSet] = []
    if not args.only_issue and args.pages > 0:
        sets.append(held_out_pages(args.pages, args.seed))
    if not args.only_issue and args.scenes > 0:
        sets.append(held_out_scenes(args.scenes, args.seed))
    if args.issue or args.only_issue:
        sets += issue_pages(args.seed)
    rows = []
    for pages in sets:
        rows.append(score_pipeline(client, pages, args.workflow))
        print(f"scored {pages.name}", file=sys.stderr)
    print(json.dumps(rows, indent=2) if args.json else table(rows))
    if args.figure:
        image = issue_page(args.seed, len(ISSUE_ROWS) - 1, 0).image
        save_figure(image, client.pipeline(png(image), args.workflow), args.figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
