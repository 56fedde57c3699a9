"""``train --tensorboard``: a trainer callback writing TensorBoard event files.

Logged: the training loss and learning rate every :data:`STEP_EVERY` steps (``step/``),
each epoch's history row (``epoch/``), the hyper-parameters with the final metrics
(TensorBoard's HParams tab), and the confusion matrix (test, or validation for runs
kept off the test set) as an image. The writer comes from ``torch.utils.tensorboard``,
which needs the ``tensorboard`` package (the ``tensorboard`` extra).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MissingExtraError
from .callbacks import Callback

if TYPE_CHECKING:
    import torch

    from .loop import Trainer

STEP_EVERY = 10  # steps between two per-step points (each one reads the loss from the device)


def check_tensorboard() -> None:
    """Raise the one-line :class:`MissingExtraError` when tensorboard is not installed."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise MissingExtraError("tensorboard", "tensorboard", "--tensorboard") from None


def hparams_of(config: Mapping[str, Any]) -> dict[str, float | int | str | bool]:
    """The config as TensorBoard hyper-parameters: scalars, model arguments as ``model.KEY``,
    lists written out as text (``[256, 128]``)."""
    values: dict[str, float | int | str | bool] = {}
    for key, value in config.items():
        if key == "model_kwargs" and isinstance(value, Mapping):
            for arg, arg_value in value.items():
                values[f"model.{arg}"] = _scalar(arg_value)
        elif value is not None:
            values[key] = _scalar(value)
    return values


def _scalar(value: Any) -> float | int | str | bool:
    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value)


class TensorBoardLogger(Callback):
    """Writes a run's event files into ``log_dir`` (default ``RUN/tensorboard/``)."""

    def __init__(self, log_dir: str | Path | None = None) -> None:
        check_tensorboard()
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.writer: Any = None

    def on_train_start(self, trainer: Trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter

        target = self.log_dir if self.log_dir is not None else trainer.run.tensorboard
        self.writer = SummaryWriter(log_dir=str(target))

    def _global_step(self, trainer: Trainer, epoch: int, step: int) -> int:
        return (epoch - 1) * trainer.steps_per_epoch + step

    def on_step(self, trainer: Trainer, epoch: int, step: int, loss: torch.Tensor) -> None:
        if self.writer is None or (step % STEP_EVERY and step != trainer.steps_per_epoch):
            return
        at = self._global_step(trainer, epoch, step)
        self.writer.add_scalar("step/loss", float(loss.item()), at)
        self.writer.add_scalar("step/lr", float(trainer.optimizer.param_groups[0]["lr"]), at)

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: Mapping[str, float]) -> None:
        if self.writer is None:
            return
        for key, value in row.items():
            if key != "epoch":
                self.writer.add_scalar(f"epoch/{key}", float(value), epoch)
        self.writer.flush()

    def on_train_end(self, trainer: Trainer, metrics: Mapping[str, Any]) -> None:
        if self.writer is None:
            return
        final: dict[str, float] = {}
        for split in ("val", "test"):
            block = metrics.get(split)
            if isinstance(block, Mapping):
                final[f"final/{split}_accuracy"] = float(block["accuracy"])
                final[f"final/{split}_loss"] = float(block["loss"])
        final["final/train_seconds"] = float(metrics.get("train_seconds", 0.0))
        self.writer.add_hparams(hparams_of(trainer.cfg.to_dict()), final, run_name=".")
        split = "test" if isinstance(metrics.get("test"), Mapping) else "val"
        self.writer.add_image(
            f"confusion_matrix/{split}",
            _confusion_image(metrics[split]["confusion_matrix"], split),
            trainer.progress.epochs_done,
            dataformats="HWC",
        )
        self.writer.flush()

    def on_exit(self, trainer: Trainer) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _confusion_image(cm: Any, split: str) -> Any:
    """The confusion matrix drawn by :mod:`mnist_classifier.evaluation.plots`, as HWC uint8."""
    import numpy as np
    from PIL import Image

    from ..evaluation.plots import plot_confusion_matrix

    name = "test" if split == "test" else "validation"
    with tempfile.TemporaryDirectory(prefix="mnist-classifier-tb-") as tmp:
        path = plot_confusion_matrix(cm, Path(tmp) / "cm.png", title=f"Confusion matrix ({name})")
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
