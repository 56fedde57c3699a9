"""Trainer callbacks: the one way for other code to follow (and stop) training.

A :class:`Callback` is told when training starts, after every optimizer step, when an
epoch starts and ends (with its history row), and when training ends (with the final
metrics). The trainer's own outputs that are not the resumable state go through this
interface too: ``history.csv`` (:class:`HistoryWriter`) and the progress bar
(:class:`ProgressBar`). Trackers (TensorBoard) and tuning (pruning) are callbacks as well.

A callback stops training after the current epoch with :meth:`Trainer.request_stop`
(``trainer.request_stop("why")``): the run then finishes normally, as with early
stopping. To abandon a run instead (a pruned trial), a callback raises its own
exception from :meth:`Callback.on_epoch_end`; by then the epoch's checkpoint and
history are written, so the run can still be resumed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    import torch

    from .loop import Trainer


class Callback:
    """Base class: every hook does nothing; override the ones you need."""

    def on_train_start(self, trainer: Trainer) -> None:
        """Before the first step of this process (also when a run is resumed)."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Before the first step of ``epoch`` (1-based) in this process."""

    def on_step(self, trainer: Trainer, epoch: int, step: int, loss: torch.Tensor) -> None:
        """After optimizer step ``step`` (1-based within the epoch); ``loss`` is the batch's
        mean loss as a 0-d tensor on the training device (call ``.item()`` sparingly: on
        an accelerator it waits for the device)."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: Mapping[str, float]) -> None:
        """After ``epoch`` is validated and its last checkpoint saved; ``row`` is its
        history row (the columns of ``history.csv``)."""

    def on_train_end(self, trainer: Trainer, metrics: Mapping[str, Any]) -> None:
        """After the final metrics are computed and written."""

    def on_exit(self, trainer: Trainer) -> None:
        """Always last, whether training ended, was interrupted or failed (release resources)."""


class CallbackList(Callback):
    """Several callbacks called in order."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        self.callbacks = list(callbacks)

    def on_train_start(self, trainer: Trainer) -> None:
        for cb in self.callbacks:
            cb.on_train_start(trainer)

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        for cb in self.callbacks:
            cb.on_epoch_start(trainer, epoch)

    def on_step(self, trainer: Trainer, epoch: int, step: int, loss: torch.Tensor) -> None:
        for cb in self.callbacks:
            cb.on_step(trainer, epoch, step, loss)

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: Mapping[str, float]) -> None:
        for cb in self.callbacks:
            cb.on_epoch_end(trainer, epoch, row)

    def on_train_end(self, trainer: Trainer, metrics: Mapping[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_train_end(trainer, metrics)

    def on_exit(self, trainer: Trainer) -> None:
        for cb in self.callbacks:
            cb.on_exit(trainer)


class HistoryWriter(Callback):
    """Writes ``history.csv`` after every epoch (the whole history, atomically)."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: Mapping[str, float]) -> None:
        from ..run_folder import write_history

        write_history(trainer.run, trainer.progress.history)


class ProgressBar(Callback):
    """The per-epoch progress bar of :mod:`.progress` (drawn only on a terminal)."""

    UPDATE_EVERY = 20  # steps between two redraws (each one reads the running loss)

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.bar: Any = None
        self.loss_sum: torch.Tensor | None = None
        self.steps = 0

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        from .progress import EpochProgress

        self.close()
        self.bar = EpochProgress(epoch, trainer.cfg.epochs, trainer.steps_per_epoch, self.stream)
        self.loss_sum, self.steps = None, 0

    def on_step(self, trainer: Trainer, epoch: int, step: int, loss: torch.Tensor) -> None:
        if self.bar is None or not self.bar.wants_updates:
            return
        detached = loss.detach()
        self.loss_sum = detached if self.loss_sum is None else self.loss_sum + detached
        self.steps += 1
        if step % self.UPDATE_EVERY == 1 or step == trainer.steps_per_epoch:
            self.bar.update(step, float(self.loss_sum.item()) / self.steps)

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: Mapping[str, float]) -> None:
        self.close()

    def on_exit(self, trainer: Trainer) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class StopAfter(Callback):
    """Stops training after ``epochs`` epochs of this process (a budget; mostly for tests)."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: Mapping[str, float]) -> None:
        if epoch >= self.epochs:
            trainer.request_stop(f"stopped after epoch {epoch} by a callback")
