"""Per-epoch progress: a tqdm bar with steps/s, ETA and the running loss (see ``progress_bar``)."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from .. import progress_bar


class EpochProgress:
    """One epoch's bar, drawn on a terminal or in a notebook unless progress is switched off."""

    def __init__(self, epoch: int, epochs: int, total: int, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = progress_bar.wanted(self.stream)
        self.total = total
        self._done = 0
        self._bar: Any = None
        if self.enabled:
            self._bar = progress_bar.new_bar(
                total=total, desc=f"epoch {epoch}/{epochs}", stream=self.stream, unit="step"
            )

    def update(self, step: int, running_loss: float) -> None:
        """``step`` steps of the epoch are done; ``running_loss`` is the epoch's mean so far."""
        if self._bar is None:
            return
        self._bar.set_postfix_str(f"loss {running_loss:.4f}", refresh=False)
        self._bar.update(step - self._done)
        self._done = step

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    @property
    def wants_updates(self) -> bool:
        return self.enabled
