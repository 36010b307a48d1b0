"""TorchServe handler for cvserve image classifiers: softmax top-k and Captum explanations.

`POST /predictions/{model}`: `{"model", "version", "label", "index", "score", "topk": [...]}`,
option `topk` (1..number of classes, default 5 or fewer). `POST /explanations/{model}`: a
heatmap and an overlay PNG at the input's own size plus stats, options `method`, `target`,
`n_steps` (docs/api.md). Labels come from the checkpoint's model card.

TorchServe calls the module-level `handle(data, context)`; in an archive this file sits at the
root next to the `handlers/` and `model_src/` packages, hence absolute imports only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from handlers.base import ImageHandler, Prepared, module_entry_point
from handlers.contract import DEFAULT_METHOD, DEFAULT_STEPS, EXPLANATION_METHODS, MAX_STEPS
from handlers.explain import (
    Attribution,
    attribute,
    summarize,
)
from handlers.metrics import HandlerMetrics
from handlers.png import heat_overlay, heatmap_image, png_base64
from handlers.request import Option, RequestError, choice_option, int_option
from model_src import restore_to_original

DEFAULT_TOPK = 5
DEFAULT_IG_INTERNAL_BATCH = 32
SCORE_DIGITS = 6


@dataclass(frozen=True)
class Explanation:
    """One image's attribution mapped back to its original size."""

    method: str
    target: int
    heat: Any  # H x W float32 numpy array in [0, 1], original image size
    positive_fraction: float
    convergence_delta: float | None


def target_option(classes: list[str]) -> Option:
    """`target`: a label, or a class index. A string is matched as a label first, so a
    dataset whose labels are numbers ("1", "2", ...) is addressed by its labels."""
    index_of = {label: i for i, label in enumerate(classes)}
    shown = ", ".join(classes[:20]) + (", ..." if len(classes) > 20 else "")
    allowed = f"a class index from 0 to {len(classes) - 1} or a label ({shown})"

    def parse(raw: Any) -> int:
        if isinstance(raw, str) and raw.strip() in index_of:
            return index_of[raw.strip()]
        value = raw.strip() if isinstance(raw, str) else raw
        if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]{1,12}", value):
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(classes):
            return value
        raise ValueError(f"must be {allowed}, got {raw!r}")

    return Option(None, parse, allowed)


class ClassifierHandler(ImageHandler):
    task = "classification"
    supports_explanations = True

    def setup(self) -> None:
        classes = self.card.classes
        self._predict_options = {
            "topk": int_option(min(DEFAULT_TOPK, len(classes)), 1, len(classes)),
        }
        self._explain_options = {
            "method": choice_option(DEFAULT_METHOD, EXPLANATION_METHODS),
            "target": target_option(classes),
            "n_steps": int_option(DEFAULT_STEPS, 1, MAX_STEPS),
        }

    def options(self, explain: bool) -> Mapping[str, Option]:
        return self._explain_options if explain else self._predict_options

    def check_work(self, count: int, options: Mapping[str, Any], explain: bool) -> None:
        """Explanations cost one gradient pass per image and integrated-gradients step:
        bound images x steps (`max_explain_steps`) before anything is decoded."""
        if not explain:
            return
        steps = options["n_steps"] if options["method"] == "integrated_gradients" else 1
        limit = self.limits.max_explain_steps
        if count * steps > limit:
            raise RequestError(
                422,
                f"{count} images x {steps} steps = {count * steps} gradient steps, over the "
                f"limit of {limit} per request (max_explain_steps); lower n_steps or send "
                "fewer images per request",
            )

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.network(batch).float(), dim=1)

    def explain(self, item: Prepared, output: torch.Tensor, options: dict[str, Any]) -> Explanation:
        target = options["target"] if options["target"] is not None else int(output.argmax())
        method = options["method"]
        baseline = None
        if method == "integrated_gradients":
            # The normalised black image: the eval transform of an all-zero image of the
            # input's own size, so it lands on the canvas exactly as the input does.
            mode = "L" if self.card.input.channels == 1 else "RGB"
            black = Image.new(mode, (item.width, item.height), 0)
            baseline = self.transform(black).unsqueeze(0)
        attribution: Attribution = attribute(
            self.model,
            item.tensor.unsqueeze(0).to(self.device),
            target,
            method,
            baseline=baseline,
            n_steps=options["n_steps"],
            internal_batch_size=self.setting("ig_internal_batch_size", DEFAULT_IG_INTERNAL_BATCH),
        )
        heat = restore_to_original(attribution.heat, item.placement)
        scaled, fraction = summarize(heat)
        return Explanation(method, target, scaled, fraction, attribution.convergence_delta)

    def encode(
        self,
        item: Prepared,
        output: torch.Tensor,
        options: dict[str, Any],
        explanation: Explanation | None,
    ) -> dict[str, Any]:
        probs = output.float().cpu()
        if explanation is not None:
            return self._encode_explanation(item, probs, explanation)
        scores, indices = probs.topk(options["topk"])
        topk = [self._class_entry(int(i), float(s)) for s, i in zip(scores, indices, strict=True)]
        return {"model": self.model_name, "version": self.version, **topk[0], "topk": topk}

    def _encode_explanation(
        self, item: Prepared, probs: torch.Tensor, explanation: Explanation
    ) -> dict[str, Any]:
        stats: dict[str, float] = {"positive_fraction": round(explanation.positive_fraction, 4)}
        if explanation.convergence_delta is not None:
            stats["convergence_delta"] = round(explanation.convergence_delta, SCORE_DIGITS)
        target = explanation.target
        return {
            "model": self.model_name,
            "version": self.version,
            "method": explanation.method,
            "target": self._class_entry(target, float(probs[target])),
            "width": item.width,
            "height": item.height,
            "heatmap_png": png_base64(heatmap_image(explanation.heat)),
            "overlay_png": png_base64(heat_overlay(item.display_rgb(), explanation.heat)),
            "stats": stats,
        }

    def _class_entry(self, index: int, score: float) -> dict[str, Any]:
        return {
            "label": self.card.classes[index],
            "index": index,
            "score": round(score, SCORE_DIGITS),
        }

    def record(self, body: dict[str, Any], metrics: HandlerMetrics) -> None:
        if "label" in body:  # a prediction, not an explanation
            metrics.label(body["label"])


_service = ClassifierHandler()
handle = module_entry_point(_service)
