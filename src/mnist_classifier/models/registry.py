"""The model registry: ``register_model``, ``create_model(name, **kwargs)``, ``list_models(pattern)``.

A model factory is registered under a name; every model takes normalised images
(B, 1, 28, 28) and returns logits (B, 10). Softmax is applied only by callers
that want probabilities.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from ..errors import ConfigError

ModelFactory = Callable[..., nn.Module]
F = TypeVar("F", bound=ModelFactory)

_REGISTRY: dict[str, ModelFactory] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_model(name: str, description: str = "") -> Callable[[F], F]:
    """Decorator: register ``factory`` under ``name``."""

    def decorator(factory: F) -> F:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = factory
        _DESCRIPTIONS[name] = description or (factory.__doc__ or "").strip().splitlines()[0]
        return factory

    return decorator


def _ensure_builtins() -> None:
    # Importing the modules registers their models (MLPs first, as listed to users).
    from . import (
        cnn,  # noqa: F401
        mlp,  # noqa: F401
    )


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching the shell-style ``pattern``, in registration order."""
    _ensure_builtins()
    return [name for name in _REGISTRY if fnmatch.fnmatch(name, pattern)]


def describe_model(name: str) -> str:
    _ensure_builtins()
    return _DESCRIPTIONS.get(name, "")


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the model registered as ``name`` with ``kwargs`` passed to its factory."""
    _ensure_builtins()
    factory = _REGISTRY.get(name)
    if factory is None:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(_REGISTRY)}")
    accepted = model_arguments(name)
    unknown = [key for key in kwargs if key not in accepted]
    if unknown:
        takes = ", ".join(accepted) if accepted else "no arguments"
        raise ConfigError(
            f"model {name!r} does not accept the argument {unknown[0]!r} (it takes: {takes})"
        )
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"model {name!r} does not accept these arguments: {exc}") from None
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(f"model {name!r}: {exc}") from None


def model_arguments(name: str) -> dict[str, Any]:
    """The arguments model ``name`` takes, with their defaults (``--model-arg`` keys)."""
    _ensure_builtins()
    factory = _REGISTRY.get(name)
    if factory is None:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(_REGISTRY)}")
    return {
        p.name: p.default
        for p in inspect.signature(factory).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def check_width(key: str, value: Any) -> int:
    """A layer width or channel count: a positive whole number (ValueError naming ``key``)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{key} must be a positive whole number, got {value!r}")
    return value


def check_fraction(key: str, value: Any) -> float:
    """A dropout rate: a number in [0, 1) (ValueError naming ``key``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{key} must be a number in [0, 1), got {value!r}")
    return float(value)


def uses_convolutions(model: nn.Module) -> bool:
    """True when ``model`` has 2-D convolutions (which run faster channels-last on a CPU)."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
