"""Predict digits in user images with a trained model: ``load_predictor(path).predict(images)``.

A :class:`Predictor` turns whatever the caller has (file paths, bytes, file objects,
PIL images, numpy arrays, torch tensors) into the MNIST-style 28x28 image a model
expects (see :mod:`.prepare`), runs the model in batches and returns one
:class:`Prediction` per input. An input that cannot be read, or holds no digit,
yields a Prediction with ``error`` set; the other inputs are still predicted.

Two backends share that behaviour and differ only in how a batch of 28x28 images
becomes probabilities: PyTorch (a checkpoint or run folder) and ONNX Runtime (a
``.onnx`` file written by :func:`mnist_classifier.inference.onnx.export_onnx`). The
default, ``auto``, takes ONNX Runtime when it is installed (many times faster than eager
PyTorch at batch 1): a checkpoint is exported in memory and checked against PyTorch first,
falling back to PyTorch with a notice when they disagree. With no model given, the model
shipped in the package is used (:mod:`mnist_classifier.bundled`).
The normalisation always comes from the model file: the checkpoint's
``normalization`` entry, or the ONNX graph (which applies it) and its metadata.

This module imports neither torch nor onnxruntime at import time; torch is
imported only by the PyTorch backend, so predicting with an ``.onnx`` file never
loads torch.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ..data.format import CLASS_NAMES
from ..errors import (
    CheckpointError,
    ConfigError,
    ImageError,
    MissingExtraError,
    MnistClassifierError,
)
from . import BACKENDS
from .image_io import MNIST_SIDE
from .prepare import Prepared, is_tensor, prepare_image

if TYPE_CHECKING:
    from .number import NumberReading

__all__ = ["BACKENDS", "Prediction", "Predictor", "load_predictor"]


@dataclass
class Prediction:
    """The model's reading of one input."""

    name: str  # file path or given name ("<array 3>")
    digit: int | None  # None when unsure (top probability below min_confidence) or on error
    confidence: float  # top probability (0.0 on error)
    probabilities: list[float]  # 10 floats, one per digit (empty on error)
    image: np.ndarray | None  # (28, 28) uint8, the image the model saw (None on error)
    error: str | None = None  # one-line message when this input failed
    # (left, top, right, bottom) of the digit in the loaded image's pixels, when the input
    # was preprocessed (see inference.prepare); None when it was used as it is or failed.
    box: tuple[int, int, int, int] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def top_k(self, k: int) -> list[tuple[int, float]]:
        """The ``k`` most probable digits as (digit, probability), most probable first."""
        order = sorted(range(len(self.probabilities)), key=lambda d: (-self.probabilities[d], d))
        return [(d, self.probabilities[d]) for d in order[: max(k, 0)]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (without the image)."""
        return {
            "name": self.name,
            "digit": self.digit,
            "confidence": self.confidence,
            "probabilities": list(self.probabilities),
            "error": self.error,
        }

    @classmethod
    def failed(cls, name: str, error: str) -> Prediction:
        return cls(name=name, digit=None, confidence=0.0, probabilities=[], image=None, error=error)


class Predictor:
    """A loaded model that predicts digits; build one with :func:`load_predictor`.

    Subclasses implement :meth:`_probabilities` for their runtime; everything else
    (input handling, preprocessing, batching, errors) is shared.
    """

    backend: str = ""

    def __init__(
        self,
        *,
        model_name: str,
        checkpoint_path: str,
        mean: float,
        std: float,
        class_names: Sequence[str] | None = None,
        metrics: dict[str, Any] | None = None,
        parameters: int | None = None,
        package_version: str | None = None,
        tta: bool = False,
        temperature: float = 1.0,
    ) -> None:
        self.model_name = model_name
        self.checkpoint_path = checkpoint_path
        self.mean = float(mean)
        self.std = float(std)
        self.class_names = list(class_names) if class_names else list(CLASS_NAMES)
        self.metrics = metrics
        self.parameters = parameters
        self.package_version = package_version
        self.tta = tta
        self.recipe: str | None = None  # the training recipe, when the model file says
        # Which model answers, in words: "bundled: RECIPE (MODEL)" or "MODEL (PATH)".
        self.label = f"{model_name} ({checkpoint_path})"
        self.temperature = float(temperature)  # applied inside the model (1: not calibrated)

    # ------------------------------------------------------------------ the model

    def _probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """float32 pixels (N, 1, 28, 28) in [0, 255] -> probabilities (N, 10)."""
        raise NotImplementedError

    def predict_mnist(self, images_28: np.ndarray, *, batch_size: int = 1024) -> np.ndarray:
        """Probabilities (N, 10) float32 for MNIST-style uint8 images (N, 28, 28), as they are.

        No preprocessing: the images must already be white ink on black, like MNIST.
        The model's normalisation is applied. A single (28, 28) image gives (1, 10).
        """
        a = np.asarray(images_28)
        if a.ndim == 2:
            a = a[None]
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[1:] != (MNIST_SIDE, MNIST_SIDE):
            raise ImageError(
                f"predict_mnist expects uint8 images of shape (N, 28, 28); got {a.dtype} {a.shape}",
                reason="bad_input",
            )
        _check_batch_size(batch_size)
        out = np.empty((a.shape[0], 10), dtype=np.float32)
        for start in range(0, a.shape[0], batch_size):
            chunk = a[start : start + batch_size].astype(np.float32)[:, None]  # (B, 1, 28, 28)
            out[start : start + batch_size] = self._probabilities(chunk)
        return out

    # ------------------------------------------------------------------ user inputs

    def predict(
        self, images: Any, *, min_confidence: float = 0.0, batch_size: int = 256
    ) -> list[Prediction]:
        """One :class:`Prediction` per input image, in order.

        ``images`` is one input or a list of them: paths (str or Path), bytes, binary
        file objects, PIL images, numpy arrays or torch tensors; an array or tensor
        (N, 28, 28) or (N, 1, 28, 28) is N images. A 28x28 image that is already
        MNIST-style (light ink on a dark field: a uint8 array, a uint8 tensor or a float
        tensor in [0, 1], or a 28x28 image file) is used as it is; anything else is
        preprocessed, which raises "no digit found" for a blank image. The rule is
        :func:`~mnist_classifier.inference.prepare.prepare_image`, which the server uses too.

        ``digit`` is None (unsure) when the top probability is below ``min_confidence``.
        Inputs are preprocessed and predicted ``batch_size`` at a time, so memory stays
        bounded for long lists of files.
        """
        if not 0.0 <= min_confidence <= 1.0:
            raise ConfigError(f"min_confidence must be between 0 and 1, got {min_confidence}")
        _check_batch_size(batch_size)
        items = _expand(images)
        results: list[Prediction] = []
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            prepared: list[tuple[int, Prepared]] = []
            chunk_results: list[Prediction | None] = [None] * len(chunk)
            for i, (name, source) in enumerate(chunk):
                try:  # an input that fails (for any reason) fails alone
                    prepared.append((i, prepare_image(source, name=name)))
                except MnistClassifierError as exc:
                    chunk_results[i] = Prediction.failed(name, str(exc))
            if prepared:
                probs = self.predict_mnist(np.stack([p.pixels for _, p in prepared]))
                for (i, p), row in zip(prepared, probs, strict=True):
                    chunk_results[i] = _make_prediction(p, row, min_confidence)
            results.extend(p for p in chunk_results if p is not None)
        return results

    def read_number(
        self, image: Any, *, min_confidence: float = 0.0, name: str | None = None
    ) -> NumberReading:
        """The row of digits in one image (a zip code, a year), read left to right.

        The digits are found and cut apart by :mod:`.segment`, each is preprocessed as a
        digit read alone, and all are read in one batch. ``reading.text`` is the number
        ("90210", with ``?`` for a digit below ``min_confidence``); ``reading.digits``
        holds one :class:`Prediction` per digit, with its box in the image. An image that
        fails gives a reading with ``error`` set (no exception), as :meth:`predict` does.
        """
        from .number import NumberReading, prepare_number

        if not 0.0 <= min_confidence <= 1.0:
            raise ConfigError(f"min_confidence must be between 0 and 1, got {min_confidence}")
        label = name or _name(image, 0)
        try:
            digits = prepare_number(image, name=label)
        except MnistClassifierError as exc:
            return NumberReading.failed(label, str(exc))
        probs = self.predict_mnist(np.stack([p.pixels for p in digits]))
        return NumberReading(
            name=label,
            digits=[
                _make_prediction(p, row, min_confidence)
                for p, row in zip(digits, probs, strict=True)
            ],
        )

    def info(self) -> dict[str, Any]:
        """What this predictor is: model, size, accuracy, normalisation, versions, backend."""
        return {
            "model": self.model_name,
            "source": self.label,
            "backend": self.backend,
            "checkpoint": self.checkpoint_path,
            "parameters": self.parameters,
            "metrics": summarize_metrics(self.metrics),
            "normalization": {"mean": self.mean, "std": self.std},
            "class_names": list(self.class_names),
            "tta": self.tta,
            "temperature": self.temperature,
            "package_version": self.package_version,
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={self.model_name!r}, backend={self.backend!r}, "
            f"checkpoint={self.checkpoint_path!r})"
        )


def summarize_metrics(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    """The headline numbers of a run's final metrics: accuracies, test loss, training time."""
    if not metrics:
        return None
    summary: dict[str, Any] = {}
    for split in ("test", "val"):
        block = metrics.get(split)
        if isinstance(block, dict) and "accuracy" in block:
            summary[f"{split}_accuracy"] = block["accuracy"]
            if "loss" in block:
                summary[f"{split}_loss"] = block["loss"]
    for key in ("epochs_run", "best_epoch", "train_seconds"):
        if key in metrics:
            summary[key] = metrics[key]
    return summary


# ---------------------------------------------------------------------------- backends


class TorchPredictor(Predictor):
    """Runs a checkpoint with PyTorch (imported on construction, not at module import)."""

    backend = "torch"

    def __init__(self, ckpt: dict[str, Any], device: str = "auto") -> None:
        import torch

        from ..models.deployed import deployed_from_checkpoint
        from ..models.registry import count_parameters
        from ..runtime import resolve_device

        self._torch = torch
        self._device = resolve_device(device)
        self.model = deployed_from_checkpoint(ckpt, self._device)
        norm = ckpt["normalization"]
        super().__init__(
            model_name=str(ckpt["model"]["name"]),
            checkpoint_path=str(ckpt.get("path", "")),
            mean=norm["mean"],
            std=norm["std"],
            class_names=ckpt.get("class_names"),
            metrics=ckpt.get("metrics"),
            parameters=count_parameters(self.model.net),
            package_version=ckpt.get("package_version"),
            tta=self.model.tta,
            temperature=float(self.model.temperature),
        )
        self.recipe = (ckpt.get("config") or {}).get("recipe")

    def _probabilities(self, pixels: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(pixels).to(self._device)
            return self.model(x).float().cpu().numpy()


class OnnxPredictor(Predictor):
    """Runs an ONNX export with ONNX Runtime; torch is never imported."""

    backend = "onnx"

    def __init__(
        self,
        model: str | os.PathLike[str] | bytes,
        *,
        name: str,
        device: str = "auto",
        metadata: dict[str, str] | None = None,
    ):
        """``metadata``: the export's key/value pairs when ``model`` (bytes) carries none."""
        from .onnx import read_metadata

        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingExtraError("onnx", "onnxruntime", "the onnx backend") from None
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: no warnings on stderr
        source = os.fspath(model) if not isinstance(model, bytes) else model
        try:
            self._session = ort.InferenceSession(
                source, sess_options=options, providers=_onnx_providers(ort, device)
            )
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CheckpointError(f"{name}: not a readable ONNX model ({first[:160]})") from None
        props = (
            metadata if metadata is not None else self._session.get_modelmeta().custom_metadata_map
        )
        meta = read_metadata(props, name)
        self._input = self._session.get_inputs()[0].name
        super().__init__(
            model_name=meta["model_name"],
            checkpoint_path=name,
            mean=meta["mean"],
            std=meta["std"],
            class_names=meta["class_names"],
            metrics=meta["metrics"],
            parameters=meta["parameters"],
            package_version=meta["package_version"],
            tta=meta["tta"],
            temperature=meta["temperature"],
        )
        self.recipe = meta["recipe"]

    def _probabilities(self, pixels: np.ndarray) -> np.ndarray:
        out = self._session.run(None, {self._input: np.ascontiguousarray(pixels)})[0]
        return np.asarray(out, dtype=np.float32)


def _onnx_providers(ort: Any, device: str) -> list[str]:
    available = ort.get_available_providers()
    if device in ("auto", "cpu"):
        wanted = ["CUDAExecutionProvider"] if device == "auto" else []
        return [p for p in wanted if p in available] + ["CPUExecutionProvider"]
    if device == "cuda" or device.startswith("cuda:"):
        if "CUDAExecutionProvider" not in available:
            raise ConfigError(f"device {device!r} was asked for but onnxruntime has no CUDA here")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise ConfigError(f"device {device!r} is not one of auto, cpu, cuda for the onnx backend")


Notice = Callable[[str], None]


def load_predictor(
    path: str | os.PathLike[str] | None = None,
    *,
    backend: str = "auto",
    device: str = "auto",
    notice: Notice | None = None,
) -> Predictor:
    """A :class:`Predictor` for a run folder, a ``.pt`` checkpoint or a ``.onnx`` file;
    with no ``path``, for the model shipped in the package.

    A run folder means its best checkpoint. ``backend``:

    - ``"auto"`` (default): ONNX Runtime when it is installed and the model runs on the CPU
      (``device`` auto or cpu), else PyTorch. A checkpoint is exported to ONNX in memory and
      compared with PyTorch on MNIST test digits (largest probability difference at most
      ``PARITY_TOLERANCE``); if the export fails or disagrees, PyTorch is used and one line
      saying why goes to ``notice`` (default: a ``UserWarning``). The bundled model and a
      ``.onnx`` file run their ONNX file directly.
    - ``"torch"``: PyTorch (not for a ``.onnx`` file).
    - ``"onnx"``: ONNX Runtime; a checkpoint is exported first with the exporter of
      ``export --format onnx`` (this step uses torch; loading a ``.onnx`` file does not).

    ``device`` is auto (cuda when available, then mps, then cpu), cpu, cuda or mps.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if path is None:
        return _load_bundled(backend, device)
    path = Path(path)
    is_onnx = path.suffix.lower() == ".onnx" and not path.is_dir()
    if backend == "auto":
        backend = "onnx" if is_onnx else "auto"
    if backend == "onnx":
        if is_onnx:
            if not path.is_file():
                raise CheckpointError(f"{path}: ONNX model not found")
            return OnnxPredictor(path, name=str(path), device=device)
        from ..models.checkpoint import resolve_checkpoint_path
        from .onnx import export_onnx

        ckpt_path = resolve_checkpoint_path(path)
        with tempfile.TemporaryDirectory(prefix="mnist-classifier-onnx-") as tmp:
            data = export_onnx(ckpt_path, Path(tmp) / "model.onnx").read_bytes()
        return OnnxPredictor(data, name=str(ckpt_path), device=device)
    if is_onnx:
        raise ConfigError(f"{path}: an ONNX model runs with backend 'onnx' (--backend onnx)")
    from ..models.checkpoint import load_checkpoint, resolve_checkpoint_path

    ckpt = load_checkpoint(resolve_checkpoint_path(path))
    torch_predictor = TorchPredictor(ckpt, device)
    if backend == "auto" and onnxruntime_available() and str(torch_predictor._device) == "cpu":
        return _onnx_if_it_matches(ckpt, torch_predictor, notice)
    return torch_predictor


def onnxruntime_available() -> bool:
    """Whether ONNX Runtime can be imported (what ``--backend auto`` asks first)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _onnx_if_it_matches(
    ckpt: dict[str, Any], torch_predictor: TorchPredictor, notice: Notice | None
) -> Predictor:
    """The checkpoint under ONNX Runtime, exported in memory, if it matches PyTorch; else PyTorch."""
    from .onnx import check_parity, onnx_in_memory

    source = torch_predictor.checkpoint_path
    try:
        data, metadata = onnx_in_memory(ckpt, torch_predictor.model, source)
        onnx_predictor = OnnxPredictor(data, name=source, metadata=metadata, device="cpu")
        check_parity(torch_predictor.model, onnx_predictor._probabilities, source)
    except MnistClassifierError as exc:
        message = f"note: {exc}; using the torch backend"
        if notice is None:
            warnings.warn(message, UserWarning, stacklevel=3)
        else:
            notice(message)
        return torch_predictor
    onnx_predictor.recipe = torch_predictor.recipe
    return onnx_predictor


def _load_bundled(backend: str, device: str) -> Predictor:
    """The shipped model: its ONNX file under ONNX Runtime (auto when installed, or onnx),
    else its checkpoint under PyTorch."""
    from ..bundled import bundled_file, bundled_label

    use_onnx = backend == "onnx" or (
        backend == "auto" and device in ("auto", "cpu") and onnxruntime_available()
    )
    predictor: Predictor
    if use_onnx:
        path = bundled_file("onnx")
        predictor = OnnxPredictor(path, name=str(path), device=device)
    else:
        from ..models.checkpoint import load_checkpoint

        predictor = TorchPredictor(load_checkpoint(bundled_file("pt")), device)
    predictor.label = bundled_label(predictor.recipe, predictor.model_name)
    return predictor


# ---------------------------------------------------------------------------- inputs


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")


def _is_mnist_batch(a: Any) -> bool:
    """(N, 28, 28) or (N, 1, 28, 28): a batch of 28x28 images (N=28 included)."""
    shape = tuple(a.shape)
    field = (MNIST_SIDE, MNIST_SIDE)
    return (len(shape) == 3 and shape[1:] == field) or (
        len(shape) == 4 and shape[1:] == (1, *field)
    )


def _expand(images: Any) -> list[tuple[str, Any]]:
    """(name, source) per image; a list is many inputs, a batch array many images."""
    sources = list(images) if isinstance(images, list | tuple) else [images]
    items: list[tuple[str, Any]] = []
    for source in sources:
        if isinstance(source, np.ndarray) and _is_mnist_batch(source):
            items.extend(
                (f"<array {len(items)}>", image)
                for image in source.reshape(-1, MNIST_SIDE, MNIST_SIDE)
            )
        elif is_tensor(source) and _is_mnist_batch(source):
            items.extend(
                (f"<tensor {len(items)}>", image)
                for image in source.reshape(-1, MNIST_SIDE, MNIST_SIDE)
            )
        else:
            items.append((_name(source, len(items)), source))
    return items


def _name(source: object, index: int) -> str:
    if isinstance(source, str | os.PathLike):
        return os.fsdecode(source)
    if isinstance(source, Image.Image):
        filename = getattr(source, "filename", "")
        return filename if isinstance(filename, str) and filename else f"<image {index}>"
    if isinstance(source, bytes | bytearray | memoryview):
        return f"<bytes {index}>"
    if is_tensor(source):
        return f"<tensor {index}>"
    if isinstance(source, np.ndarray):
        return f"<array {index}>"
    if hasattr(source, "read"):
        file_name = getattr(source, "name", None)
        return file_name if isinstance(file_name, str) and file_name else f"<file {index}>"
    return f"<input {index}>"


def _make_prediction(prepared: Prepared, probs: np.ndarray, min_confidence: float) -> Prediction:
    probabilities = [float(p) for p in probs]
    top = int(np.argmax(probs))
    confidence = probabilities[top]
    return Prediction(
        name=prepared.name,
        digit=top if confidence >= min_confidence else None,
        confidence=confidence,
        probabilities=probabilities,
        image=prepared.pixels,
        box=prepared.box,
    )
