"""Checkpoints: one dict of plain types and tensors, loadable with ``weights_only=True``.

A checkpoint alone is enough to predict: it carries the model name and its
arguments, the weights, the normalisation, the class names, the training config,
the final metrics (when known) and the package version. The last checkpoint also carries
the training state (optimizer, scheduler, RNG states, history, position) used by
``--resume``. Files are written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..data.format import CLASS_NAMES
from ..errors import CheckpointError, ConfigError
from ..fileio import atomic_path
from ..run_folder import RunFolder
from .registry import create_model

FORMAT = "mnist-classifier-checkpoint"
FORMAT_VERSION = 1


def build_checkpoint(
    model: nn.Module,
    *,
    model_name: str,
    model_kwargs: dict[str, Any],
    mean: float,
    std: float,
    config: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    training_state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the checkpoint dict (weights moved to CPU so it loads anywhere)."""
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "model": {"name": model_name, "kwargs": dict(model_kwargs)},
        "state_dict": state,
        "normalization": {"mean": float(mean), "std": float(std)},
        "class_names": list(CLASS_NAMES),
        "config": config,
        "metrics": metrics,
        "training": training_state,
    }


def save_checkpoint(path: str | os.PathLike[str], checkpoint: dict[str, Any]) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a checkpoint; every failure is a one-line CheckpointError naming the file."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder; give a run folder or a .pt file")
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except Exception as exc:  # whatever arbitrary bytes make torch.load raise: not a checkpoint
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if path.stat().st_size == 0:
            reason = "the file is empty"
        elif "zip" in reason.lower() or "central directory" in reason.lower():
            reason = "truncated or not a PyTorch file"
        raise CheckpointError(f"{path}: not a readable checkpoint ({reason[:160]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an mnist-classifier checkpoint")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {ckpt.get('format_version')} is newer than this "
            f"package understands ({FORMAT_VERSION}); upgrade mnist-classifier"
        )
    for key in ("model", "state_dict", "normalization"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint lacks its {key!r} entry")
    ckpt["path"] = str(path)
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any], device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild the declared model, load its weights, and put it in eval mode on ``device``."""
    where = ckpt.get("path", "checkpoint")
    name = ckpt["model"].get("name")
    try:
        model = create_model(name, **ckpt["model"].get("kwargs", {}))
    except ConfigError as exc:
        raise CheckpointError(f"{where}: declares a model that cannot be built ({exc})") from None
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except (RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])[:200]
        raise CheckpointError(
            f"{where}: weights do not fit the declared model {name!r} ({detail})"
        ) from None
    return model.to(device).eval()


def resolve_checkpoint_path(path: str | os.PathLike[str], which: str = "best") -> Path:
    """A run folder means its ``which`` (best or last) checkpoint; a file is taken as it is."""
    path = Path(path)
    if path.is_dir():
        run = RunFolder(path)
        candidate = run.checkpoint(which)
        if not candidate.exists():
            shown = candidate.relative_to(run.root).as_posix()
            raise CheckpointError(f"{path}: run folder has no {shown}")
        return candidate
    return path
