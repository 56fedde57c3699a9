"""Per-epoch progress: a live bar on a terminal, nothing but summary lines elsewhere."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class EpochProgress:
    """Shows steps done, steps/s and running loss for one epoch, redrawn in place on a tty."""

    def __init__(self, epoch: int, epochs: int, total: int, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.label = f"epoch {epoch}/{epochs}"
        self.total = total
        self.start = time.perf_counter()
        self.last_draw = 0.0

    def update(self, step: int, running_loss: float) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self.last_draw < 0.1 and step < self.total:
            return
        self.last_draw = now
        rate = step / max(now - self.start, 1e-9)
        width = 24
        filled = int(width * step / max(self.total, 1))
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(
            f"\r{self.label} [{bar}] {step}/{self.total} {rate:,.0f} steps/s loss {running_loss:.4f}"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()

    @property
    def wants_updates(self) -> bool:
        return self.enabled
