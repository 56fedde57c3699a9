"""THE bundled model: the checkpoint and ONNX export shipped inside the package.

``mnist-classifier predict photo.jpg``, ``serve`` and ``load_predictor()`` use it when
no model is given, so reading a digit needs no training and no download. The files are
``models/files/bundled.pt`` (a checkpoint without training state, loadable with
``weights_only=True``) and ``models/files/bundled.onnx`` (its export, checked against it);
``scripts/bundle_model.py RUN_DIR`` is the one way they are written. This module spells
their names and imports neither torch nor onnxruntime, so the ONNX-only install uses it too.
"""

from __future__ import annotations

from pathlib import Path

from .errors import CheckpointError

__all__ = ["BUNDLED_DIR", "BUNDLED_ONNX", "BUNDLED_PT", "bundled_file", "bundled_label"]

BUNDLED_DIR = Path(__file__).resolve().parent / "models" / "files"
BUNDLED_PT = BUNDLED_DIR / "bundled.pt"
BUNDLED_ONNX = BUNDLED_DIR / "bundled.onnx"
MAX_BUNDLED_BYTES = 2 * 1024 * 1024  # each shipped file stays under this


def bundled_file(kind: str) -> Path:
    """The shipped ``pt`` checkpoint or ``onnx`` export; a CheckpointError when it is missing."""
    path = {"pt": BUNDLED_PT, "onnx": BUNDLED_ONNX}[kind]
    if not path.is_file():
        raise CheckpointError(
            f"{path}: the bundled model is missing from this installation; "
            "give a model (run folder, .pt or .onnx) with --model"
        )
    return path


def bundled_label(recipe: str | None, model_name: str) -> str:
    """How the bundled model is named in answers: ``bundled: RECIPE (MODEL)``."""
    return f"bundled: {recipe or 'model'} ({model_name})"
