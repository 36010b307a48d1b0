"""The command line of tools.client: `python -m tools.client COMMAND ...` (see the package).

Apart from the library (`tools/client/__init__.py`) so that the library imports nothing of
the version tools: `tools.versions` uses the client, and this CLI uses both, with no cycle.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

from handlers.contract import EXPLANATION_METHODS
from tools import versions_cli
from tools.client import (
    DEFAULT_CONFIG,
    DEFAULT_KEY_FILE,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    DEFAULT_WORKFLOW,
    Client,
    CvserveError,
)
from tools.versions import VersionError

# ---------------------------------------------------------------------------------------------
# Output helpers


def save_pngs(body: Any, save_dir: str | Path, stem: str) -> Any:
    """Write every `*_png` field to `<save_dir>/<stem>_<field>.png`; return the body with the
    base64 replaced by the file path (nested objects get their index in the name)."""
    save_dir = Path(save_dir)

    def walk(node: Any, prefix: str) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if key.endswith("_png") and isinstance(value, str):
                    path = save_dir / f"{prefix}{key[: -len('_png')]}.png"
                    save_dir.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(base64.b64decode(value))
                    out[key] = str(path)
                else:
                    out[key] = walk(value, f"{prefix}{key}_" if isinstance(value, list) else prefix)
            return out
        if isinstance(node, list):
            return [walk(v, f"{prefix}{i}_") for i, v in enumerate(node)]
        return node

    return walk(body, f"{stem}_")


def abbreviate_pngs(body: Any) -> Any:
    """Replace base64 PNG fields by a short note, for printing."""
    if isinstance(body, dict):
        return {
            k: (f"<{len(v) * 3 // 4} bytes of PNG; use --save-dir>" if k.endswith("_png")
                and isinstance(v, str) else abbreviate_pngs(v))
            for k, v in body.items()
        }  # fmt: skip
    if isinstance(body, list):
        return [abbreviate_pngs(v) for v in body]
    return body


def _parse_value(text: str) -> Any:
    """CLI `--option key=value`: JSON scalars (numbers, true/false) else the text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.client",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="config.properties")
    parser.add_argument("--key-file", default=str(DEFAULT_KEY_FILE), help="key_file.json")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds to wait for an answer"
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=DEFAULT_RETRIES,
        help="extra attempts of an inference call after a 503, a 507 or a refused or reset "
        f"connection (default {DEFAULT_RETRIES}; management calls are never retried)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def image_command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("image", type=Path)
        p.add_argument("--save-dir", type=Path, help="write *_png fields as PNG files here")
        p.add_argument("--full", action="store_true", help="print base64 PNGs in full")
        p.add_argument(
            "--option", action="append", default=[], metavar="KEY=VALUE",
            help="any other request option (repeatable)",
        )  # fmt: skip
        return p

    p = image_command("predict", "classify or segment an image")
    p.add_argument("--model", required=True)
    p.add_argument("--version")
    p.add_argument("--topk", type=int, help="classifier: how many classes to return")
    p.add_argument("--overlay", action="store_true", help="segmenter: add overlay_png")
    p.add_argument("--min-area", type=int, help="segmenter: smallest object in pixels")

    p = image_command("explain", "explain a classifier's prediction")
    p.add_argument("--model", required=True)
    p.add_argument("--version")
    p.add_argument("--method", choices=EXPLANATION_METHODS)
    p.add_argument("--target", help="class label or index (default: the predicted class)")
    p.add_argument("--n-steps", type=int, help="integrated gradients steps")

    p = image_command("pipeline", "run the segment -> cut -> classify workflow")
    p.add_argument("--workflow", default=DEFAULT_WORKFLOW)

    sub.add_parser("models", help="list registered models")
    p = sub.add_parser("describe", help="describe a model's versions and workers")
    p.add_argument("model")
    p.add_argument("--version", help="a version, or 'all'")
    p.add_argument("--customized", action="store_true", help="include the model card")
    p = sub.add_parser("register", help="register an archive from the model store")
    p.add_argument("url", help="file name in the model store, e.g. digit_classifier-2.0.mar")
    p.add_argument("--initial-workers", type=int, default=1)
    p.add_argument("--no-sync", action="store_true", help="return before workers are up")
    p = sub.add_parser("set-default", help="make a version the default (promote/roll back)")
    p.add_argument("model")
    p.add_argument("version")
    p = sub.add_parser("unregister", help="unregister a model version (or the default)")
    p.add_argument("model")
    p.add_argument("version", nargs="?")
    p = sub.add_parser("scale", help="set a model's worker count")
    p.add_argument("model")
    p.add_argument("--min", type=int, required=True, dest="min_worker")
    p.add_argument("--max", type=int, dest="max_worker")
    p.add_argument("--version")
    p = sub.add_parser("metrics", help="print the Prometheus metrics")
    p.add_argument("--grep", help="only lines matching this regular expression")
    sub.add_parser("ping", help="server health")
    versions_cli.add_parsers(sub)
    return parser


def run(args: argparse.Namespace, client: Client) -> Any:
    """Execute one parsed CLI command; returns what to print."""
    extra = {}
    for item in getattr(args, "option", []):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--option wants KEY=VALUE, got {item!r}")
        extra[key] = _parse_value(value)
    if args.command == "predict":
        options = {"topk": args.topk, "min_area": args.min_area, **extra}
        if args.overlay:
            options["overlay"] = True
        return client.predict(args.image, args.model, args.version, **options)
    if args.command == "explain":
        target = _parse_value(args.target) if args.target is not None else None
        options = {"method": args.method, "target": target, "n_steps": args.n_steps, **extra}
        return client.explain(args.image, args.model, args.version, **options)
    if args.command == "pipeline":
        return client.pipeline(args.image, args.workflow)
    if args.command == "models":
        return client.models()
    if args.command == "describe":
        return client.describe(args.model, args.version, customized=args.customized)
    if args.command == "register":
        return client.register(
            args.url, initial_workers=args.initial_workers, synchronous=not args.no_sync
        )
    if args.command == "set-default":
        return client.set_default(args.model, args.version)
    if args.command == "unregister":
        return client.unregister(args.model, args.version)
    if args.command == "scale":
        return client.scale(args.model, args.min_worker, args.max_worker, args.version)
    if args.command == "metrics":
        text = client.metrics()
        if args.grep:
            pattern = re.compile(args.grep)
            text = "\n".join(line for line in text.splitlines() if pattern.search(line))
        return text
    if args.command == "ping":
        return client.ping()
    raise SystemExit(f"unknown command {args.command}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    client = Client(args.config, args.key_file, timeout=args.timeout, retries=args.retries)
    code = 0
    try:
        if args.command in versions_cli.COMMANDS:
            result, code = versions_cli.run(args, client)
        else:
            result = run(args, client)
    except VersionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except CvserveError as exc:
        print(f"error {exc.status}: {exc.type + ': ' if exc.type else ''}{exc.message}",
              file=sys.stderr)  # fmt: skip
        return 1
    except (FileNotFoundError, requests.ConnectionError) as exc:
        print(f"error: {exc} (is the server running? `make serve`)", file=sys.stderr)
        return 1
    if isinstance(result, str):
        print(result)
        return code
    if getattr(args, "save_dir", None):
        result = save_pngs(result, args.save_dir, args.image.stem)
    elif not getattr(args, "full", False):
        result = abbreviate_pngs(result)
    print(json.dumps(result, indent=2))
    return code
