"""Where a run stands: the one object that a resumable checkpoint saves and restores.

:class:`Progress` lists the trainer's counters and records once; the stateful
parts (optimizer, schedule, EMA, generators) are listed once by the trainer as
:class:`Stateful` entries. A checkpoint's ``training`` entry is both, flattened
into one dict of plain types and tensors (loadable with ``weights_only=True``).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch


def _empty_partial() -> dict[str, float]:
    return {"loss_sum": 0.0, "correct": 0, "seen": 0}


def _no_best() -> dict[str, float]:
    return {"val_acc": -1.0, "val_loss": math.inf, "epoch": 0}


@dataclass
class Progress:
    """The trainer's position and bookkeeping, all restored on resume."""

    epochs_done: int = 0
    step_in_epoch: int = 0  # steps of epoch ``epochs_done + 1`` already taken
    epoch_generator_state: torch.Tensor | None = None  # the generator at the epoch's start
    partial: dict[str, float] = field(default_factory=_empty_partial)  # this epoch's totals
    history: list[dict[str, float]] = field(default_factory=list)  # one row per epoch
    best: dict[str, float] = field(default_factory=_no_best)  # best validation so far
    best_val_loss_for_patience: float = math.inf
    bad_epochs: int = 0  # epochs without a better validation loss (early stopping)
    train_seconds: float = 0.0  # cumulative, interruptions excluded

    def start_epoch(self, generator_state: torch.Tensor) -> None:
        """Reset the per-epoch position after an epoch ends."""
        self.step_in_epoch = 0
        self.epoch_generator_state = generator_state
        self.partial = _empty_partial()

    @property
    def at_start(self) -> bool:
        return self.epochs_done == 0 and self.step_in_epoch == 0

    def to_dict(self) -> dict[str, Any]:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> Progress:
        values = {f.name: copy.deepcopy(state[f.name]) for f in dataclasses.fields(cls)}
        values["epochs_done"] = int(values["epochs_done"])
        values["step_in_epoch"] = int(values["step_in_epoch"])
        values["bad_epochs"] = int(values["bad_epochs"])
        values["best_val_loss_for_patience"] = float(values["best_val_loss_for_patience"])
        values["train_seconds"] = float(values["train_seconds"])
        return cls(**values)


class Stateful(NamedTuple):
    """One stateful part of training: how to read its state and how to put it back."""

    get: Callable[[], Any]
    put: Callable[[Any], None]


def save_state(progress: Progress, parts: Mapping[str, Stateful]) -> dict[str, Any]:
    """The checkpoint's ``training`` entry: the progress and every part's state."""
    state = progress.to_dict()
    state.update({name: part.get() for name, part in parts.items()})
    return state


def restore_state(state: Mapping[str, Any], parts: Mapping[str, Stateful]) -> Progress:
    """Put every part's state back and return the progress (missing keys: KeyError)."""
    progress = Progress.from_dict(state)
    for name, part in parts.items():
        part.put(state[name])
    return progress
