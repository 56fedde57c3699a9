"""Device and thread selection shared by training, evaluation and inference."""

from __future__ import annotations

import torch

from .errors import ConfigError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto") -> torch.device:
    """Return the device named by ``name``; ``auto`` prefers cuda, then mps, then cpu."""
    if name not in DEVICE_CHOICES and not name.startswith("cuda:"):
        raise ConfigError(f"device {name!r} is not one of {', '.join(DEVICE_CHOICES)}")
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


def set_threads(threads: int | None) -> None:
    """Set the number of CPU threads torch uses (``None`` or 0 keeps torch's default)."""
    if threads:
        if threads < 0:
            raise ConfigError(f"threads must be positive, got {threads}")
        torch.set_num_threads(threads)
