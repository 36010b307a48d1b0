"""A served model's handler, loaded in the test process: the reference a served answer must
equal, so that nothing between the client and the model (archive, frontend, batching, PNG,
base64) is shown to change it. TorchServe's own `Context` and `RequestProcessor` wrap it."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from ts.context import Context, RequestProcessor


class InProcess:
    """`handler_type` on the checkpoint in `model_dir`, answering requests here."""

    def __init__(self, handler_type: type, name: str, model_dir: Path) -> None:
        manifest = {
            "model": {"modelName": name, "modelVersion": "1.0", "serializedFile": "model.pt"}
        }
        self.context = Context(name, str(model_dir), manifest, 1, None, "0.12.0")
        self.handler = handler_type()
        self.handler.initialize(self.context)

    def answer(self, data: bytes, *, explain: bool = False, **options: Any) -> dict[str, Any]:
        """The body the handler gives for one image (`/explanations` when `explain`)."""
        self.context.request_processor = [RequestProcessor({"explain": "True"} if explain else {})]
        image = base64.b64encode(data).decode("ascii")
        (body,) = self.handler.handle([{"body": {"image": image, **options}}], self.context)
        return body
