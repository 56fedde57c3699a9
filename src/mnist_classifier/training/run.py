"""``Run``: what the Python API returns, a run folder and what it holds."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..errors import RunFolderError
from ..run_folder import RunFolder, read_config, read_history, read_metrics


@dataclass
class Run:
    """A finished (or resumable) run folder and what it holds."""

    path: Path
    config: TrainConfig
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def best_checkpoint(self) -> Path:
        return RunFolder(self.path).best

    @property
    def last_checkpoint(self) -> Path:
        return RunFolder(self.path).last

    @property
    def test_accuracy(self) -> float:
        return float(self.metrics["test"]["accuracy"])

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Run:
        """Read a run folder written by :func:`~mnist_classifier.train`, checking every file."""
        run = RunFolder.at(path)
        if not run.config.is_file():
            raise RunFolderError(f"{run.root}: not a run folder (no {run.config.name})")
        config = TrainConfig.from_dict(read_config(run.root), source=str(run.config))
        metrics = read_metrics(run.root) if run.metrics.is_file() else {}
        history = read_history(run.root) if run.history.is_file() else []
        return cls(path=run.root, config=config, metrics=metrics, history=history)
