"""The page's model list: which classifiers, segmenters and pipelines the server has.

Built by the proxy from TorchServe's management API (list, describe every version, the
handler's model card) so the page gets exactly what it needs to draw its controls (task,
versions, default version, class names, legend colours) and the browser never talks to the
management port. Colours come from `handlers.png.class_palette`, the palette the segmenter
paints its masks and overlays with, so the legend matches the picture.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

from handlers.png import class_palette
from tools.demo.routes import NODE_SEPARATOR

log = logging.getLogger("tools.demo")

#: Model-card tasks the page knows how to show.
TASKS = ("classification", "segmentation")


class ManagementClient(Protocol):
    """The part of `tools.client.Client` the catalog needs (a fake in unit tests)."""

    def models(self) -> list[dict[str, Any]]: ...

    def describe(
        self, model: str, version: str | None = None, customized: bool = False
    ) -> list[dict[str, Any]]: ...

    def workflows(self) -> list[dict[str, Any]]: ...


def hex_colours(count: int) -> list[str]:
    """`#rrggbb` for class 0..count-1, as the segmenter's masks are painted."""
    return ["#{:02x}{:02x}{:02x}".format(*(int(c) for c in rgb)) for rgb in class_palette(count)]


def _card(entry: dict[str, Any]) -> dict[str, Any]:
    """The handler's model card from a customized describe entry ({} if it has none)."""
    raw = entry.get("customizedMetadata")
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str) and raw:
        try:
            card = json.loads(raw)
        except json.JSONDecodeError:
            return {}
        return card if isinstance(card, dict) else {}
    return {}


def describe_model(client: ManagementClient, name: str) -> dict[str, Any] | None:
    """One model with all its versions, or None when it is not a cvserve classifier/segmenter.

    The default version is the one TorchServe describes for the bare name. Each version's
    card comes from its own handler (`?customized=true`), since versions may differ in classes.
    """
    default = client.describe(name)[0].get("modelVersion")
    versions = []
    for entry in client.describe(name, "all"):
        version = str(entry.get("modelVersion"))
        card = _card(client.describe(name, version, customized=True)[0])
        task = card.get("task")
        if task not in TASKS:
            log.info("%s %s is not a cvserve classifier/segmenter: not listed", name, version)
            continue
        classes = [str(c) for c in card.get("classes", [])]
        versions.append(
            {
                "version": version,
                "default": version == default,
                "task": task,
                "arch": card.get("arch", ""),
                "classes": classes,
                "colors": hex_colours(len(classes)) if task == "segmentation" else [],
            }
        )
    if not versions:
        return None
    versions.sort(key=lambda v: (not v["default"], v["version"]))
    return {
        "name": name,
        "task": versions[0]["task"],
        "default_version": default,
        "versions": versions,
    }


def build_catalog(client: ManagementClient) -> dict[str, Any]:
    """`{"models": [...], "workflows": [...]}` for the page (see `describe_model`).

    Workflow node models (`<workflow>__<node>`) are internal to the pipeline and left out.
    """
    models = []
    for entry in client.models():
        name = str(entry.get("modelName", ""))
        if not name or NODE_SEPARATOR in name:
            continue
        described = describe_model(client, name)
        if described:
            models.append(described)
    workflows = [
        {"name": str(w["workflowName"])} for w in client.workflows() if "workflowName" in w
    ]
    return {"models": sorted(models, key=lambda m: m["name"]), "workflows": workflows}
