"""The peer users write by hand: a minimal threaded Flask app around the same handler.

One request -> one `handler.handle([row])` call (no batching), Werkzeug's threaded dev
server, exactly what a notebook turned into an API usually looks like. It uses cvserve's
handler so the preprocessing, forward and encoding are identical to TorchServe's.

    python -m tools.bench.flask_server CHECKPOINT --port 5000
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request

from tools.bench.subjects import BenchContext, load_handler


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no per-request access log
    app = create_app(load_handler(args.checkpoint))
    app.run(host="127.0.0.1", port=args.port, threaded=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
