"""The response fields of docs/api.md, written once for the unit tests (handlers called
in-process) and the integration tests (the same handlers behind a real TorchServe)."""

PREDICTION_KEYS = frozenset({"model", "version", "label", "index", "score", "topk"})
EXPLANATION_KEYS = frozenset(
    {
        "model",
        "version",
        "method",
        "target",
        "width",
        "height",
        "heatmap_png",
        "overlay_png",
        "stats",
    }
)
SEGMENTATION_KEYS = frozenset(
    {"model", "version", "width", "height", "classes", "mask_png", "class_pixels", "objects"}
)
OBJECT_KEYS = frozenset({"class", "class_index", "bbox", "area", "score"})
