"""Say exactly which files are missing, and how to get them, before torchvision looks.

torchvision's own message ("Dataset not found or corrupted. You can use download=True") names
neither the path it searched nor the layout it wants. Every torchvision-backed dataset here
describes its layout once, checks it when `download` is off, and turns any remaining torchvision
failure into an error that says what to do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Layout:
    """What a dataset needs on disk.

    Attributes:
        dataset: the name a user knows it by ("CIFAR-10").
        folder: the dataset's own folder (under `root`).
        required: paths relative to `folder` that must exist (files or folders).
        picture: a short tree of the expected layout, shown in the error.
    """

    dataset: str
    folder: Path
    required: tuple[str, ...]
    picture: str

    def missing(self) -> list[Path]:
        return [self.folder / rel for rel in self.required if not (self.folder / rel).exists()]

    def check(self) -> None:
        """Raise `FileNotFoundError` naming the missing paths, the layout and the two fixes."""
        missing = self.missing()
        if missing:
            shown = ", ".join(str(p) for p in missing[:6])
            if len(missing) > 6:
                shown += f" and {len(missing) - 6} more"
            raise FileNotFoundError(
                f"{self.dataset} data not found: missing {shown}.\n"
                f"Expected layout:\n{self.picture}\n"
                f"Set download: true (needs internet) or copy the files to {self.folder}/"
            )


def open_torchvision(layout: Layout, download: bool, make: Callable[[], T]) -> T:
    """Run `make()` (a torchvision constructor) with the layout checked and failures explained.

    Raises:
        FileNotFoundError: `download` is off and files are missing.
        ValueError: the files are there but torchvision rejects them (e.g. a failed checksum).
        RuntimeError: the download failed.
    """
    if not download:
        layout.check()
    try:
        return make()
    except (RuntimeError, OSError) as err:
        if download:
            raise RuntimeError(
                f"could not download {layout.dataset} into {layout.folder} ({err}). Without "
                f"internet, copy the files there instead; expected layout:\n{layout.picture}"
            ) from err
        raise ValueError(
            f"torchvision could not read {layout.dataset} from {layout.folder} ({err}). The "
            "files may be incomplete or corrupted: copy them again, or set download: true "
            f"(needs internet). Expected layout:\n{layout.picture}"
        ) from err
