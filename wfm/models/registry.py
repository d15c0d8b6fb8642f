"""A small timm-style model registry: ``@register_model`` and ``create_model("mae_tiny", **overrides)``.

As in timm, the registry imports no model: each model module registers its constructors when it
is imported, and ``wfm.models`` (the package, imported before any of its modules) imports the
built-in ones.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a model constructor under its function name."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} is already registered")
    _MODELS[fn.__name__] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Names of registered models matching a shell-style ``pattern``, sorted."""
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the registered model ``name``; keyword arguments override its defaults."""
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(_MODELS))}")
    return _MODELS[name](**kwargs)
