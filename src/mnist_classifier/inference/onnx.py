"""Export a checkpoint to ONNX or TorchScript, checked against PyTorch before it is kept.

Both exports hold the *deployed* model (:class:`.deployed.DeployedModel`): the input
is float32 pixels (N, 1, 28, 28) with values 0..255, white ink on black (what
:func:`~mnist_classifier.inference.preprocess.to_mnist` returns), the batch size is
free, and the output is the probabilities (N, 10). The checkpoint's normalisation
(the calibration temperature that divides the logits before the softmax, and
test-time augmentation, if it used any) happens inside the graph, so a
consumer needs no other file; the ONNX file also carries the normalisation, the
class names, the model and its metrics in its metadata (``metadata_props``), and
the TorchScript file in an extra file ``mnist_classifier.json``.

An export is written to a temporary file, compared with PyTorch on real MNIST test
images (probabilities must agree within ``PARITY_TOLERANCE``), and only then
renamed into place: a failed check raises :class:`ExportError` and leaves no file.

Importing this module does not import torch (the ONNX Runtime predictor reads
metadata with :func:`read_metadata`); the export functions do.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..data.format import CLASS_NAMES
from ..errors import CheckpointError, ExportError, MissingExtraError
from . import EXPORT_FORMATS

__all__ = [
    "FORMATS",
    "PARITY_TOLERANCE",
    "check_parity",
    "export",
    "export_onnx",
    "export_torchscript",
    "onnx_in_memory",
    "read_metadata",
]

FORMATS = EXPORT_FORMATS
PARITY_TOLERANCE = 1e-5  # largest allowed |p_export - p_torch| over the check batch
PARITY_IMAGES = 64  # MNIST test images in the parity check
METADATA_FILE = "mnist_classifier.json"  # TorchScript extra file holding the metadata
METADATA_FORMAT = "mnist-classifier-export"
INPUT_DESCRIPTION = (
    "pixels: float32 (N, 1, 28, 28), values 0..255, white ink on a black field, "
    "digit centred like MNIST; normalisation is applied inside the model"
)
OUTPUT_DESCRIPTION = "probabilities: float32 (N, 10), softmax over class_names"

Log = Callable[[str], None] | None


def export(
    checkpoint_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    format: str = "onnx",
    *,
    log: Log = None,
) -> Path:
    """Export to ``format`` (onnx or torchscript); see :func:`export_onnx`."""
    if format == "onnx":
        return export_onnx(checkpoint_path, out_path, log=log)
    if format == "torchscript":
        return export_torchscript(checkpoint_path, out_path, log=log)
    from ..errors import ConfigError

    raise ConfigError(f"unknown export format {format!r}; choose one of: {', '.join(FORMATS)}")


def export_onnx(
    checkpoint_path: str | os.PathLike[str], out_path: str | os.PathLike[str], *, log: Log = None
) -> Path:
    """Write the checkpoint (or a run folder's best checkpoint) as an ONNX file.

    Uses the torch.export-based exporter with a dynamic batch dimension, stores the
    metadata in ``metadata_props``, then runs the file with ONNX Runtime and compares
    with PyTorch; raises :class:`ExportError` (and writes nothing) if they differ by
    more than ``PARITY_TOLERANCE``. ``log`` receives a one-line parity report.
    """
    import torch

    try:
        import onnx  # noqa: F401  (the exporter needs it)
        import onnxruntime as ort
    except ImportError:
        raise MissingExtraError("export", "onnx and onnxruntime", "ONNX export") from None
    from ..fileio import atomic_path
    from ..models.deployed import INPUT_NAME, OUTPUT_NAME

    ckpt, model, source = _load(checkpoint_path)
    out = _out_path(out_path, ".onnx")
    example = torch.zeros(2, 1, 28, 28)
    batch = torch.export.Dim("batch", min=1)
    try:
        with _quiet_exporter():
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes={"pixels": {0: batch}},
                external_data=False,
                optimize=True,
                verbose=False,
            )
    except Exception as exc:
        raise ExportError(f"{source}: ONNX export failed ({_first_line(exc)})") from None
    if program is None:
        raise ExportError(f"{source}: ONNX export produced no model")
    proto = program.model_proto
    proto.producer_name = "mnist-classifier"
    proto.doc_string = f"{ckpt['model']['name']} digit classifier. Input {INPUT_DESCRIPTION}."
    del proto.metadata_props[:]
    for key, value in _metadata(ckpt, model).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value

    pixels = _check_pixels()
    with atomic_path(out) as tmp:
        tmp.write_bytes(proto.SerializeToString())
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(
                os.fspath(tmp), sess_options=options, providers=["CPUExecutionProvider"]
            )

            def run(x: np.ndarray) -> np.ndarray:
                return np.asarray(session.run(None, {INPUT_NAME: x})[0])

        except Exception as exc:
            raise ExportError(
                f"{source}: ONNX Runtime cannot load the export ({_first_line(exc)})"
            ) from None
        diff = _parity(model, run, pixels, source, "ONNX Runtime")
    if log is not None:
        log(_parity_line(out, "ONNX Runtime", diff, len(pixels)))
    return out


def export_torchscript(
    checkpoint_path: str | os.PathLike[str], out_path: str | os.PathLike[str], *, log: Log = None
) -> Path:
    """Write the checkpoint (or a run folder's best checkpoint) as a TorchScript file.

    Traced with a dynamic batch size; loads with ``torch.jit.load`` and needs no code
    from this package. The metadata is in the extra file ``mnist_classifier.json``.
    Checked against eager PyTorch like :func:`export_onnx`.
    """
    import torch

    from ..fileio import atomic_path

    ckpt, model, source = _load(checkpoint_path)
    out = _out_path(out_path, ".pt")
    metadata = json.dumps(_metadata(ckpt, model))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export
            traced = torch.jit.trace(model, torch.zeros(2, 1, 28, 28))
    except Exception as exc:
        raise ExportError(f"{source}: TorchScript export failed ({_first_line(exc)})") from None
    pixels = _check_pixels()
    # Serialised in memory and written by Python: torch.jit.save's own file writer aborts
    # the process when the disk is full; this way it is one DiskFullError naming the file.
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(traced, buffer, _extra_files={METADATA_FILE: metadata})
    with atomic_path(out) as tmp:
        tmp.write_bytes(buffer.getbuffer())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = torch.jit.load(os.fspath(tmp), map_location="cpu")

        def run(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return np.asarray(loaded(torch.from_numpy(x)).numpy())

        diff = _parity(model, run, pixels, source, "TorchScript")
    if log is not None:
        log(_parity_line(out, "TorchScript", diff, len(pixels)))
    return out


def read_metadata(props: Mapping[str, str], name: str) -> dict[str, Any]:
    """Parse the metadata of an export (ONNX ``metadata_props`` or the TorchScript extra file).

    Raises :class:`CheckpointError` naming ``name`` when the model was not written by
    this package or its metadata is damaged. Needs no torch.
    """
    if props.get("format") != METADATA_FORMAT:
        raise CheckpointError(f"{name}: not an mnist-classifier export (no metadata)")
    try:
        normalization = json.loads(props["normalization"])
        metrics = json.loads(props.get("metrics", "null"))
        parameters = props.get("parameters")
        return {
            "model_name": props["model_name"],
            "mean": float(normalization["mean"]),
            "std": float(normalization["std"]),
            "class_names": [str(c) for c in json.loads(props["class_names"])],
            "metrics": metrics if isinstance(metrics, dict) else None,
            "parameters": int(parameters) if parameters else None,
            "package_version": props.get("package_version") or None,
            "tta": props.get("tta") == "true",
            "recipe": props.get("recipe") or None,
            # inside the graph already; recorded for the reader (1: never calibrated)
            "temperature": float(props.get("temperature") or 1.0),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{name}: damaged export metadata ({_first_line(exc)})") from None


def onnx_in_memory(ckpt: dict[str, Any], model: Any, source: str) -> tuple[bytes, dict[str, str]]:
    """``model`` (a DeployedModel on the CPU) as ONNX bytes, with the metadata of ``ckpt``.

    For ``--backend auto`` at start-up: TorchScript-based exporter, which takes a fraction of a
    second where the torch.export-based one of :func:`export_onnx` takes seconds. Nothing is
    written and nothing is checked here; the caller compares the result with PyTorch
    (:func:`check_parity`). Raises :class:`ExportError` when the exporter fails or is missing.
    """
    import torch

    from ..models.deployed import INPUT_NAME, OUTPUT_NAME

    buffer = io.BytesIO()
    try:
        with _quiet_exporter():
            torch.onnx.export(
                model,
                (torch.zeros(2, 1, 28, 28),),
                buffer,  # type: ignore[arg-type]  # a file object works too
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )
    except Exception as exc:  # an exporter that is gone or refuses the model: torch it is
        raise ExportError(f"{source}: in-memory ONNX export failed ({_first_line(exc)})") from None
    return buffer.getvalue(), _metadata(ckpt, model)


def check_parity(model: Any, run: Callable[[np.ndarray], np.ndarray], source: str) -> float:
    """Largest |p_onnx - p_torch| of ``run`` against ``model`` on the parity batch; raises
    :class:`ExportError` above ``PARITY_TOLERANCE``."""
    return _parity(model, run, _check_pixels(), source, "ONNX Runtime")


# ---------------------------------------------------------------------------- helpers


def _load(checkpoint_path: str | os.PathLike[str]) -> tuple[dict[str, Any], Any, str]:
    from ..models.checkpoint import load_checkpoint, resolve_checkpoint_path
    from ..models.deployed import deployed_from_checkpoint

    path = resolve_checkpoint_path(checkpoint_path)
    ckpt = load_checkpoint(path)
    return ckpt, deployed_from_checkpoint(ckpt, "cpu"), str(path)


def _out_path(out_path: str | os.PathLike[str], suffix: str) -> Path:
    out = Path(out_path)
    if out.is_dir():
        raise ExportError(f"{out}: is a folder; give the file to write (for example model{suffix})")
    return out


def _metadata(ckpt: dict[str, Any], model: Any) -> dict[str, str]:
    """The string key/value pairs stored with an export."""
    from ..models.registry import count_parameters

    norm = ckpt["normalization"]
    return {
        "format": METADATA_FORMAT,
        "format_version": "1",
        "model_name": str(ckpt["model"]["name"]),
        "model_kwargs": json.dumps(ckpt["model"].get("kwargs", {})),
        "normalization": json.dumps({"mean": float(norm["mean"]), "std": float(norm["std"])}),
        "class_names": json.dumps(ckpt.get("class_names") or list(CLASS_NAMES)),
        "input": INPUT_DESCRIPTION,
        "output": OUTPUT_DESCRIPTION,
        "tta": "true" if model.tta else "false",
        "temperature": repr(float(model.temperature)),
        "parameters": str(count_parameters(model.net)),
        "metrics": json.dumps(ckpt.get("metrics")),
        "package_version": str(ckpt.get("package_version") or ""),
        "recipe": str((ckpt.get("config") or {}).get("recipe") or ""),
    }


def _check_pixels() -> np.ndarray:
    """The parity batch: the first MNIST test images, plus an empty and a saturated field."""
    from ..data.sources import load_dataset

    images = load_dataset().test_images[:PARITY_IMAGES].numpy()
    extremes = np.stack([np.zeros((28, 28), np.uint8), np.full((28, 28), 255, np.uint8)])
    return np.concatenate([images, extremes]).astype(np.float32)[:, None]  # (N, 1, 28, 28)


def _parity(
    model: Any,
    run: Callable[[np.ndarray], np.ndarray],
    pixels: np.ndarray,
    source: str,
    runtime: str,
) -> float:
    """Largest |p_export - p_torch| on ``pixels`` (and on a batch of one); raise if too big."""
    import torch

    with torch.inference_mode():
        expected = model(torch.from_numpy(pixels)).numpy()
    try:
        got = run(pixels)
        single = run(pixels[:1])  # a different batch size: the batch dimension is dynamic
    except Exception as exc:
        raise ExportError(
            f"{source}: {runtime} failed on the export ({_first_line(exc)})"
        ) from None
    if got.shape != expected.shape or single.shape != (1, expected.shape[1]):
        raise ExportError(
            f"{source}: {runtime} output has shape {got.shape}, PyTorch {expected.shape}"
        )
    diff = float(max(np.abs(got - expected).max(), np.abs(single - expected[:1]).max()))
    if not diff <= PARITY_TOLERANCE:
        raise ExportError(
            f"{source}: {runtime} and PyTorch disagree (max probability difference {diff:.2e} "
            f"> {PARITY_TOLERANCE:g}); no file written"
        )
    return diff


def _parity_line(out: Path, runtime: str, diff: float, n: int) -> str:
    return (
        f"wrote {out}: {runtime} matches PyTorch on {n} images "
        f"(max probability difference {diff:.1e}, tolerance {PARITY_TOLERANCE:g})"
    )


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's warnings and log lines for one export."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]
