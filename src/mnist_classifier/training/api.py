"""The Python API: ``train(...)`` and ``evaluate(...)``, as short as the CLI."""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import TrainConfig, load_config_file
from ..data.batches import Split
from ..data.sources import Dataset, load_dataset
from ..errors import ConfigError, MnistClassifierError
from ..evaluation.metrics import split_metrics
from ..runtime import resolve_device
from ..models.checkpoint import load_checkpoint, model_from_checkpoint, resolve_checkpoint_path
from .loop import RunPaths, StepHook, Trainer, evaluate_split
from .recipes import recipe_values


@dataclass
class Run:
    """A finished (or resumable) run folder and what it holds."""

    path: Path
    config: TrainConfig
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def best_checkpoint(self) -> Path:
        return RunPaths(self.path).best

    @property
    def last_checkpoint(self) -> Path:
        return RunPaths(self.path).last

    @property
    def test_accuracy(self) -> float:
        return float(self.metrics["test"]["accuracy"])

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Run:
        """Read a run folder written by :func:`train`."""
        paths = RunPaths(Path(path))
        if not paths.config.is_file():
            raise MnistClassifierError(f"{paths.root}: not a run folder (no config.json)")
        try:
            config = TrainConfig.from_dict(
                json.loads(paths.config.read_text()), source=str(paths.config)
            )
            metrics = json.loads(paths.metrics.read_text()) if paths.metrics.is_file() else {}
        except json.JSONDecodeError as exc:
            raise MnistClassifierError(f"{paths.root}: corrupt run file ({exc})") from None
        history: list[dict[str, float]] = []
        if paths.history.is_file():
            with paths.history.open(newline="") as fh:
                history = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]
        return cls(path=paths.root, config=config, metrics=metrics, history=history)


def make_config(
    config: TrainConfig | dict[str, Any] | str | os.PathLike[str] | None = None,
    *,
    recipe: str | None = None,
    **overrides: Any,
) -> TrainConfig:
    """Defaults, then a recipe, then a config (object, dict or TOML file), then keyword overrides."""
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
    return cfg.validate()


def default_run_dir(cfg: TrainConfig) -> Path:
    return Path("runs") / f"{cfg.recipe or cfg.model}-{time.strftime('%Y%m%d-%H%M%S')}"


def train(
    config: TrainConfig | dict[str, Any] | str | os.PathLike[str] | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    recipe: str | None = None,
    resume: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] | None = print,
    step_hook: StepHook | None = None,
    dataset: Dataset | None = None,
    **overrides: Any,
) -> Run:
    """Train a model and return its :class:`Run`.

    ``mnist_classifier.train(model="cnn", epochs=3)`` trains into ``runs/<name>``;
    ``train(resume="runs/NAME")`` continues an interrupted run from its last checkpoint.
    ``dataset`` replaces the data named by the config (an in-memory :class:`Dataset`).
    """
    logger = log if log is not None else (lambda _msg: None)
    if resume is not None:
        return _resume(Path(resume), logger, step_hook, dataset, overrides)
    cfg = make_config(config, recipe=recipe, **overrides)
    run_dir = Path(out) if out is not None else default_run_dir(cfg)
    if (run_dir / "config.json").exists() or (run_dir / "checkpoints").exists():
        raise ConfigError(
            f"{run_dir}: already holds a run; continue it with --resume {run_dir} or choose another --out"
        )
    Trainer(cfg, run_dir, log=logger, step_hook=step_hook, dataset=dataset).fit()
    return Run.load(run_dir)


def _resume(
    run_dir: Path,
    log: Callable[[str], None],
    step_hook: StepHook | None,
    dataset: Dataset | None,
    overrides: dict[str, Any],
) -> Run:
    paths = RunPaths(run_dir)
    if not paths.last.is_file():
        raise ConfigError(f"{run_dir}: nothing to resume (no checkpoints/last.pt)")
    ckpt = load_checkpoint(paths.last)
    state = ckpt.get("training") or {}
    if ckpt.get("metrics") and paths.metrics.is_file():
        raise ConfigError(f"{run_dir}: the run is already complete (metrics.json exists)")
    cfg = TrainConfig.from_dict(ckpt["config"], source=str(paths.last))
    # Only where the run executes may change; anything else would change the result.
    allowed = {"device", "threads"}
    changed = {k: v for k, v in overrides.items() if v is not None}
    if set(changed) - allowed:
        extra = ", ".join(sorted(set(changed) - allowed))
        raise ConfigError(f"--resume continues the stored config; cannot change {extra}")
    cfg = cfg.updated(changed, source="arguments")
    trainer = Trainer(cfg, run_dir, log=log, step_hook=step_hook, dataset=dataset)
    trainer.restore(ckpt)
    log(
        f"resuming {run_dir} at epoch {state.get('epochs_done', 0) + 1}, "
        f"step {state.get('step_in_epoch', 0)}"
    )
    trainer.fit()
    return Run.load(run_dir)


def evaluate(
    checkpoint: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    device: str = "auto",
    batch_size: int = 1000,
    tta: bool | None = None,
) -> dict[str, Any]:
    """Test-set metrics of a checkpoint (or a run folder's best checkpoint).

    Returns the metrics block of metrics.json: accuracy, loss, confusion matrix,
    per-class precision/recall/F1 and their averages, plus the checkpoint path.
    """
    path = resolve_checkpoint_path(checkpoint)
    ckpt = load_checkpoint(path)
    model = model_from_checkpoint(ckpt, resolve_device(device))
    data_dir = data_dir if data_dir is not None else (ckpt.get("config") or {}).get("data_dir")
    dataset = load_dataset(data_dir)
    norm = ckpt["normalization"]
    use_tta = bool((ckpt.get("config") or {}).get("tta", False)) if tta is None else tta
    split = Split(dataset.test_images, dataset.test_labels)
    loss, _, log_probs = evaluate_split(
        model, split, norm["mean"], norm["std"], batch_size, use_tta
    )
    block = split_metrics(split.labels.numpy(), log_probs.exp().numpy(), loss)
    return {
        "checkpoint": str(path),
        "model": ckpt["model"]["name"],
        "data": dataset.source,
        **block,
    }
