"""Which browser requests the demo proxy lets through, as a pure function of method and path.

Kept apart from the HTTP server so the allow-list can be read (and unit-tested) in one place:
anything not matched here is refused before a byte goes to TorchServe. The proxy never
forwards a path as it came; it rebuilds the TorchServe call from the validated parts, so a
`..`, an encoded slash or a query string cannot reach another endpoint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

#: TorchServe model/workflow names and versions: letters, digits, `_`, `-`, `.` (no `..`).
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
#: Workflow nodes are registered as `<workflow>__<node>` models: internal, not for the page.
NODE_SEPARATOR = "__"
#: The page's own files, by URL path: a fixed map, so no path reaches the file system.
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}

RouteKind = Literal["static", "models", "predictions", "explanations", "wfpredict"]


class RouteError(Exception):
    """A request the proxy refuses: `status` (404 or 405) and a message for the page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Route:
    """A request the proxy serves: its kind and, for inference, the model and version."""

    kind: RouteKind
    name: str = ""
    version: str | None = None
    static_file: str = ""
    content_type: str = ""


def valid_name(text: str) -> bool:
    """A model, workflow or version name the page may use (not a workflow's internal node)."""
    return bool(NAME_RE.match(text)) and ".." not in text and NODE_SEPARATOR not in text


def _inference_route(kind: RouteKind, parts: list[str]) -> Route:
    allows_version = kind != "wfpredict"  # workflows have no versions in TorchServe 0.12
    if not parts or len(parts) > (2 if allows_version else 1):
        suffix = "[/<version>]" if allows_version else ""
        raise RouteError(404, f"use /api/{kind}/<name>{suffix}")
    if not all(valid_name(p) for p in parts):
        raise RouteError(404, f"not a model name or version: {'/'.join(parts)!r}")
    return Route(kind, name=parts[0], version=parts[1] if len(parts) == 2 else None)


def resolve(method: str, path: str) -> Route:
    """The route for `method path` (path without the query string), or RouteError.

    Allowed: GET of the page's files and of `/api/models`; POST to `/api/predictions/...`,
    `/api/explanations/...` and `/api/wfpredict/...`. Everything else is 404 (unknown path)
    or 405 (known path, wrong method), so management calls (register, scale, set-default,
    delete, token rotation) can never pass through.
    """
    if path in STATIC_FILES:
        if method not in ("GET", "HEAD"):
            raise RouteError(405, f"{method} is not allowed on {path}")
        filename, content_type = STATIC_FILES[path]
        return Route("static", static_file=filename, content_type=content_type)
    if path == "/api/models":
        if method != "GET":
            raise RouteError(405, "/api/models only lists models (GET)")
        return Route("models")
    parts = path.split("/")
    if len(parts) >= 3 and parts[0] == "" and parts[1] == "api":
        kind = parts[2]
        if kind in ("predictions", "explanations", "wfpredict"):
            if method != "POST":
                raise RouteError(405, f"/api/{kind} takes POST with an image")
            return _inference_route(kind, parts[3:])  # type: ignore[arg-type]
    raise RouteError(404, f"{path} is not served here (the demo passes only the page's calls)")
