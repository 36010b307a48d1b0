"""The contract lives in the repo: docs/api.md names every response field the tests check,
and nothing in the repo points outside it (to a sibling notes folder a clone does not have)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.api_fields import (
    EXPLANATION_KEYS,
    OBJECT_KEYS,
    PREDICTION_KEYS,
    SEGMENTATION_KEYS,
)

ROOT = Path(__file__).resolve().parents[2]
API = ROOT / "docs" / "api.md"


@pytest.mark.parametrize(
    "key", sorted(PREDICTION_KEYS | EXPLANATION_KEYS | SEGMENTATION_KEYS | OBJECT_KEYS)
)
def test_every_checked_field_is_in_the_contract(key: str) -> None:
    assert f'"{key}"' in API.read_text(encoding="utf-8")


def test_docs_links_resolve() -> None:
    for doc in (ROOT / "docs").glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+\.md)\)", doc.read_text(encoding="utf-8")):
            assert (doc.parent / target).is_file(), f"{doc.name} links to missing {target}"


def test_nothing_points_outside_the_repo() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    outside = "shared" + "/"  # spelled in two parts so this file does not match itself
    pattern = re.compile(re.escape(outside) + r"|" + re.escape("..") + "/" + "shared")
    offenders = []
    for name in tracked:
        path = ROOT / name
        if path.suffix not in {".py", ".md", ".yaml", ".yml", ".properties", ".toml", ".sh", ""}:
            continue
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        offenders += [f"{name}:{m.group(0)}" for m in pattern.finditer(text)]
    assert not offenders
