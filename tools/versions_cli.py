"""The `versions`, `promote`, `rollback` and `retire` subcommands of `python -m tools.client`.

    python -m tools.client versions digit_classifier
    python -m tools.client promote digit_classifier 2.0 [--split test|--validation DIR]
        [--limit N] [--tolerance 0.01] [--force] [--report PATH]
    python -m tools.client rollback digit_classifier
    python -m tools.client retire digit_classifier 1.0

Kept apart from the client library (`tools/client/`) so the client stays a thin HTTP layer;
`tools/client/cli.py` imports it. `tools.validation` imports torch and the datasets only
when a promotion needs them.
Exit codes: 0 done, 1 error, 3 the gate refused the candidate (the report says why).
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tools.validation import NoHeldOutSplit, folder_validation_set, held_out_validation_set
from tools.versions import (
    History,
    VersionError,
    format_versions,
    promote,
    retire,
    rollback,
    versions,
)

COMMANDS = ("versions", "promote", "rollback", "retire")
EXIT_REJECTED = 3


def add_parsers(sub: Any) -> None:
    """Add the four subcommands to the client's subparsers."""
    p = sub.add_parser("versions", help="list a model's versions: default, workers, card metrics")
    p.add_argument("model")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser(
        "promote",
        help="register <model>-<version>.mar, canary-validate against the default, switch",
        description=(
            "Register the candidate from the model store, score it and the current default "
            "on the same validation set through their versioned routes, and make it the "
            "default only if candidate >= default - tolerance. A refused candidate is "
            f"unregistered and the command exits {EXIT_REJECTED}."
        ),
    )
    p.add_argument("model")
    p.add_argument("version")
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--validation", type=Path, metavar="DIR",
        help="labelled folder: <class>/<image> (classifiers) or images/ + masks/ (segmenters)",
    )  # fmt: skip
    source.add_argument(
        "--split", choices=("test", "val"),
        help="the held-out split of the dataset the model cards record (default: test)",
    )  # fmt: skip
    p.add_argument("--limit", type=int, help="samples (default 200 classifier, 50 segmenter)")
    p.add_argument("--tolerance", type=float, default=0.01, help="allowed drop (default 0.01)")
    p.add_argument("--force", action="store_true", help="skip the gate: switch unconditionally")
    p.add_argument(
        "--archive", help="archive name in the model store (default <model>-<version>.mar)"
    )
    p.add_argument("--report", type=Path, help="where to save the JSON report")
    p.add_argument("--history", type=Path, help="version history file (default: next to key file)")

    p = sub.add_parser("rollback", help="make the previous default version the default again")
    p.add_argument("model")
    p.add_argument("--history", type=Path, help="version history file (default: next to key file)")

    p = sub.add_parser("retire", help="unregister a version that is not the default")
    p.add_argument("model")
    p.add_argument("version")
    p.add_argument("--history", type=Path, help="version history file (default: next to key file)")


def _validation_loader(args: argparse.Namespace) -> Any:
    """`load(task, classes) -> ValidationSet` for the promote arguments."""

    def load(candidate: dict[str, Any], default: dict[str, Any]) -> Any:
        if args.validation:
            return folder_validation_set(args.validation, candidate["task"], limit=args.limit)
        try:
            return held_out_validation_set(
                candidate, default, split=args.split or "test", limit=args.limit
            )
        except NoHeldOutSplit as exc:
            raise VersionError(str(exc)) from None

    return load


def run(args: argparse.Namespace, client: Any) -> tuple[Any, int]:
    """Execute one versions subcommand: (what to print, exit code)."""
    history = History(args.history) if getattr(args, "history", None) else None
    history = history or History.for_key_file(client.key_file)
    if args.command == "versions":
        rows = versions(client, args.model)
        return (rows if args.json else format_versions(args.model, rows)), 0
    if args.command == "rollback":
        return rollback(client, args.model, history), 0
    if args.command == "retire":
        return retire(client, args.model, args.version, history), 0
    report = promote(
        client, args.model, args.version, _validation_loader(args),
        tolerance=args.tolerance, force=args.force, history=history, archive=args.archive,
    )  # fmt: skip
    path = args.report or history.path.parent / "promotions" / (
        f"{args.model}-{args.version}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    body = report.to_dict()
    body["report"] = str(path)
    path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    return body, 0 if report.promoted else EXIT_REJECTED
