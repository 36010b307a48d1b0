"""cvserve's model code: architectures, the registry, the checkpoint format, preprocessing.

Imported by training and packed into every model archive for the handlers, so it stays pure
PyTorch (plus timm, imported lazily) with no I/O beyond checkpoints.
"""

from torch import nn

from . import cnn, mlp, timm_model, torchvision_seg, unet  # noqa: F401 - importing registers the architectures
from .checkpoint import (
    FORMAT,
    CheckpointError,
    ModelCard,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from .host import SMALL_PARAMS, available_cores, torch_threads
from .preprocessing import (
    RESIZE_POLICIES,
    EvalTransform,
    InputSpec,
    Placement,
    build_eval_transform,
    fit_mask,
    fit_to_canvas,
    placement,
    restore_to_original,
    scaled_placement,
    to_model_mode,
)
from .registry import build_model, list_models, register_model

__all__ = [
    "FORMAT",
    "RESIZE_POLICIES",
    "SMALL_PARAMS",
    "CheckpointError",
    "EvalTransform",
    "InputSpec",
    "ModelCard",
    "Placement",
    "available_cores",
    "build_eval_transform",
    "build_model",
    "fit_mask",
    "fit_to_canvas",
    "list_models",
    "load_checkpoint",
    "placement",
    "read_checkpoint",
    "register_model",
    "restore_to_original",
    "save_checkpoint",
    "scaled_placement",
    "to_model_mode",
    "torch_threads",
]


def default_target_layer(model: nn.Module) -> nn.Module:
    """The Grad-CAM layer a model declares (every cvserve architecture has one)."""
    return getattr(model, "module", model).default_target_layer()
