"""Device and thread policy, in one place for training, evaluation, inference and serving.

torch is imported only when a device is resolved or threads are set, so the CLI
can take :data:`DEVICE_CHOICES` from here without loading it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")  # "cuda:N" is accepted too
SERVE_THREADS = 1  # per request: single images are too small to share among threads


def quiet_openmp_waiters() -> None:
    """Make idle OpenMP threads sleep instead of spinning, unless the user chose otherwise.

    Must run before torch is imported. Spinning waiters made every training step tens
    of times slower as soon as another process wanted a core (measured: 9.2 s against
    1.1 s for the same two epochs); sleeping ones cost little on an idle machine.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def check_device_name(name: str) -> str:
    """``name`` if it names a device this package knows (it may still be unavailable)."""
    if name not in DEVICE_CHOICES and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise ConfigError(f"device {name!r} is not one of {', '.join(DEVICE_CHOICES)} (or cuda:N)")
    return name


def resolve_device(name: str = "auto") -> torch.device:
    """Return the device named by ``name``; ``auto`` prefers cuda, then mps, then cpu."""
    import torch

    check_device_name(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but CUDA is not available here")
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError("device 'mps' was asked for but MPS is not available here")
    return torch.device(name)


def training_threads(requested: int | None, device: torch.device, convolutional: bool) -> int:
    """The CPU threads a training run uses: ``requested`` when given (> 0), else one thread
    for fully connected models on a CPU (at these sizes a second thread made the seed recipe
    3x slower), else torch's default (one per core)."""
    import torch

    if requested:
        if requested < 0:
            raise ConfigError(f"threads must be positive, got {requested}")
        return requested
    if device.type == "cpu" and not convolutional:
        return 1
    return torch.get_num_threads()


def set_threads(threads: int | None) -> int:
    """Set the number of CPU threads torch uses (``None`` or 0 keeps torch's default);
    return the number now in use."""
    import torch

    if threads:
        if threads < 0:
            raise ConfigError(f"threads must be positive, got {threads}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()
