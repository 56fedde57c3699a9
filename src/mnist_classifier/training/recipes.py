"""Named recipes: presets of TrainConfig values that a user can still override."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError

# name -> (one-line description, config values)
RECIPES: dict[str, tuple[str, dict[str, Any]]] = {
    "seed": (
        "the original projects: 784-128-64-10 MLP, dropout 0.2, Adam 1e-3, wd 1e-4, batch 32, 10 epochs",
        {
            "model": "mlp-128-64-dropout",
            "optimizer": "adam",
            "lr": 1e-3,
            "weight_decay": 1e-4,
            "batch_size": 32,
            "epochs": 10,
            "val_fraction": 0.2,
            "schedule": "none",
            "label_smoothing": 0.0,
            "augment": "none",
            "ema": 0.0,
        },
    ),
    "mlp-best": (
        "the same 784-128-64 MLP with batch norm, light affine augmentation, one-cycle AdamW, label smoothing, EMA",
        {
            "model": "mlp-128-64-bn",
            "optimizer": "adamw",
            "lr": 1e-2,
            "weight_decay": 1e-4,
            "batch_size": 256,
            "epochs": 20,
            "schedule": "onecycle",
            "label_smoothing": 0.1,
            "augment": "light",
            "ema": 0.99,
        },
    ),
    "cnn-fast": (
        "cnn-tiny (stride-2 convolutions), 2 epochs at batch 128, one-cycle AdamW: 99% in seconds",
        {
            "model": "cnn-tiny",
            "optimizer": "adamw",
            "lr": 1e-2,
            "weight_decay": 5e-4,
            "batch_size": 128,
            "epochs": 2,
            "schedule": "onecycle",
            "label_smoothing": 0.05,
            "augment": "none",
            "ema": 0.0,
        },
    ),
    "cnn-fast-20s": (
        "cnn-tiny, 6 epochs with 2-px shifts, one-cycle AdamW, label smoothing, EMA",
        {
            "model": "cnn-tiny",
            "optimizer": "adamw",
            "lr": 1e-2,
            "weight_decay": 5e-4,
            "batch_size": 128,
            "epochs": 6,
            "schedule": "onecycle",
            "label_smoothing": 0.1,
            "augment": "shift",
            "ema": 0.99,
        },
    ),
    "cnn-best": (
        "cnn at width 24, strong affine + elastic augmentation, one-cycle, label smoothing, EMA, TTA",
        {
            "model": "cnn",
            "model_kwargs": {"width": 24},
            "optimizer": "adamw",
            "lr": 5e-3,
            "weight_decay": 5e-4,
            "batch_size": 128,
            "epochs": 15,
            "schedule": "onecycle",
            "label_smoothing": 0.1,
            "augment": "strong",
            "ema": 0.995,
            "tta": True,
        },
    ),
    "robust": (
        "cnn-best's network and schedule with the robust augmentation (thick/thin strokes, binary, blocky, box-filling digits)",
        {
            "model": "cnn",
            "model_kwargs": {"width": 24},
            "optimizer": "adamw",
            "lr": 5e-3,
            "weight_decay": 5e-4,
            "batch_size": 128,
            "epochs": 15,
            "schedule": "onecycle",
            "label_smoothing": 0.1,
            "augment": "robust",
            "ema": 0.995,
            "tta": True,
        },
    ),
}


def list_recipes() -> list[str]:
    return list(RECIPES)


def recipe_values(name: str) -> dict[str, Any]:
    """The config values of recipe ``name``."""
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}")
    return {**RECIPES[name][1], "recipe": name}
