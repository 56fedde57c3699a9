"""Training configuration: one dataclass with defaults, stored inside run folders and checkpoints.

The defaults are the seed recipe of the original projects: the 784-128-64-10 MLP
with dropout 0.2, Adam (lr 1e-3, weight decay 1e-4), batch 32, 10 epochs and an
80/20 train/validation split.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "onecycle", "cosine")
AUGMENTS = ("none", "shift", "light", "strong", "robust")


@dataclass
class TrainConfig:
    """Everything that defines a training run."""

    model: str = "mlp-128-64-dropout"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    optimizer: str = "adam"
    lr: float = 1e-3  # peak learning rate for schedules
    weight_decay: float = 1e-4
    momentum: float = 0.9  # sgd only
    batch_size: int = 32  # images per optimizer step
    epochs: int = 10
    val_fraction: float = 0.2  # share of the training split held out for validation
    schedule: str = "none"  # none | onecycle | cosine (per step)
    label_smoothing: float = 0.0
    augment: str = "none"  # none | shift | light | strong | robust (see data/augment.py)
    ema: float = 0.0  # decay of an exponential moving average of weights; 0 = off
    sync_bn: bool = False  # under torchrun: batch-norm statistics over the global batch (CUDA)
    tta: bool = False  # test-time augmentation at evaluation (small shifts, averaged)
    patience: int = 0  # early stopping on validation loss after this many bad epochs; 0 = off
    seed: int = 0
    device: str = "auto"  # auto: cuda, then mps, then cpu
    threads: int = 0  # CPU threads for torch; 0 = torch's default
    eval_batch_size: int = 1000
    limit_train: int = 0  # use only the first N training images (0 = all); for quick runs
    data_dir: str | None = None  # None = the MNIST copy shipped with the package
    recipe: str | None = None  # the named preset this config started from, if any

    def validate(self) -> TrainConfig:
        """Raise ConfigError for the first invalid value; return self."""
        from .models.registry import create_model, list_models

        if self.model not in list_models():
            raise ConfigError(
                f"unknown model {self.model!r}; choose one of: {', '.join(list_models())}"
            )
        create_model(self.model, **self.model_kwargs)  # refuses arguments the model cannot take
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("augment", self.augment, AUGMENTS)
        _positive("lr", self.lr)
        _positive("batch_size", self.batch_size)
        _positive("epochs", self.epochs)
        _positive("eval_batch_size", self.eval_batch_size)
        _at_least("weight_decay", self.weight_decay, 0)
        _at_least("momentum", self.momentum, 0)
        _at_least("patience", self.patience, 0)
        _at_least("threads", self.threads, 0)
        _at_least("limit_train", self.limit_train, 0)
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(
                f"val_fraction must be between 0 and 1 (exclusive), got {self.val_fraction}"
            )
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 <= self.ema < 1.0:
            raise ConfigError(f"ema must be in [0, 1), got {self.ema}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> TrainConfig:
        """Build a config from a dict, refusing unknown keys and ill-typed values."""
        return cls().updated(values, source=source)

    def updated(self, values: dict[str, Any], *, source: str = "config") -> TrainConfig:
        """A copy with ``values`` applied (keys may use - or _)."""
        known = {f.name: f for f in dataclasses.fields(self)}
        changes: dict[str, Any] = {}
        for raw_key, value in values.items():
            key = raw_key.replace("-", "_")
            if key not in known:
                raise ConfigError(f"{source}: unknown config key {raw_key!r}")
            changes[key] = _coerce(key, value, getattr(self, key), known[key].type, source)
        return dataclasses.replace(self, **changes)


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML config file into a dict (keys are checked when applied)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            values = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    # Allow the settings at the top level or under a [train] table.
    if set(values) == {"train"} and isinstance(values["train"], dict):
        values = values["train"]
    return values


def _coerce(key: str, value: Any, current: Any, annotation: Any, source: str) -> Any:
    text = str(annotation)
    if value is None:
        if "None" in text:
            return None
        raise ConfigError(f"{source}: {key} cannot be empty")
    if key == "model_kwargs":
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: model_kwargs must be a table, got {value!r}")
        return dict(value)
    try:
        if text.startswith("bool") or isinstance(current, bool):
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if text.startswith("int"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if text.startswith("float"):
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(value)
            return number
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {key} has an invalid value {value!r}") from None


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be positive, got {value}")


def _at_least(name: str, value: float, low: float) -> None:
    if value < low:
        raise ConfigError(f"{name} must be at least {low}, got {value}")
