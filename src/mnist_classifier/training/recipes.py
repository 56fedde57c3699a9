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
        "cnn-tiny (stride-2 convolutions), 1 epoch at batch 128, one-cycle AdamW with betas (0.7, 0.9): 99% in seconds",
        {
            "model": "cnn-tiny",
            "optimizer": "adamw",
            "lr": 2e-2,
            "beta1": 0.7,
            "beta2": 0.9,
            "weight_decay": 5e-4,
            "batch_size": 128,
            "epochs": 1,
            "val_fraction": 0.1,
            "schedule": "onecycle",
            "label_smoothing": 0.05,
            "augment": "none",
            "ema": 0.0,
        },
    ),
    "cnn-fast-20s": (
        "cnn-tiny, 5 epochs at batch 256 with 2-px shifts, one-cycle AdamW, label smoothing, EMA",
        {
            "model": "cnn-tiny",
            "optimizer": "adamw",
            "lr": 2e-2,
            "beta1": 0.8,
            "beta2": 0.95,
            "weight_decay": 5e-4,
            "batch_size": 256,
            "epochs": 5,
            "val_fraction": 0.1,
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
    "ensemble": (
        "one model of 2 cnn nets at width 16, trained together with cnn-best's settings; probabilities averaged",
        {
            "model": "ensemble",
            "model_kwargs": {"model": "cnn", "members": 2, "width": 16},
            "optimizer": "adamw",
            "lr": 5e-3,
            "weight_decay": 5e-4,
            "batch_size": 128,
            "epochs": 15,
            "val_fraction": 0.1,
            "schedule": "onecycle",
            "label_smoothing": 0.1,
            "augment": "strong",
            "ema": 0.995,
            "tta": True,
        },
    ),
}

# cnn-best's network and schedule, trained on users' kinds of images
RECIPES["robust"] = (
    "cnn-best's network and schedule with the robust augmentation (thick/thin strokes, binary, blocky, box-filling digits)",
    {**RECIPES["cnn-best"][1], "augment": "robust"},
)


def list_recipes() -> list[str]:
    return list(RECIPES)


def recipe_values(name: str) -> dict[str, Any]:
    """The config values of recipe ``name``."""
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}")
    return {**RECIPES[name][1], "recipe": name}
