"""Checkpoints: one dict of plain types and tensors, loadable with ``weights_only=True``.

A checkpoint alone is enough to predict: it carries the model name and its
arguments, the weights, the normalisation, the class names, the training config,
the final metrics (when known), the package version and, once calibrated, the
temperature its logits are divided by (``calibration``; a checkpoint without it, as
every checkpoint written before calibration existed, means 1). The last checkpoint also carries
the training state (optimizer, scheduler, RNG states, history, position) used by
``--resume``. Files are written atomically.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from pathlib import Path
from typing import Any, NoReturn, TypeGuard

import torch
from torch import nn

from .. import __version__
from ..data.format import CLASS_NAMES
from ..errors import CheckpointError, ConfigError
from ..fileio import atomic_write_bytes
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
    """Write ``checkpoint`` to ``path`` atomically (temporary file, fsync, rename).

    The checkpoint is serialised in memory first and written by Python: torch's own
    file writer reports a full disk as an assertion from C++, this way it is one
    :class:`~mnist_classifier.errors.DiskFullError` naming ``path``.
    """
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    atomic_write_bytes(path, buffer.getbuffer())
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a checkpoint; every failure is a one-line CheckpointError naming the file."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder; give a run folder or a .pt file")
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():  # a damaged file's warnings would add lines to the error
            warnings.simplefilter("ignore")
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
    check_checkpoint(ckpt, str(path))
    ckpt["path"] = str(path)
    return ckpt


def _shown(value: object) -> str:
    """A short repr of a (possibly hostile) value for an error message."""
    text = repr(value) if isinstance(value, (str, int, float, bool, type(None))) else ""
    return text[:40] if text else type(value).__name__


def _is_real(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_checkpoint(ckpt: dict[str, Any], where: str) -> None:
    """Check every field of a loaded checkpoint dict; raise a one-line CheckpointError.

    Refuses what would crash later or predict nonsense: a version that is not a whole
    number, a model that is not ``{"name": str, "kwargs": dict}``, weights that are not
    a dict of named tensors or hold NaN or infinite values, a normalisation whose
    ``std`` is not a positive finite number, and mistyped optional entries.
    """

    def refuse(message: str) -> NoReturn:
        raise CheckpointError(f"{where}: {message}")

    version = ckpt.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        refuse(f"format_version must be a whole number from 1, found {_shown(version)}")
    if version > FORMAT_VERSION:
        refuse(
            f"checkpoint format {version} is newer than this package understands "
            f"({FORMAT_VERSION}); upgrade mnist-classifier"
        )
    for key in ("model", "state_dict", "normalization"):
        if key not in ckpt:
            refuse(f"checkpoint lacks its {key!r} entry")

    model = ckpt["model"]
    if not isinstance(model, dict):
        refuse(f"'model' must be a dict with a name and kwargs, found {_shown(model)}")
    name = model.get("name")
    if not isinstance(name, str) or not name:
        refuse(f"model name must be a non-empty string, found {_shown(name)}")
    kwargs = model.get("kwargs", {})
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        refuse(f"model kwargs must be a dict with string keys, found {_shown(kwargs)}")

    state = ckpt["state_dict"]
    if not isinstance(state, dict) or not state:
        refuse(f"'state_dict' must be a non-empty dict of tensors, found {_shown(state)}")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            refuse(f"'state_dict' entry {_shown(key)} is not a named tensor")
        if (value.is_floating_point() or value.is_complex()) and not bool(
            torch.isfinite(value).all()
        ):
            refuse(f"weight {key!r} holds NaN or infinite values; the model cannot predict")

    norm = ckpt["normalization"]
    if not isinstance(norm, dict):
        refuse(f"'normalization' must be a dict with mean and std, found {_shown(norm)}")
    mean, std = norm.get("mean"), norm.get("std")
    if not _is_real(mean) or not math.isfinite(mean):
        refuse(f"normalization mean must be a finite number, found {_shown(mean)}")
    if not _is_real(std) or not math.isfinite(std) or std <= 0:
        refuse(f"normalization std must be a positive finite number, found {_shown(std)}")

    names = ckpt.get("class_names")
    if names is not None and (
        not isinstance(names, list)
        or len(names) != len(CLASS_NAMES)
        or not all(isinstance(n, str) for n in names)
    ):
        refuse(f"class_names must be a list of {len(CLASS_NAMES)} strings")
    for key in ("config", "metrics", "training", "calibration"):
        if ckpt.get(key) is not None and not isinstance(ckpt[key], dict):
            refuse(f"{key!r} must be a dict, found {_shown(ckpt[key])}")
    tta = (ckpt.get("config") or {}).get("tta", False)
    if not isinstance(tta, bool):
        refuse(f"config tta must be true or false, found {_shown(tta)}")
    calibration = ckpt.get("calibration")
    if calibration is not None:
        temperature = calibration.get("temperature")
        if not _is_real(temperature) or not math.isfinite(temperature) or temperature <= 0:
            refuse(
                f"calibration temperature must be a positive finite number, "
                f"found {_shown(temperature)}"
            )
    version_text = ckpt.get("package_version")
    if version_text is not None and not isinstance(version_text, str):
        refuse(f"package_version must be a string, found {_shown(version_text)}")


def checkpoint_temperature(ckpt: dict[str, Any]) -> float:
    """The temperature the checkpoint's logits are divided by: 1 when it was never calibrated."""
    calibration = ckpt.get("calibration") or {}
    return float(calibration.get("temperature", 1.0))


def set_calibration(ckpt: dict[str, Any], temperature: float, **details: Any) -> dict[str, Any]:
    """Store ``temperature`` (and plain-typed ``details``: what it was fitted on, the NLL before
    and after) in ``ckpt`` in place; refuse a temperature that is not positive and finite."""
    value = float(temperature)
    if not math.isfinite(value) or value <= 0:
        raise CheckpointError(f"temperature must be a positive finite number, got {temperature!r}")
    ckpt["calibration"] = {"temperature": value, **details}
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any], device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild the declared model, load its weights, and put it in eval mode on ``device``."""
    where = ckpt.get("path", "checkpoint")
    name = ckpt["model"].get("name")
    kwargs = ckpt["model"].get("kwargs", {})
    state = ckpt["state_dict"]
    # Built first without memory (the meta device), so that declared arguments whose
    # weights would not fit (or would take gigabytes) are refused before anything is allocated.
    try:
        with torch.device("meta"):
            shapes = {
                k: tuple(v.shape) for k, v in create_model(name, **kwargs).state_dict().items()
            }
    except ConfigError as exc:
        raise CheckpointError(f"{where}: declares a model that cannot be built ({exc})") from None
    except Exception as exc:  # hostile arguments: whatever the factory raises
        raise CheckpointError(
            f"{where}: declares a model that cannot be built ({type(exc).__name__})"
        ) from None
    missing = sorted(set(shapes) - set(state))
    unexpected = sorted(set(state) - set(shapes))
    wrong = [k for k in shapes if k in state and tuple(state[k].shape) != shapes[k]]
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for what, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("wrong shape", wrong),
            )
            if keys
        )
        raise CheckpointError(
            f"{where}: weights do not fit the declared model {name!r} ({detail[:200]})"
        )
    model = create_model(name, **kwargs)
    try:
        model.load_state_dict(state, strict=True)
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
