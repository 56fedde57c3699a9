"""The model registry: ``register_model``, ``create_model(name, **kwargs)``, ``list_models(pattern)``.

A model factory is registered under a name; every model takes normalised images
(B, 1, 28, 28) and returns logits (B, 10). Softmax is applied only by callers
that want probabilities.

Other packages add models through the ``mnist_classifier.models`` entry-point group
(:data:`ENTRY_POINT_GROUP`), loaded the first time the registry is asked for a model. An
entry point names either a module, whose import registers its models with
:func:`register_model`, or a factory, registered under the entry point's name. A plugin that
fails to load is skipped with a :class:`PluginWarning`, so one broken package cannot take the
others down. Once such a package is installed, its models train and their checkpoints load
everywhere a built-in model does (evaluate, predict, serve, export).
"""

from __future__ import annotations

import fnmatch
import inspect
import types
import warnings
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, TypeVar

from torch import nn

from ..errors import ConfigError

ModelFactory = Callable[..., nn.Module]
F = TypeVar("F", bound=ModelFactory)

ENTRY_POINT_GROUP = "mnist_classifier.models"

_REGISTRY: dict[str, ModelFactory] = {}
_DESCRIPTIONS: dict[str, str] = {}
_PROVIDERS: dict[str, str] = {}  # model name -> the distribution that registered it (plugins)
_plugins_loaded = False


class PluginWarning(UserWarning):
    """A package's ``mnist_classifier.models`` entry point could not be loaded."""


def register_model(name: str, description: str = "") -> Callable[[F], F]:
    """Decorator: register ``factory`` under ``name``."""

    def decorator(factory: F) -> F:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = factory
        doc_lines = (factory.__doc__ or "").strip().splitlines()
        _DESCRIPTIONS[name] = description or (doc_lines[0] if doc_lines else "")
        return factory

    return decorator


def _ensure_builtins() -> None:
    # Importing the modules registers their models (MLPs first, as listed to users), then
    # the installed plugins add theirs.
    from . import (
        cnn,  # noqa: F401
        ensemble,  # noqa: F401
        mlp,  # noqa: F401
    )

    _load_plugins()


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True  # first: a plugin that lists the models while loading must not recurse
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        provider = ep.dist.name if ep.dist is not None else ep.value
        before = set(_REGISTRY)
        try:
            loaded = ep.load()
            if not isinstance(loaded, types.ModuleType):
                if ep.name in _REGISTRY:
                    raise ValueError(f"the name {ep.name!r} is already registered")
                if not callable(loaded):
                    raise TypeError(f"{ep.value} is neither a module nor a model factory")
                register_model(ep.name)(loaded)
        except Exception as exc:
            warnings.warn(
                f"model plugin {ep.name!r} from {provider} ({ep.value}) was skipped: "
                f"{type(exc).__name__}: {exc}",
                PluginWarning,
                stacklevel=2,
            )
            for name in set(_REGISTRY) - before:  # registered before it failed: still its own
                _PROVIDERS[name] = provider
            continue
        for name in set(_REGISTRY) - before:
            _PROVIDERS[name] = provider


def model_provider(name: str) -> str | None:
    """The distribution whose entry point registered ``name``; None for built-in models."""
    _ensure_builtins()
    return _PROVIDERS.get(name)


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
        raise ConfigError(
            f"unknown model {name!r}; choose one of: {', '.join(_REGISTRY)} (a model from "
            f"another package needs that package installed: it registers its models under "
            f"the {ENTRY_POINT_GROUP!r} entry point)"
        )
    accepted = model_arguments(name)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(factory).parameters.values())
    unknown = [] if takes_any else [key for key in kwargs if key not in accepted]
    if unknown:
        takes = ", ".join(accepted) if accepted else "no arguments"
        raise ConfigError(
            f"model {name!r} does not accept the argument {unknown[0]!r} (it takes: {takes})"
        )
    try:
        model = factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"model {name!r} does not accept these arguments: {exc}") from None
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(f"model {name!r}: {exc}") from None
    except Exception as exc:  # a plugin's factory: its failure is one line, not a traceback
        raise ConfigError(
            f"model {name!r} could not be built ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model {name!r}: its factory returned {type(model).__name__}, not a torch module"
        )
    return model


def model_arguments(name: str) -> dict[str, Any]:
    """The arguments model ``name`` takes, with their defaults (``--model-arg`` keys)."""
    _ensure_builtins()
    factory = _REGISTRY.get(name)
    if factory is None:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(_REGISTRY)}")
    return {
        p.name: ("required" if p.default is p.empty else p.default)
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
