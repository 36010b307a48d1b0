"""Build models by name.

Every architecture registers a small entry point with `@register_model("name")`; the rest of
cvserve (training, handlers, archives) only ever calls `build_model(arch, **kwargs)` with the
`arch` and `arch_kwargs` stored in a checkpoint's model card. Registering a name twice is a bug
and raises; an unknown name raises `ValueError` listing the valid ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}

F = TypeVar("F", bound=Callable[..., nn.Module])


def register_model(name: str) -> Callable[[F], F]:
    """Register `fn` as the builder of architecture `name`."""

    def decorator(fn: F) -> F:
        if name in _REGISTRY:
            raise ValueError(f"model architecture {name!r} is registered twice")
        _REGISTRY[name] = fn
        return fn

    return decorator


def list_models() -> list[str]:
    """The registered architecture names, sorted."""
    return sorted(_REGISTRY)


def build_model(arch: str, **kwargs: object) -> nn.Module:
    """Build architecture `arch` with its keyword arguments.

    Raises:
        ValueError: `arch` is not registered (the message lists the valid names).
        TypeError: a keyword the builder does not take.
    """
    try:
        builder = _REGISTRY[arch]
    except KeyError:
        raise ValueError(
            f"unknown model architecture {arch!r}; choose one of {', '.join(list_models())}"
        ) from None
    return builder(**kwargs)
