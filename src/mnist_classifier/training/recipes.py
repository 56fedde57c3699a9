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
}


def list_recipes() -> list[str]:
    return list(RECIPES)


def recipe_values(name: str) -> dict[str, Any]:
    """The config values of recipe ``name``."""
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}")
    return {**RECIPES[name][1], "recipe": name}
