"""Names the HTTP contract (docs/api.md) fixes, written once for the handlers, the workflow,
the archiver, the server tools, the client and the benchmarks.

Plain constants with no imports: the client and the command-line tools read them without
loading torch or Captum.
"""

from __future__ import annotations

CLASSIFIER = "digit_classifier"
SEGMENTER = "digit_segmenter"
PIPELINE = "digit_pipeline"
DEFAULT_MODELS = (CLASSIFIER, SEGMENTER)
"""The two models `make train` trains and `config.properties` loads at start."""
DEFAULT_WORKFLOWS = (PIPELINE,)
DEFAULT_VERSION = "1.0"

EXPLANATION_METHODS = ("integrated_gradients", "saliency", "gradcam")
DEFAULT_METHOD = "integrated_gradients"
DEFAULT_STEPS = 32
MAX_STEPS = 256
"""`n_steps` of integrated gradients: 1..MAX_STEPS, default DEFAULT_STEPS."""
