"""tools.frontend_patch: it patches exactly TorchServe 0.12.0's jar, once (issue 14).

The original jar is the venv's `model-server.jar.orig` (kept by `make install`) or, before
any patch, the venv's jar itself. Patching needs `javac` (a JDK): those tests skip without one,
the refusal tests do not need it.
"""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

import pytest

from tools import frontend_patch as fp


def _original_jar() -> Path:
    jar = fp.default_jar()
    backup = fp.backup_path(jar)
    for candidate in (backup, jar):
        if candidate.is_file() and not fp.class_mismatches(candidate):
            return candidate
    pytest.skip("no untouched TorchServe 0.12.0 model-server.jar in this venv")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def original(tmp_path: Path) -> Path:
    copy = tmp_path / "model-server.jar"
    shutil.copy(_original_jar(), copy)
    return copy


def test_refuses_a_jar_that_is_not_0_12_0(original: Path, tmp_path: Path) -> None:
    tampered = tmp_path / "other" / "model-server.jar"
    tampered.parent.mkdir()
    victim = "org/pytorch/serve/ensemble/DagExecutor.class"
    with zipfile.ZipFile(original) as src, zipfile.ZipFile(tampered, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, data + b"\0" if info.filename == victim else data)
    before = _sha(tampered)
    with pytest.raises(fp.PatchError, match=r"not TorchServe 0\.12\.0.*DagExecutor\.class differs"):
        fp.apply(tampered)
    assert _sha(tampered) == before
    assert not fp.backup_path(tampered).exists()
    assert fp.main(["apply", "--jar", str(tampered)]) == 1


def test_refuses_a_jar_without_the_classes(tmp_path: Path) -> None:
    empty = tmp_path / "model-server.jar"
    with zipfile.ZipFile(empty, "w") as jar:
        jar.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
    with pytest.raises(fp.PatchError, match=r"ModelServer\.class is missing"):
        fp.apply(empty)


@pytest.mark.skipif(shutil.which("javac") is None, reason="needs a JDK (javac)")
def test_patches_once_and_a_second_apply_changes_nothing(original: Path) -> None:
    first_sha = _sha(original)
    assert fp.jar_state(original).kind == "original"
    assert "patched" in fp.apply(original)
    assert fp.jar_state(original).kind == "patched"
    assert _sha(fp.backup_path(original)) == first_sha  # the original is kept
    patched_sha = _sha(original)
    assert "nothing to do" in fp.apply(original)
    assert _sha(original) == patched_sha
    with zipfile.ZipFile(original) as jar:
        names = set(jar.namelist())
        assert fp.MARKER in names
        assert "org/pytorch/serve/ensemble/NodeFailure.class" in names
        assert "org/pytorch/serve/ensemble/DagExecutor$NodeJob.class" in names
        assert fp.class_mismatches(original)  # the replaced classes are really replaced
    assert "restored" in fp.revert(original)
    assert _sha(original) == first_sha


def test_the_venv_runs_the_patched_frontend_when_a_jdk_is_there() -> None:
    """`make install` applied the patch (the state every integration test relies on)."""
    if shutil.which("javac") is None:
        pytest.skip("no JDK: TorchServe runs unpatched (make install said so)")
    assert fp.is_patched(), fp.describe()
