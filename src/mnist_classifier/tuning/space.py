"""Search spaces: which training settings a study searches, and over what ranges.

A space is a TOML file (or a preset's dict of the same shape)::

    [fixed]                     # settings every trial shares (any config key)
    model = "mlp"

    [params.lr]                 # a config key ...
    type = "float"
    low = 1e-4
    high = 1e-2
    log = true

    [params."model.dropout"]    # ... or a model argument, as model.KEY
    type = "float"
    low = 0.0
    high = 0.5

    [params.batch_size]
    type = "categorical"
    choices = [64, 128, 256]

    [params."model.hidden"]     # a stack of layers: depth first, then one width per layer
    type = "layers"
    depth = [1, 3]
    widths = [32, 64, 128, 256, 512]

Types: ``float`` (``low``, ``high``, optional ``log``, ``step``), ``int`` (the same),
``categorical`` (``choices``: numbers, strings or booleans) and ``layers`` (``depth``
``[min, max]``, ``widths``: the choices of every layer's width). Settings neither fixed
nor searched come from the command's training options (``--epochs``, ``--recipe``, ...).
The names Optuna records are the keys themselves (``lr``, ``model.dropout``) and, for
layers, ``model.hidden.depth`` and ``model.hidden.1`` ... ``model.hidden.N``.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..errors import ConfigError

MODEL_PREFIX = "model."
PARAM_TYPES = ("float", "int", "categorical", "layers")

PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "mlp-architecture": (
        "the original projects' question: depth 1-3, widths 32-512, dropout, lr, weight decay, "
        "batch size of the general mlp",
        {
            "fixed": {"model": "mlp", "optimizer": "adam", "schedule": "none"},
            "params": {
                "model.hidden": {
                    "type": "layers",
                    "depth": [1, 3],
                    "widths": [32, 64, 128, 256, 512],
                },
                "model.dropout": {"type": "float", "low": 0.0, "high": 0.5},
                "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                "weight_decay": {"type": "float", "low": 1e-6, "high": 1e-3, "log": True},
                "batch_size": {"type": "categorical", "choices": [32, 64, 128, 256]},
            },
        },
    ),
    "cnn": (
        "the cnn's width and dropout with one-cycle AdamW's peak lr, weight decay, batch size",
        {
            "fixed": {"model": "cnn", "optimizer": "adamw", "schedule": "onecycle"},
            "params": {
                "model.width": {"type": "categorical", "choices": [8, 16, 24, 32]},
                "model.dropout": {"type": "float", "low": 0.0, "high": 0.3},
                "lr": {"type": "float", "low": 1e-3, "high": 2e-2, "log": True},
                "weight_decay": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True},
                "batch_size": {"type": "categorical", "choices": [64, 128, 256]},
            },
        },
    ),
}

_CONFIG_KEYS = {f.name for f in dataclasses.fields(TrainConfig)} - {"model_kwargs"}
_NUMBER = (int, float)


def _is_number(value: Any) -> bool:
    return isinstance(value, _NUMBER) and not isinstance(value, bool)


@dataclass(frozen=True)
class Param:
    """One searched setting: ``key`` is a config key or ``model.ARG``."""

    key: str
    type: str
    spec: dict[str, Any]

    def suggest(self, trial: Any) -> Any:
        s = self.spec
        if self.type == "float":
            return trial.suggest_float(
                self.key, s["low"], s["high"], log=s.get("log", False), step=s.get("step")
            )
        if self.type == "int":
            return trial.suggest_int(
                self.key, s["low"], s["high"], log=s.get("log", False), step=s.get("step", 1)
            )
        if self.type == "categorical":
            return trial.suggest_categorical(self.key, s["choices"])
        low, high = s["depth"]
        depth = trial.suggest_int(f"{self.key}.depth", low, high)
        return [
            trial.suggest_categorical(f"{self.key}.{i}", s["widths"]) for i in range(1, depth + 1)
        ]


@dataclass(frozen=True)
class SearchSpace:
    """Fixed settings plus searched parameters; :meth:`suggest` draws one trial's settings."""

    name: str
    fixed: dict[str, Any]
    params: tuple[Param, ...]

    def suggest(self, trial: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """(config values, model arguments) for one trial: the fixed settings, then the draws."""
        values = {k: v for k, v in self.fixed.items() if k != "model_kwargs"}
        model_args = dict(self.fixed.get("model_kwargs", {}))
        for param in self.params:
            value = param.suggest(trial)
            if param.key.startswith(MODEL_PREFIX):
                model_args[param.key[len(MODEL_PREFIX) :]] = value
            else:
                values[param.key] = value
        return values, model_args

    @property
    def model_arg_keys(self) -> list[str]:
        return [p.key[len(MODEL_PREFIX) :] for p in self.params if p.key.startswith(MODEL_PREFIX)]


def load_space(name_or_path: str | os.PathLike[str]) -> SearchSpace:
    """A preset by name (``mlp-architecture``, ``cnn``) or a TOML file, checked."""
    text = str(name_or_path)
    if text in PRESETS:
        return parse_space(copy.deepcopy(PRESETS[text][1]), source=f"preset {text!r}", name=text)
    path = Path(name_or_path)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: search space not found (a TOML file, or a preset: {', '.join(PRESETS)})"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return parse_space(raw, source=str(path), name=path.stem)


def parse_space(raw: dict[str, Any], *, source: str, name: str = "space") -> SearchSpace:
    """Check a space's tables; every problem is one :class:`ConfigError` naming the key."""
    unknown = set(raw) - {"fixed", "params"}
    if unknown:
        raise ConfigError(f"{source}: unknown table {sorted(unknown)[0]!r} (use [fixed], [params])")
    fixed = raw.get("fixed", {})
    params_raw = raw.get("params", {})
    if not isinstance(fixed, dict) or not isinstance(params_raw, dict):
        raise ConfigError(f"{source}: [fixed] and [params] must be tables")
    if not params_raw:
        raise ConfigError(f"{source}: [params] is empty: a search space needs something to search")
    try:
        TrainConfig().updated(fixed, source=f"{source} [fixed]")
    except ConfigError:
        raise
    params = tuple(_param(key, spec, source) for key, spec in params_raw.items())
    for param in params:
        if param.key in fixed:
            raise ConfigError(f"{source}: {param.key!r} is both fixed and searched")
    return SearchSpace(name=name, fixed=dict(fixed), params=params)


def _param(key: str, spec: Any, source: str) -> Param:
    where = f"{source}: params.{key}"
    if key.startswith(MODEL_PREFIX):
        if not key[len(MODEL_PREFIX) :].isidentifier():
            raise ConfigError(f"{where}: model arguments are written model.NAME")
    elif key.replace("-", "_") not in _CONFIG_KEYS:
        raise ConfigError(
            f"{where}: not a config key (model arguments are written model.NAME, such as "
            "model.dropout)"
        )
    key = key.replace("-", "_") if not key.startswith(MODEL_PREFIX) else key
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: must be a table with a type")
    kind = spec.get("type")
    if kind not in PARAM_TYPES:
        raise ConfigError(f"{where}: type must be one of {', '.join(PARAM_TYPES)}, got {kind!r}")
    allowed = {
        "float": {"low", "high", "log", "step"},
        "int": {"low", "high", "log", "step"},
        "categorical": {"choices"},
        "layers": {"depth", "widths"},
    }[kind] | {"type"}
    extra = set(spec) - allowed
    if extra:
        raise ConfigError(f"{where}: unknown field {sorted(extra)[0]!r} for type {kind}")
    if kind in ("float", "int"):
        low: Any = spec.get("low")
        high: Any = spec.get("high")
        if not (_is_number(low) and _is_number(high)) or not low <= high:
            raise ConfigError(f"{where}: needs numbers low <= high, got low={low!r} high={high!r}")
        if kind == "int" and not (isinstance(low, int) and isinstance(high, int)):
            raise ConfigError(f"{where}: an int range needs whole numbers")
        if spec.get("log") and low <= 0:
            raise ConfigError(f"{where}: a log scale needs low > 0")
        if not isinstance(spec.get("log", False), bool):
            raise ConfigError(f"{where}: log must be true or false")
        step = spec.get("step")
        if step is not None and (not _is_number(step) or step <= 0 or spec.get("log")):
            raise ConfigError(f"{where}: step must be a positive number (and not with log)")
        if kind == "float":
            spec = {**spec, "low": float(low), "high": float(high)}
    elif kind == "categorical":
        choices = spec.get("choices")
        if (
            not isinstance(choices, list)
            or not choices
            or not all(isinstance(c, (bool, int, float, str)) for c in choices)
        ):
            raise ConfigError(f"{where}: choices must be a non-empty list of numbers or strings")
    else:
        depth, widths = spec.get("depth"), spec.get("widths")
        if (
            not isinstance(depth, list)
            or len(depth) != 2
            or not all(isinstance(d, int) and not isinstance(d, bool) for d in depth)
            or not 1 <= depth[0] <= depth[1]
        ):
            raise ConfigError(f"{where}: depth must be [min, max] with 1 <= min <= max")
        if (
            not isinstance(widths, list)
            or not widths
            or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths)
        ):
            raise ConfigError(f"{where}: widths must be a non-empty list of positive whole numbers")
    return Param(key=key, type=str(kind), spec=dict(spec))


def describe_presets() -> list[tuple[str, str]]:
    return [(name, description) for name, (description, _) in PRESETS.items()]
