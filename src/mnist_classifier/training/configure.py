"""Composing a TrainConfig: defaults, then a recipe, then a config file, then arguments."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from ..config import TrainConfig, load_config_file
from .recipes import recipe_values


def make_config(
    config: TrainConfig | dict[str, Any] | str | os.PathLike[str] | None = None,
    *,
    recipe: str | None = None,
    model_args: dict[str, Any] | None = None,
    **overrides: Any,
) -> TrainConfig:
    """Defaults, then a recipe, then a config (object, dict or TOML file), then keyword overrides.

    ``model_args`` (``--model-arg``) update the composed config's model arguments key by key.
    """
    cfg = TrainConfig()
    file_values: dict[str, Any] = {}
    source = "config"
    if isinstance(config, TrainConfig):
        cfg = config
    elif isinstance(config, dict):
        file_values = config
    elif config is not None:
        file_values = load_config_file(config)
        source = str(config)
    recipe = recipe or file_values.get("recipe")
    if recipe:
        cfg = cfg.updated(recipe_values(recipe), source=f"recipe {recipe!r}")
    preset_model = cfg.model
    cfg = cfg.updated(file_values, source=source)
    given = {k: v for k, v in overrides.items() if v is not None}
    cfg = cfg.updated(given, source="arguments")
    if cfg.model != preset_model and not ({"model_kwargs"} & (set(file_values) | set(given))):
        # The preset's model arguments belong to the preset's model, not to the one chosen now.
        cfg = cfg.updated({"model_kwargs": {}})
    if model_args:
        cfg = cfg.updated({"model_kwargs": {**cfg.model_kwargs, **model_args}})
    return cfg.validate()


def default_run_dir(cfg: TrainConfig) -> Path:
    return Path("runs") / f"{cfg.recipe or cfg.model}-{time.strftime('%Y%m%d-%H%M%S')}"
