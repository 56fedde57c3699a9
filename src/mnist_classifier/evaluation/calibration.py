"""Confidence that means something: temperature scaling and the expected calibration error.

A network trained with cross-entropy is often far surer of itself than its accuracy
justifies (99.9% on many of its mistakes), so a threshold on the top probability
(``predict --min-confidence``) cannot tell a good read from a bad one. Temperature
scaling fits one scalar ``T > 0`` on the *validation* split, the value that minimises
the negative log-likelihood of ``softmax(logits / T)``; every probability shown is then
computed from ``logits / T`` (:class:`~mnist_classifier.models.deployed.DeployedModel`,
hence ``predict``, the API, the page and the exports). Dividing by a positive number
keeps the order of the logits, so the answers and the accuracy do not change.

The expected calibration error (ECE) sorts predictions into :data:`N_BINS` equal-width
bins of confidence (the top probability) and averages ``|accuracy - confidence|`` over
the bins, weighted by how many predictions fall in each.

The pure functions here need numpy only (:func:`expected_calibration_error`,
:func:`reliability_bins`); the fitting functions import torch when called, and
:func:`calibrate_checkpoint` calibrates an existing run or checkpoint post hoc on the
validation split it was trained with (never the test set).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .metrics import percent, split_metrics

if TYPE_CHECKING:
    import torch

    from ..data.sources import Dataset

__all__ = [
    "N_BINS",
    "CalibrationResult",
    "calibrate_checkpoint",
    "calibrated_split_metrics",
    "expected_calibration_error",
    "fit_temperature",
    "probabilities_at",
    "reliability_bins",
    "temperature_nll",
]

N_BINS = 15  # equal-width confidence bins of the ECE and the reliability diagram
T_RANGE = (0.05, 20.0)  # the temperatures searched


def _confidences(probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """(confidence (N,), correct (N,) bool) after shape checks."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels).reshape(-1)
    if p.ndim != 2 or p.shape[0] != y.shape[0]:
        raise ValueError(f"probs must be (N, C) for N labels, got {p.shape} and {y.shape}")
    if p.shape[0] == 0:
        return np.zeros(0), np.zeros(0, dtype=bool)
    return p.max(axis=1), p.argmax(axis=1) == y


def reliability_bins(probs: Any, labels: Any, n_bins: int = N_BINS) -> dict[str, list[Any]]:
    """Per confidence bin: ``count``, ``accuracy`` and mean ``confidence`` (0 in an empty bin).

    Bin ``b`` holds the predictions whose top probability lies in ``(b/n, (b+1)/n]``
    (the first bin also holds 0). Plain lists, so the result goes into ``metrics.json``.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    conf, correct = _confidences(probs, labels)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.searchsorted(edges[1:-1], conf, side="left")  # interior edges below conf
    count = np.bincount(index, minlength=n_bins)
    acc_sum = np.bincount(index, weights=correct.astype(np.float64), minlength=n_bins)
    conf_sum = np.bincount(index, weights=conf, minlength=n_bins)
    shown = np.maximum(count, 1)
    return {
        "count": [int(c) for c in count],
        "accuracy": [float(a) for a in acc_sum / shown],
        "confidence": [float(c) for c in conf_sum / shown],
    }


def expected_calibration_error(probs: Any, labels: Any, n_bins: int = N_BINS) -> float:
    """ECE of probabilities (N, C) against labels (N,): the count-weighted mean over
    ``n_bins`` equal-width confidence bins of ``|accuracy - mean confidence|``; 0 for N = 0."""
    bins = reliability_bins(probs, labels, n_bins)
    total = sum(bins["count"])
    if total == 0:
        return 0.0
    gaps = (
        n * abs(a - c)
        for n, a, c in zip(bins["count"], bins["accuracy"], bins["confidence"], strict=True)
    )
    return float(sum(gaps) / total)


# ------------------------------------------------------------------- temperature scaling


def probabilities_at(view_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Probabilities (N, C): the mean over views of ``softmax(view_logits / temperature)``.

    ``view_logits`` is (V, N, C) (V = 1 without test-time augmentation) or (N, C); the
    same arithmetic as the deployed model. Log-probabilities work as well as logits
    (softmax ignores a shift per row)."""
    import torch

    logits = view_logits if view_logits.ndim == 3 else view_logits.unsqueeze(0)
    t = torch.tensor(float(temperature), dtype=torch.float32)
    return torch.softmax(logits.float() / t, dim=-1).mean(0)


def temperature_nll(view_logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    """Mean negative log-likelihood of ``labels`` under :func:`probabilities_at`."""
    import torch

    logits = view_logits if view_logits.ndim == 3 else view_logits.unsqueeze(0)
    scaled = torch.log_softmax(logits.double() / float(temperature), dim=-1)  # (V, N, C)
    # log of the mean over views of the probabilities, exact for one view
    log_p = torch.logsumexp(scaled, dim=0) - math.log(scaled.shape[0])
    return float(-log_p.gather(1, labels.reshape(-1, 1).long().cpu()).mean())


def fit_temperature(view_logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature in :data:`T_RANGE` that minimises the NLL of ``labels``: a grid over
    log T, then a golden-section search around the grid's best point. Never worse than
    T = 1 on the data it is fitted on (it returns 1 if nothing beats it)."""
    if labels.numel() == 0:
        return 1.0
    logits = view_logits.detach().cpu()
    labels = labels.detach().cpu()

    def loss(log_t: float) -> float:
        return temperature_nll(logits, labels, math.exp(log_t))

    low, high = math.log(T_RANGE[0]), math.log(T_RANGE[1])
    grid = np.linspace(low, high, 41)
    values = [loss(float(x)) for x in grid]
    best = int(np.argmin(values))
    a, b = float(grid[max(best - 1, 0)]), float(grid[min(best + 1, len(grid) - 1)])
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = loss(c), loss(d)
    for _ in range(40):  # the bracket shrinks to ~1e-9 of its width
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = loss(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = loss(d)
    candidates = [(values[best], float(grid[best])), (fc, c), (fd, d), (loss(0.0), 0.0)]
    return math.exp(min(candidates)[1])


def calibrated_split_metrics(
    labels: np.ndarray,
    probs_before: np.ndarray,
    probs_after: np.ndarray,
    loss_before: float,
    loss_after: float,
) -> dict[str, Any]:
    """A split's metrics block for calibrated probabilities (``loss`` is the calibrated NLL),
    with ``ece``, ``ece_uncalibrated`` and ``loss_uncalibrated`` beside it."""
    block = split_metrics(labels, probs_after, loss_after)
    block["loss_uncalibrated"] = float(loss_before)
    block["ece"] = expected_calibration_error(probs_after, labels)
    block["ece_uncalibrated"] = expected_calibration_error(probs_before, labels)
    return block


def calibration_block(
    temperature: float,
    val_nll: tuple[float, float],
    labels: np.ndarray,
    test_before: np.ndarray,
    test_after: np.ndarray,
) -> dict[str, Any]:
    """``metrics.json``'s ``calibration`` entry: the temperature, where it was fitted, the
    validation NLL before and after, and the test set's reliability bins before and after."""
    return {
        "method": "temperature",
        "temperature": float(temperature),
        "fitted_on": "validation",
        "bins": N_BINS,
        "val_nll_uncalibrated": float(val_nll[0]),
        "val_nll": float(val_nll[1]),
        "reliability": {
            "test": {
                "uncalibrated": reliability_bins(test_before, labels),
                "calibrated": reliability_bins(test_after, labels),
            }
        },
    }


def summary_line(temperature: float, metrics: dict[str, Any]) -> str:
    """One line: the temperature and the ECE before -> after on validation and test."""
    parts = [
        f"{name} {percent(metrics[key]['ece_uncalibrated'])} -> {percent(metrics[key]['ece'])}"
        for key, name in (("test", "test"), ("val", "validation"))
        if isinstance(metrics.get(key), dict) and "ece" in metrics[key]
    ]
    return (
        f"calibration: temperature {temperature:.3f} (fitted on validation); "
        f"expected calibration error {', '.join(parts)}"
    )


# ------------------------------------------------------------- an existing run, post hoc


@dataclass
class CalibrationResult:
    """What :func:`calibrate_checkpoint` did: the temperature, the checkpoint rewritten, the
    metrics (``val`` and ``test`` blocks with ``ece`` and ``ece_uncalibrated``), and the run
    files updated."""

    temperature: float
    checkpoint: Path
    metrics: dict[str, Any]
    written: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        return summary_line(self.temperature, self.metrics)


def calibrate_checkpoint(
    checkpoint: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    dataset: Dataset | None = None,
    device: str = "auto",
    batch_size: int = 1000,
    log: Callable[[str], None] | None = None,
) -> CalibrationResult:
    """Fit the temperature of an existing checkpoint (or a run folder's best checkpoint) on
    the validation split it was trained with, and store it.

    The split is remade from the checkpoint's config (``seed``, ``val_fraction``,
    ``data_dir``, or ``data_dir`` / ``dataset`` given here) exactly as training made it;
    the test set only reports the ECE. A run trained through the Python API on an in-memory
    dataset must be given that ``dataset``: its config cannot name it, and the shipped MNIST's
    split would mix training images into the validation set. Any temperature already stored is replaced
    (calibrating twice gives the same result). The checkpoint is rewritten atomically;
    in a run folder ``metrics.json``, ``predictions.npz``, the plots and ``report.html``
    (those that exist) are brought up to date as well.
    """
    from ..config import TrainConfig
    from ..data.batches import Split, train_val_split
    from ..data.sources import load_dataset
    from ..models.checkpoint import (
        load_checkpoint,
        resolve_checkpoint_path,
        save_checkpoint,
        set_calibration,
    )
    from ..models.deployed import deployed_from_checkpoint
    from ..runtime import resolve_device
    from .scoring import predict_view_logits

    say = log if log is not None else (lambda _m: None)
    given = Path(checkpoint)
    path = resolve_checkpoint_path(given)
    ckpt = load_checkpoint(path)
    config = ckpt.get("config") or {}
    defaults = TrainConfig()
    seed = config.get("seed", defaults.seed)
    val_fraction = config.get("val_fraction", defaults.val_fraction)
    if dataset is None:
        source = data_dir if data_dir is not None else config.get("data_dir")
        dataset = load_dataset(source)
    _, val = train_val_split(dataset.train_images, dataset.train_labels, val_fraction, seed)
    test = Split(dataset.test_images, dataset.test_labels)

    deployed = deployed_from_checkpoint(ckpt, resolve_device(device))
    deployed.set_temperature(1.0)
    val_logits = predict_view_logits(deployed, val.images, batch_size=batch_size)
    test_logits = predict_view_logits(deployed, test.images, batch_size=batch_size)
    temperature = fit_temperature(val_logits, val.labels)

    metrics: dict[str, Any] = {}
    probs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    nll: dict[str, tuple[float, float]] = {}
    for name, logits, split in (("val", val_logits, val), ("test", test_logits, test)):
        before = probabilities_at(logits, 1.0).numpy()
        after = probabilities_at(logits, temperature).numpy()
        nll[name] = (
            temperature_nll(logits, split.labels, 1.0),
            temperature_nll(logits, split.labels, temperature),
        )
        probs[name] = (before, after)
        metrics[name] = calibrated_split_metrics(split.labels.numpy(), before, after, *nll[name])
    test_labels = test.labels.numpy()
    block = calibration_block(temperature, nll["val"], test_labels, *probs["test"])

    set_calibration(
        ckpt,
        temperature,
        fitted_on="validation",
        val_nll_uncalibrated=nll["val"][0],
        val_nll=nll["val"][1],
    )
    stored = ckpt.get("metrics")
    if isinstance(stored, dict):
        stored.update({"val": metrics["val"], "test": metrics["test"]})
        stored["temperature"] = temperature
        stored["calibration"] = block
    ckpt.pop("path", None)
    save_checkpoint(path, ckpt)
    result = CalibrationResult(temperature, path, metrics, [path])
    say(f"wrote {path}")
    result.written += _update_run_folder(path, metrics, block, probs["test"][1], test_labels, say)
    return result


def _update_run_folder(
    checkpoint: Path,
    metrics: dict[str, Any],
    block: dict[str, Any],
    test_probs: np.ndarray,
    test_labels: np.ndarray,
    say: Callable[[str], None],
) -> list[Path]:
    """In the run folder that holds ``checkpoint`` as its best checkpoint: the metrics, the
    stored test predictions, the plots and the report, each where the run already had it."""
    from ..run_folder import RunFolder, read_metrics, write_metrics, write_predictions

    run = RunFolder(checkpoint.parent.parent)
    if run.best.resolve() != checkpoint.resolve() or not run.metrics.is_file():
        return []
    stored = read_metrics(run.root)
    stored.update({"val": metrics["val"], "test": metrics["test"]})
    stored["temperature"] = block["temperature"]
    stored["calibration"] = block
    written = [write_metrics(run, stored)]
    if run.predictions.is_file():
        written.append(write_predictions(run, test_probs.astype(np.float32), test_labels))
    if run.plots.is_dir() or run.report.is_file():
        from .plots import write_run_plots

        written += write_run_plots(run.root)
    if run.report.is_file():
        from .report import write_report

        written.append(write_report(run.root))
    for path in written:
        say(f"wrote {path}")
    return written
