"""The peer users write by hand: a minimal Flask app around the same handler.

One request -> one `handler.handle([row])` call (no batching). Two ways to run it, both in the
comparison:
- `python -m tools.bench.flask_server CHECKPOINT --port P`: the single-process threaded
  Werkzeug server of a notebook turned into an API, given the whole CPU budget as torch
  threads;
- `gunicorn 'tools.bench.flask_server:app_from_env()'`: how users deploy Flask, with as many
  workers and torch threads as the TorchServe archive it is compared with (settings from the
  `CVSERVE_BENCH_*` environment, see `app_from_env`).
It uses cvserve's handler with the archive's model-config, so the preprocessing, forward
(compiled or not, same threads) and encoding are identical to TorchServe's.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request

from tools.bench.subjects import BenchContext, load_handler, write_runtime

ENV_CHECKPOINT = "CVSERVE_BENCH_CHECKPOINT"
ENV_MODEL_CONFIG = "CVSERVE_BENCH_MODEL_CONFIG"
ENV_RUNTIME_DIR = "CVSERVE_BENCH_RUNTIME_DIR"


def create_app(handler: Any) -> Flask:
    """`POST /predictions/<model>` (JSON body as in docs/api.md) and `GET /ping`."""
    app = Flask("cvserve-bench-flask")

    @app.get("/ping")
    def ping() -> Response:
        return jsonify(status="Healthy")

    @app.post("/predictions/<model>")
    def predict(model: str) -> tuple[Response, int]:
        context = BenchContext(Path("."), handler.model_name)
        reply = handler.handle([{"body": request.get_json(force=True)}], context)[0]
        return jsonify(reply), context.statuses.get(0, 200)

    return app


def serve_checkpoint(checkpoint: Path, model_config: Any, runtime_dir: str | None) -> Flask:
    """The app for `checkpoint` with `model_config`; this process's runtime recorded."""
    handler = load_handler(checkpoint, model_config)
    write_runtime(handler, runtime_dir)
    return create_app(handler)


def app_from_env() -> Flask:
    """gunicorn's app factory: checkpoint, model-config (JSON) and runtime folder from the
    environment, loaded in each worker after the fork (no `--preload`), like TorchServe's
    workers each load their own model."""
    config = json.loads(os.environ.get(ENV_MODEL_CONFIG) or "null")
    return serve_checkpoint(
        Path(os.environ[ENV_CHECKPOINT]), config, os.environ.get(ENV_RUNTIME_DIR)
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model-config", type=json.loads, help="the archive's, as JSON")
    parser.add_argument("--runtime-dir", help="write this process's runtime record here")
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no per-request access log
    app = serve_checkpoint(args.checkpoint, args.model_config, args.runtime_dir)
    app.run(host="127.0.0.1", port=args.port, threaded=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
