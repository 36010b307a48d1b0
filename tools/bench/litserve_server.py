"""A modern batching server: LitServe around the same handler, its dynamic batching on.

LitServe collects up to `max_batch_size` requests (waiting at most `batch_timeout` s) and
calls `predict` once with the list; `predict` hands that list to `handler.handle` as ONE
TorchServe-style batch, so the forward pass is batched exactly as in cvserve's TorchServe
worker. One inference worker (all cores to torch), one API server process, ZeroMQ queues.

    python -m tools.bench.litserve_server CHECKPOINT --port 5001 --max-batch-size 8
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import litserve as ls

from tools.bench.subjects import BenchContext, load_handler


class HandlerAPI(ls.LitAPI):
    """LitAPI whose batch is a list of request rows for the cvserve handler."""

    def __init__(self, checkpoint: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.checkpoint = checkpoint
        self.handler: Any = None

    def setup(self, device: str) -> None:
        self.handler = load_handler(self.checkpoint)

    # `request` stays unannotated: LitServe reads the annotation to choose how to parse the
    # body (none = JSON), and this module's postponed annotations would be strings to it.
    def decode_request(self, request):  # type: ignore[no-untyped-def]
        """The JSON body, as TorchServe hands it to a handler."""
        return {"body": request}

    def batch(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return list(inputs)

    def predict(self, rows: Any) -> list[Any]:
        single = isinstance(rows, dict)  # max_batch_size=1: LitServe passes one request
        rows = [rows] if single else rows
        replies = self.handler.handle(rows, BenchContext(Path("."), self.handler.model_name))
        return replies[0] if single else replies

    def unbatch(self, output: list[Any]) -> list[Any]:
        return list(output)

    def encode_response(self, output: Any) -> Any:
        return output


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--batch-timeout", type=float, default=0.005, help="seconds")
    parser.add_argument("--fast-queue", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    api = HandlerAPI(
        args.checkpoint,
        max_batch_size=args.max_batch_size,
        batch_timeout=args.batch_timeout,
        api_path="/predict",
    )
    # fast_queue: ZeroMQ between the API server and the inference worker, LitServe's
    # documented option for throughput (its default multiprocessing queues are slower).
    server = ls.LitServer(
        api, accelerator="cpu", workers_per_device=1, timeout=300, fast_queue=args.fast_queue
    )
    logging.getLogger("litserve").setLevel(logging.WARNING)
    server.run(
        host="127.0.0.1",
        port=args.port,
        num_api_servers=1,
        generate_client_file=False,
        log_level="warning",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
