"""Match segmentation images to masks by file stem, and report every file that does not pair.

A mask that silently goes missing changes the data without a trace, so nothing is dropped
quietly: images without a mask, masks without an image, stems used by more than one file
(ambiguous: `a.jpg` and `a.png`) and files of unsupported types are all listed in the report.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from torchvision.datasets.folder import IMG_EXTENSIONS

log = logging.getLogger(__name__)

MASK_EXTENSIONS = (".png",)


@dataclass
class PairingReport:
    """The matched `(image, mask)` pairs and every file that was left out, by reason."""

    pairs: list[tuple[Path, Path]] = field(default_factory=list)
    images_without_mask: list[str] = field(default_factory=list)
    masks_without_image: list[str] = field(default_factory=list)
    duplicate_stems: list[str] = field(default_factory=list)
    ignored_files: list[str] = field(default_factory=list)

    @property
    def problems(self) -> int:
        """How many files or stems did not pair."""
        return (
            len(self.images_without_mask)
            + len(self.masks_without_image)
            + len(self.duplicate_stems)
            + len(self.ignored_files)
        )

    def to_dict(self) -> dict[str, object]:
        """JSON-able (for the model card): the pair count and the unpaired names."""
        return {
            "pairs": len(self.pairs),
            "images_without_mask": list(self.images_without_mask),
            "masks_without_image": list(self.masks_without_image),
            "duplicate_stems": list(self.duplicate_stems),
            "ignored_files": list(self.ignored_files),
        }

    def summary(self) -> str:
        parts = [f"{len(self.pairs)} pairs"]
        for name in ("images_without_mask", "masks_without_image", "duplicate_stems"):
            items = getattr(self, name)
            if items:
                shown = ", ".join(items[:5]) + (" ..." if len(items) > 5 else "")
                parts.append(f"{len(items)} {name.replace('_', ' ')} ({shown})")
        if self.ignored_files:
            parts.append(f"{len(self.ignored_files)} files of unsupported type ignored")
        return "; ".join(parts)


def pair_by_stem(images_dir: Path, masks_dir: Path) -> PairingReport:
    """Pair `images_dir/<stem>.<image ext>` with `masks_dir/<stem>.png` (top level only)."""
    images, bad_images = _by_stem(images_dir, IMG_EXTENSIONS)
    masks, bad_masks = _by_stem(masks_dir, MASK_EXTENSIONS)
    report = PairingReport(ignored_files=bad_images + bad_masks)
    report.duplicate_stems = sorted(
        s
        for s in set(images) | set(masks)
        if len(images.get(s, ())) > 1 or len(masks.get(s, ())) > 1
    )
    duplicates = set(report.duplicate_stems)
    for stem in sorted(set(images) - duplicates):
        if stem in masks:
            report.pairs.append((images[stem][0], masks[stem][0]))
        else:
            report.images_without_mask.append(images[stem][0].name)
    report.masks_without_image = sorted(
        masks[s][0].name for s in set(masks) - set(images) - duplicates
    )
    if report.problems:
        log.warning("pairing %s with %s: %s", images_dir, masks_dir, report.summary())
    return report


def _by_stem(folder: Path, extensions: tuple[str, ...]) -> tuple[dict[str, list[Path]], list[str]]:
    found: dict[str, list[Path]] = defaultdict(list)
    ignored = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.suffix.lower() in extensions:
            found[path.stem].append(path)
        else:
            ignored.append(f"{folder.name}/{path.name}")
    return dict(found), ignored
