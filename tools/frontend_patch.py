"""Build cvserve's patch of TorchServe 0.12.0's Java frontend and apply it to the venv.

TorchServe is archived upstream, so cvserve owns the few fixes its workflow engine needs
(`frontend_patch/README.md` lists each change and the defect it fixes). This module:

* refuses any `model-server.jar` whose classes are not exactly 0.12.0's (by SHA-256 of every
  class it replaces), so the patch can never land on a build it was not written against;
* compiles `frontend_patch/src` with `javac` against the untouched 0.12.0 jar;
* rewrites the jar with the patched classes and a marker entry naming the patch's source
  digest, keeping the original next to it (`model-server.jar.orig`) for `revert`;
* is idempotent: a jar that already carries this patch (same source digest) is left alone,
  one that carries an older patch is rebuilt from the original.

Without a JDK the patch cannot be built: `apply` says how to get one and exits 0, because
TorchServe still serves unpatched (with the defects the README names).

Usage: `python -m tools.frontend_patch apply|status|revert [--jar PATH]`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PATCH_DIR = REPO / "frontend_patch"
SOURCES = PATCH_DIR / "src"
#: The jar entry that marks a patched jar (JSON: patch name and source digest).
MARKER = "META-INF/cvserve-frontend-patch.json"
PATCH_NAME = "cvserve-frontend-patch"
TORCHSERVE_VERSION = "0.12.0"
#: Class files of TorchServe 0.12.0 that the patch replaces, with their SHA-256 in the 0.12.0
#: wheel's model-server.jar. Any other content means another build: refuse.
REPLACED_CLASSES: dict[str, str] = {
    "org/pytorch/serve/ModelServer.class": (
        "779d0df5bfc17c5ad09ac46d63d9a017d48a4cd68c1b7464de914d3cb40190b9"
    ),
    "org/pytorch/serve/ModelServer$1.class": (
        "d1390e32bb9f39f8bc58ffb2d27e7138208d0c82d72e5a8ae8a737ad08a942e7"
    ),
    "org/pytorch/serve/ensemble/DagExecutor.class": (
        "193ba4aed0982d06ffc3b47d5777612d52d34ab4e50bf577d10fda4e90cf3167"
    ),
    "org/pytorch/serve/ensemble/WorkFlow.class": (
        "e32331be27aa9ac0adf33f4bd573159336c868b07449440d84bea4a210df1153"
    ),
    "org/pytorch/serve/workflow/WorkflowManager.class": (
        "8d9df0508a05ca39c897769cf43d21941d260a569ce6cc782474915ecde757cd"
    ),
    "org/pytorch/serve/util/ApiUtils.class": (
        "c98900b13f1e13722cbdb97d76d83db7671476a5e1e69ad57270b519b6bd86d0"
    ),
}
#: The Java release the patched classes target: TorchServe 0.12 needs Java 17 to run
#: (tools/check_java.sh), and the fixes use CompletableFuture methods of Java 12+.
JAVA_RELEASE = "17"
JDK_HINT = (
    "Install a JDK 17 (Debian/Ubuntu: sudo apt-get install -y openjdk-17-jdk-headless; "
    "macOS: brew install openjdk@17), then run `make install` again."
)
UNPATCHED_CONSEQUENCES = (
    "TorchServe will serve UNPATCHED: the digit_pipeline workflow can lose node answers under "
    "load (stalls of its node timeout), answers bad input with 500 instead of the models' "
    "4xx, loads private copies of its models that promote/rollback do not reach, and is not "
    "registered at start by a bare `torchserve --start`."
)


class PatchError(RuntimeError):
    """The patch cannot be applied to this jar; the message says why and what to do."""


@dataclass(frozen=True)
class JarState:
    """What a model-server.jar is: `patched` (this patch), `stale` (an older cvserve
    patch), `original` (untouched 0.12.0) or `foreign` (anything else)."""

    kind: str
    detail: str = ""


def default_jar() -> Path:
    """The model-server.jar of the `ts` package this interpreter imports."""
    import ts  # the installed TorchServe (torchserve==0.12.0)

    return Path(ts.__file__).resolve().parent / "frontend" / "model-server.jar"


def source_digest(sources: Path = SOURCES) -> str:
    """SHA-256 over the patch's Java sources (paths and contents): the patch's identity."""
    digest = hashlib.sha256()
    for path in sorted(sources.rglob("*.java")):
        digest.update(path.relative_to(sources).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_marker(jar: Path) -> dict[str, str] | None:
    with zipfile.ZipFile(jar) as archive:
        if MARKER not in archive.namelist():
            return None
        return json.loads(archive.read(MARKER))


def class_mismatches(jar: Path) -> list[str]:
    """The replaced classes that are missing or differ from 0.12.0's (empty: it is 0.12.0)."""
    problems = []
    with zipfile.ZipFile(jar) as archive:
        names = set(archive.namelist())
        for name, expected in REPLACED_CLASSES.items():
            if name not in names:
                problems.append(f"{name} is missing")
            elif _sha256(archive.read(name)) != expected:
                problems.append(f"{name} differs from 0.12.0's")
    return problems


def jar_state(jar: Path) -> JarState:
    if not jar.is_file():
        return JarState("foreign", f"{jar} does not exist")
    marker = read_marker(jar)
    if marker is not None:
        if marker.get("source_sha256") == source_digest():
            return JarState("patched", marker["source_sha256"][:12])
        return JarState("stale", str(marker.get("source_sha256", "?"))[:12])
    problems = class_mismatches(jar)
    if problems:
        return JarState("foreign", "; ".join(problems))
    return JarState("original")


def backup_path(jar: Path) -> Path:
    return jar.with_name(jar.name + ".orig")


def compile_sources(original_jar: Path, out_dir: Path) -> list[Path]:
    """javac the patch against the untouched jar; returns the class files written."""
    javac = shutil.which("javac")
    if javac is None:
        raise FileNotFoundError("javac")
    sources = sorted(str(p) for p in SOURCES.rglob("*.java"))
    cmd = [javac, "--release", JAVA_RELEASE, "-nowarn", "-encoding", "UTF-8"]
    cmd += ["-cp", str(original_jar), "-d", str(out_dir), *sources]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PatchError(f"javac failed on frontend_patch/src:\n{result.stderr.strip()}")
    return sorted(out_dir.rglob("*.class"))


def _outer_class(entry: str) -> str:
    """`a/B$1.class` -> `a/B`: inner and anonymous classes go with their outer class."""
    return entry.removesuffix(".class").split("$", 1)[0]


def write_patched_jar(original_jar: Path, classes_dir: Path, target: Path) -> None:
    """Copy the original jar without the patched classes (and their inner classes), add the
    compiled ones and the marker, then move it over `target` atomically."""
    compiled = {p.relative_to(classes_dir).as_posix(): p for p in classes_dir.rglob("*.class")}
    replaced_outer = {_outer_class(name) for name in compiled} | {
        _outer_class(name) for name in REPLACED_CLASSES
    }
    marker = {"patch": PATCH_NAME, "torchserve": TORCHSERVE_VERSION}
    marker["source_sha256"] = source_digest()
    fd, tmp_name = tempfile.mkstemp(prefix=".model-server.", suffix=".jar", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with (
            zipfile.ZipFile(original_jar) as src,
            zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst,
        ):
            for info in src.infolist():
                if info.filename.endswith(".class") and (
                    _outer_class(info.filename) in replaced_outer
                ):
                    continue
                dst.writestr(info, src.read(info))
            for name, path in sorted(compiled.items()):
                dst.write(path, name)
            dst.writestr(MARKER, json.dumps(marker, indent=1) + "\n")
        shutil.copymode(original_jar, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def apply(jar: Path) -> str:
    """Patch `jar` in place. Returns what happened; raises PatchError when it must not."""
    state = jar_state(jar)
    if state.kind == "patched":
        return f"already patched ({PATCH_NAME} {state.detail}): nothing to do"
    backup = backup_path(jar)
    if state.kind == "foreign":
        raise PatchError(
            f"{jar} is not TorchServe {TORCHSERVE_VERSION}'s frontend ({state.detail}). "
            f"cvserve's frontend patch applies to exactly {TORCHSERVE_VERSION}: "
            f"pip install torchserve=={TORCHSERVE_VERSION}"
        )
    if state.kind == "original" and (not backup.is_file() or class_mismatches(backup)):
        shutil.copy2(jar, backup)
    if state.kind == "stale" and (not backup.is_file() or class_mismatches(backup)):
        raise PatchError(
            f"{jar} carries an older cvserve patch and its original ({backup}) is missing "
            "or not 0.12.0: reinstall torchserve==0.12.0 "
            "(pip install --force-reinstall torchserve==0.12.0), then run this again"
        )
    with tempfile.TemporaryDirectory(prefix="cvserve-frontend-patch-") as tmp:
        classes = Path(tmp) / "classes"
        classes.mkdir()
        compile_sources(backup, classes)
        write_patched_jar(backup, classes, jar)
    return f"patched {jar} ({PATCH_NAME} {source_digest()[:12]})"


def revert(jar: Path) -> str:
    backup = backup_path(jar)
    if jar_state(jar).kind == "original":
        return f"{jar} is already TorchServe {TORCHSERVE_VERSION}'s original"
    if not backup.is_file():
        raise PatchError(f"no original to restore: {backup} is missing")
    shutil.copy2(backup, jar)
    return f"restored TorchServe {TORCHSERVE_VERSION}'s original {jar}"


def describe(jar: Path | None = None) -> str:
    """One line for `tools.serve status` and the start message."""
    try:
        state = jar_state(jar or default_jar())
    except (ImportError, OSError, zipfile.BadZipFile) as exc:
        return f"unknown ({exc})"
    return {
        "patched": f"patched ({PATCH_NAME} {state.detail})",
        "stale": f"an older cvserve patch ({state.detail}): run `make install`",
        "original": "UNPATCHED TorchServe 0.12.0: run `make install` (needs a JDK)",
        "foreign": f"not TorchServe 0.12.0 ({state.detail})",
    }[state.kind]


def is_patched(jar: Path | None = None) -> bool:
    try:
        return jar_state(jar or default_jar()).kind == "patched"
    except (ImportError, OSError, zipfile.BadZipFile):
        return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.frontend_patch", description=__doc__)
    parser.add_argument("command", choices=["apply", "status", "revert"])
    parser.add_argument("--jar", type=Path, help="model-server.jar (default: the venv's)")
    args = parser.parse_args(argv)
    jar = args.jar or default_jar()
    try:
        if args.command == "status":
            print(f"TorchServe frontend: {describe(jar)}")
            return 0
        if args.command == "revert":
            print(revert(jar))
            return 0
        print(apply(jar))
        return 0
    except FileNotFoundError:
        print(f"WARNING: javac not found, cvserve's frontend patch was not built. {JDK_HINT}")
        print(f"WARNING: {UNPATCHED_CONSEQUENCES}")
        return 0
    except PatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
