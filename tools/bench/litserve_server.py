"""A modern batching server: LitServe around the same handler, its dynamic batching on.

LitServe collects up to `max_batch_size` requests (waiting at most `batch_timeout` s) and
calls `predict` once with the list; `predict` hands that list to `handler.handle` as ONE
TorchServe-style batch, so the forward pass is batched exactly as in cvserve's TorchServe
worker. `--workers` inference workers (as many as the archive's TorchServe workers), each
with the archive's model-config (torch threads, torch.compile), one API server process,
ZeroMQ queues. A request the handler refuses gets the handler's status code (a 400 with the
handler's JSON error), as from TorchServe.

    python -m tools.bench.litserve_server CHECKPOINT --port 5001 --max-batch-size 8
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import litserve as ls
from fastapi.responses import JSONResponse

from tools.bench.subjects import BenchContext, load_handler, write_runtime


class HandlerAPI(ls.LitAPI):
    """LitAPI whose batch is a list of request rows for the cvserve handler."""

    def __init__(
        self,
        checkpoint: Path,
        model_config: dict[str, Any] | None = None,
        runtime_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.checkpoint = checkpoint
        self.model_config = model_config
        self.runtime_dir = runtime_dir
        self.handler: Any = None

    def setup(self, device: str) -> None:
        self.handler = load_handler(self.checkpoint, self.model_config)
        write_runtime(self.handler, self.runtime_dir)

    # `request` stays unannotated: LitServe reads the annotation to choose how to parse the
    # body (none = JSON), and this module's postponed annotations would be strings to it.
    def decode_request(self, request):  # type: ignore[no-untyped-def]
        """The JSON body, as TorchServe hands it to a handler."""
        return {"body": request}

    def batch(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return list(inputs)

    def predict(self, rows: Any) -> Any:
        """(status, reply) per request: the handler's status for each, 200 when it set none."""
        single = isinstance(rows, dict)  # max_batch_size=1: LitServe passes one request
        rows = [rows] if single else rows
        context = BenchContext(Path("."), self.handler.model_name)
        replies = self.handler.handle(rows, context)
        out = [(context.statuses.get(i, 200), reply) for i, reply in enumerate(replies)]
        return out[0] if single else out

    def unbatch(self, output: list[Any]) -> list[Any]:
        return list(output)

    def encode_response(self, output: Any) -> Any:
        """The reply; a refused request's as a response with the handler's status code
        (LitServe passes a Response object through; an exception would fail the batch)."""
        status, reply = output
        if status == 200:
            return reply
        return JSONResponse(reply, status_code=status)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--batch-timeout", type=float, default=0.005, help="seconds")
    parser.add_argument("--workers", type=int, default=1, help="inference worker processes")
    parser.add_argument("--model-config", type=json.loads, help="the archive's, as JSON")
    parser.add_argument("--runtime-dir", help="each worker writes its runtime record here")
    parser.add_argument("--fast-queue", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    api = HandlerAPI(
        args.checkpoint,
        args.model_config,
        args.runtime_dir,
        max_batch_size=args.max_batch_size,
        batch_timeout=args.batch_timeout,
        api_path="/predict",
    )
    # fast_queue: ZeroMQ between the API server and the inference workers, LitServe's
    # documented option for throughput (its default multiprocessing queues are slower).
    server = ls.LitServer(
        api,
        accelerator="cpu",
        workers_per_device=args.workers,
        timeout=300,
        fast_queue=args.fast_queue,
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
