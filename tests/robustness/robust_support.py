"""Helpers of the robustness suite: the in-process reference model and small API helpers."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import requests
import torch
from PIL import Image

from model_src import to_model_mode
from tools.client import error_fields as client_error_fields
from tools.tsconfig import read_keys


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class Reference:
    """The served checkpoint, in-process: probabilities for encoded image files."""

    model: torch.nn.Module
    transform: Any
    classes: list[str]

    def probabilities(self, files: Sequence[bytes]) -> torch.Tensor:
        batch = torch.stack(
            [self.transform(to_model_mode(Image.open(io.BytesIO(f)), 1)) for f in files]
        )
        with torch.inference_mode():
            return torch.softmax(self.model(batch), dim=1)

    def probabilities_many(self, files: Sequence[bytes], chunk: int = 256) -> torch.Tensor:
        """`probabilities` in chunks (bounded memory for thousands of files)."""
        return torch.cat(
            [self.probabilities(files[i : i + chunk]) for i in range(0, len(files), chunk)]
        )

    def predict(self, files: Sequence[bytes]) -> list[tuple[str, float]]:
        """(label, score) per file, as the classifier handler reports them."""
        out = []
        for start in range(0, len(files), 256):
            probs = self.probabilities(files[start : start + 256])
            scores, indices = probs.max(dim=1)
            out += [(self.classes[int(i)], float(s)) for s, i in zip(scores, indices, strict=True)]
        return out


def management_auth(server: Any, kind: str = "management") -> dict[str, str]:
    """Authorization header with the server's CURRENT `kind` key (keys can be rotated)."""
    return {"Authorization": f"Bearer {read_keys(server.key_file)[kind]}"}


def describe(management: str, headers: dict[str, str], name: str) -> list[dict[str, Any]]:
    resp = requests.get(f"{management}/models/{name}/all", headers=headers, timeout=30)
    resp.raise_for_status()
    return resp.json()


def model_names(management: str, headers: dict[str, str]) -> list[str]:
    resp = requests.get(f"{management}/models", params={"limit": 100}, headers=headers, timeout=30)
    resp.raise_for_status()
    return [m["modelName"] for m in resp.json()["models"]]


def pids_of(management: str, headers: dict[str, str], names: Sequence[str]) -> dict[str, list]:
    """Every worker PID (and status) of every version of each model."""
    out: dict[str, list] = {}
    for name in names:
        for version in describe(management, headers, name):
            key = f"{name}/{version['modelVersion']}"
            out[key] = sorted((w["pid"], w["status"]) for w in version["workers"])
    return out


def error_fields(body: Any) -> tuple[int, str] | None:
    """(status, message) of an error body: cvserve's `{"error": {...}}` or TorchServe's own
    `{"code", "type", "message"}`; None for anything else (the client's reading of it)."""
    fields = client_error_fields(body)
    return None if fields is None else (fields[0], fields[2])


def json_or_text(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return resp.text


def dumps(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:400]
