"""Teach the venv's `activate` where TorchServe's configuration is.

TorchServe's launcher reads a configuration only from `--ts-config` or the environment
variable `TS_CONFIG_FILE`; without either, `torchserve --start` stops with "Missing mandatory
parameter --model-store" (docs/torchserve.md). cvserve's promise is that
`make archive && torchserve --start` works from the repo root with the venv activated, so
`make install` adds two lines to `.venv/bin/activate`: activation exports
`TS_CONFIG_FILE=config.properties`, and `deactivate` unsets it again.

The path is relative on purpose: `config.properties` itself names `model_store` and the
logs relative to the directory TorchServe starts in, so the configuration only makes sense
from the repo root. A `TS_CONFIG_FILE` the user exported before activation is kept.

Usage: `python -m tools.venv_hook install [--venv .venv]` (idempotent).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

MARK = "# cvserve: TorchServe reads ./config.properties (tools/venv_hook.py)"
EXPORT = (
    f"{MARK}\n"
    'if [ -z "${TS_CONFIG_FILE:-}" ] ; then\n'
    "    TS_CONFIG_FILE=config.properties\n"
    "    export TS_CONFIG_FILE\n"
    "    _CVSERVE_SET_TS_CONFIG=1\n"
    "fi\n"
)
UNSET = (
    '    if [ -n "${_CVSERVE_SET_TS_CONFIG:-}" ] ; then  # cvserve\n'
    "        unset TS_CONFIG_FILE _CVSERVE_SET_TS_CONFIG\n"
    "    fi\n"
)
DEACTIVATE = "deactivate () {\n"


def hooked(text: str) -> str:
    """`activate`'s text with the hook added (unchanged when it is there already)."""
    if MARK in text:
        return text
    if DEACTIVATE not in text:
        raise ValueError("not a venv activate script: no `deactivate () {` function")
    text = text.replace(DEACTIVATE, DEACTIVATE + UNSET, 1)
    return text.rstrip("\n") + "\n\n" + EXPORT


def install(venv: Path) -> str:
    activate = venv / "bin" / "activate"
    text = activate.read_text(encoding="utf-8")
    new = hooked(text)
    if new == text:
        return f"{activate}: TS_CONFIG_FILE hook already there"
    activate.write_text(new, encoding="utf-8")
    return f"{activate}: activation now exports TS_CONFIG_FILE=config.properties"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.venv_hook", description=__doc__)
    parser.add_argument("command", choices=["install"])
    parser.add_argument("--venv", type=Path, default=Path(sys.prefix))
    args = parser.parse_args(argv)
    print(install(args.venv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
