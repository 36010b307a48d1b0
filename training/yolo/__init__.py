"""YOLO-seg (ultralytics) on cvserve's data and metrics: an OPTIONAL extra for comparisons.

ultralytics is AGPL-3.0, so it is never a dependency of cvserve's serving code, archives or
image: it is installed only by `make install-yolo` (requirements-yolo.txt) and by `make test`,
and only this package imports it (lazily). `convert` writes a YOLO polygon dataset from
cvserve's class masks; `runner` trains `yolov8n-seg` from its YAML, offline, and scores it
with cvserve's own metrics (`training.objects.ObjectScores`).
"""

import os

# Before ultralytics is imported anywhere: no DNS "online" probe, no analytics events, no
# hub calls. Nothing here may download (weights, fonts, datasets).
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")
