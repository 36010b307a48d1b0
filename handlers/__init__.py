"""cvserve's TorchServe handlers.

TorchServe loads `classifier.py` or `segmenter.py` (copied to the archive root) and calls their
module-level `handle(data, context)`. The shared pieces live here as a package so both handlers
import them with absolute imports (`from handlers.request import ...`):

- `request`: one request dict -> decoded images and validated options (the only input layer);
- `base`: model loading, batching, per-request error isolation, the four handler stages;
- `explain`: Captum attributions for the classifier's `/explanations` route;
- `png`: PNG rendering (masks, heatmaps, overlays) and base64;
- `metrics`: the custom metric names (one place) and how they are recorded.

Importing this package stays cheap: nothing heavy is imported here.
"""
