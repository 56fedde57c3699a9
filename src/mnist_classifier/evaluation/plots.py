"""The pictures of a run: learning curves, confusion matrix, per-class scores, predictions.

Figures are built with :class:`matplotlib.figure.Figure` directly and rendered
by the Agg canvas that ``savefig`` picks for PNG, so this module never imports
``matplotlib.pyplot``, never selects a backend and never changes ``rcParams``:
whoever else uses matplotlib in the same process (a notebook, a GUI) is left
alone, and nothing here needs a display. Every PNG is written atomically.

Files written by :func:`write_run_plots` into the run's plots folder (see :data:`PLOT_FILES`):

- ``curves.png``: one figure, loss panel and accuracy panel (train vs validation per
  epoch), plus a learning-rate panel when the rate changed during training;
- ``confusion_matrix.png``, ``per_class.png``: test-set results;
- ``predictions.png``: the first test images with true and predicted digit;
- ``confident_mistakes.png``: the test images the model got wrong with most confidence;
- ``reliability.png``: accuracy against confidence per confidence bin on the test set,
  before and after calibration (temperature scaling), with the gap and the ECE.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from ..errors import RunFolderError
from ..fileio import atomic_path
from ..run_folder import (
    RunFolder,
    check_run_dir,
    read_config,
    read_history,
    read_metrics,
    read_predictions,
)
from .metrics import percent

DPI = 100
WRONG_COLOR = "#c62828"
RIGHT_COLOR = "#222222"
TRAIN_COLOR = "#1f77b4"
VAL_COLOR = "#ff7f0e"

# File name -> caption, in the order the report shows them.
PLOT_FILES: dict[str, str] = {
    "curves.png": "Loss and accuracy per epoch, training vs validation",
    "confusion_matrix.png": "Confusion matrix on the test set (rows: true digit)",
    "per_class.png": "Precision, recall and F1 per digit on the test set",
    "predictions.png": "First test images: true digit (T) and prediction (P); wrong ones in red",
    "confident_mistakes.png": "The most confidently wrong test images, with top-3 probabilities",
    "reliability.png": "Reliability on the test set: accuracy per confidence bin, "
    "before and after calibration (the gap to the diagonal is the miscalibration)",
}


def new_figure(
    width: float, height: float, margins: tuple[float, float, float, float] | None = None
) -> Figure:
    """A pyplot-free figure of ``width`` x ``height`` inches at :data:`DPI`.

    Without ``margins`` the layout is matplotlib's constrained layout, which measures every
    label (an extra pass over the figure when it is saved). ``margins`` (left, right,
    bottom, top, in inches) fixes the axes area instead, for the standard plots whose
    labels are known: they render in about half the time.
    """
    if margins is None:
        return Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    fig = Figure(figsize=(width, height), dpi=DPI)
    left, right, bottom, top = margins
    fig.subplots_adjust(
        left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height
    )
    return fig


def save_figure(fig: Figure, out_path: str | os.PathLike[str]) -> Path:
    """Render ``fig`` as PNG to ``out_path`` atomically and return the path."""
    path = Path(out_path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    except OSError as exc:
        raise RunFolderError(f"{path}: cannot be written ({exc.strerror or exc})") from None
    return path


def _column(history: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    try:
        return np.array([float(row[key]) for row in history], dtype=np.float64)
    except KeyError:
        raise ValueError(f"history rows need a {key!r} value") from None


def plot_curves(
    history: Sequence[Mapping[str, Any]],
    out_dir: str | os.PathLike[str],
    *,
    best_epoch: int | None = None,
) -> Path:
    """Draw training vs validation loss and accuracy per epoch into ``out_dir/curves.png``.

    ``history`` holds one mapping per epoch with the history columns of the run folder (numbers or
    numeric strings). Accuracy is shown in percent. ``best_epoch``, when given, is marked
    with a dotted line. A third panel shows the learning rate if it changed.
    """
    if not history:
        raise ValueError("history is empty: there is no epoch to plot")
    epochs = _column(history, "epoch")
    lr = _column(history, "lr") if all("lr" in row for row in history) else None
    show_lr = lr is not None and len(lr) > 1 and not np.allclose(lr, lr[0])
    panels = 3 if show_lr else 2
    fig = new_figure(4.6 * panels, 3.6, margins=(0.75, 0.15, 0.5, 0.3))
    fig.subplots_adjust(wspace=0.32)
    axes = fig.subplots(1, panels)
    marker = "o" if len(epochs) <= 30 else None

    loss_ax, acc_ax = axes[0], axes[1]
    loss_ax.plot(
        epochs, _column(history, "train_loss"), marker=marker, color=TRAIN_COLOR, label="training"
    )
    loss_ax.plot(
        epochs, _column(history, "val_loss"), marker=marker, color=VAL_COLOR, label="validation"
    )
    loss_ax.set_title("Loss")
    loss_ax.set_ylabel("cross-entropy loss")

    acc_ax.plot(
        epochs,
        100 * _column(history, "train_acc"),
        marker=marker,
        color=TRAIN_COLOR,
        label="training",
    )
    acc_ax.plot(
        epochs,
        100 * _column(history, "val_acc"),
        marker=marker,
        color=VAL_COLOR,
        label="validation",
    )
    acc_ax.set_title("Accuracy")
    acc_ax.set_ylabel("accuracy")
    acc_ax.yaxis.set_major_formatter(PercentFormatter(xmax=100, decimals=None))

    if show_lr and lr is not None:
        lr_ax = axes[2]
        lr_ax.plot(epochs, lr, marker=marker, color="#555555")
        lr_ax.set_title("Learning rate")
        lr_ax.set_ylabel("learning rate")
        lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))

    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if best_epoch is not None:
            ax.axvline(
                best_epoch, color="#888888", linestyle=":", linewidth=1.2, label="best epoch"
            )
    loss_ax.legend(loc="best", fontsize="small")
    acc_ax.legend(loc="best", fontsize="small")
    return save_figure(fig, Path(out_dir) / "curves.png")


def plot_confusion_matrix(
    cm: Sequence[Sequence[int]] | np.ndarray,
    out_path: str | os.PathLike[str],
    *,
    title: str = "Confusion matrix (test)",
) -> Path:
    """Draw confusion matrix ``cm`` (rows = true digit, columns = predicted) as a heatmap.

    Cells show counts; their colour is the fraction of the true digit's images, so
    errors stay visible next to the large diagonal whatever the class sizes.
    """
    counts = np.asarray(cm)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] == 0:
        raise ValueError(f"confusion matrix must be square, got shape {counts.shape}")
    if np.any(counts < 0):
        raise ValueError("confusion matrix counts must not be negative")
    counts = counts.astype(np.int64)
    k = counts.shape[0]
    row_totals = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(counts, row_totals, out=np.zeros(counts.shape), where=row_totals > 0)
    total = int(counts.sum())
    accuracy = np.trace(counts) / total if total else 0.0

    fig = new_figure(7.2, 6.2, margins=(0.7, 1.0, 0.6, 0.35))
    ax = fig.subplots()
    image = ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    cbar = fig.colorbar(image, ax=ax, shrink=0.85, fraction=0.05, pad=0.03)
    cbar.set_label("fraction of the true digit's images")
    fontsize = 9 if max(len(str(int(c))) for c in counts.flat) <= 4 else 7
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(counts[i, j]),
                ha="center",
                va="center",
                fontsize=fontsize,
                color="white" if fractions[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title(f"{title}: accuracy {percent(accuracy)} of {total:,}")
    return save_figure(fig, out_path)


def plot_per_class(
    per_class: Mapping[str, Mapping[str, Any]] | Mapping[int, Mapping[str, Any]],
    out_path: str | os.PathLike[str],
) -> Path:
    """Draw precision, recall and F1 (in percent) as grouped bars per digit.

    ``per_class`` maps each digit (``"0"``..``"9"`` or ints) to a mapping with
    ``precision``, ``recall`` and ``f1`` fractions. The value axis starts just
    below the lowest score, so that differences of a fraction of a percent show.
    """
    if not per_class:
        raise ValueError("per_class is empty")
    items = sorted(
        ((str(key), value) for key, value in per_class.items()), key=lambda kv: int(kv[0])
    )
    labels = [key for key, _ in items]
    series = {
        name: np.array([100.0 * float(scores[name]) for _, scores in items])
        for name in ("precision", "recall", "f1")
    }
    lowest = min(float(values.min()) for values in series.values())
    bottom = max(0.0, 5.0 * math.floor((lowest - 1.0) / 5.0))

    fig = new_figure(9.0, 4.0, margins=(0.95, 0.15, 0.85, 0.35))
    ax = fig.subplots()
    x = np.arange(len(labels))
    width = 0.27
    colors = {"precision": "#1f77b4", "recall": "#2ca02c", "f1": "#9467bd"}
    for offset, (name, values) in zip((-width, 0.0, width), series.items(), strict=True):
        ax.bar(
            x + offset,
            values - bottom,
            width,
            bottom=bottom,
            label=name.replace("f1", "F1"),
            color=colors[name],
        )
    ax.set_xticks(x, labels)
    ax.set_xlabel("digit")
    ax.set_ylim(bottom, 100.0 + (100.0 - bottom) * 0.02)
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=100, decimals=None))
    ax.set_ylabel("score")
    ax.set_title("Per-class precision, recall and F1 (test)")
    ax.grid(True, axis="y", alpha=0.3)
    handles, names = ax.get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", fontsize="small", ncols=3, frameon=False)
    return save_figure(fig, out_path)


def _check_predictions(
    images: Any, labels: Any, probs: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrays (images (N, H, W), labels (N,), probs (N, C)) after shape checks."""
    images_arr = np.asarray(images)
    labels_arr = np.asarray(labels).astype(np.int64)
    probs_arr = np.asarray(probs, dtype=np.float64)
    if images_arr.ndim != 3:
        raise ValueError(f"images must be (N, H, W), got shape {images_arr.shape}")
    if probs_arr.ndim != 2:
        raise ValueError(f"probs must be (N, classes), got shape {probs_arr.shape}")
    if not len(images_arr) == len(labels_arr) == len(probs_arr):
        raise ValueError(
            f"images, labels and probs differ in length: "
            f"{len(images_arr)}, {len(labels_arr)}, {len(probs_arr)}"
        )
    return images_arr, labels_arr, probs_arr


def _grid(count: int, columns: int | None = None) -> tuple[int, int]:
    cols = columns or max(1, math.ceil(math.sqrt(count)))
    return max(1, math.ceil(count / cols)), cols


# Digit grids are drawn as one picture: the tiles are laid out with numpy into a single
# RGB mosaic shown by one image axes, and the labels are text placed over it. A grid of
# 25 axes with constrained layout cost a second or more to render; this costs a few
# hundredths of a second and looks the same.
MOSAIC_SCALE = 4  # screen pixels per image pixel at DPI
TILE_GAP = 6  # mosaic pixels between two tiles (room for the red frame of a wrong one)


def _tile_rgb(image: np.ndarray) -> np.ndarray:
    """A digit as RGB uint8, drawn as the gray colour map does (0 = black, max = white)."""
    if image.dtype == np.uint8:
        gray = image
    else:
        values = np.asarray(image, dtype=np.float64)
        top = float(values.max()) if values.size else 0.0
        gray = np.clip(values / top * 255.0 if top > 0 else values * 0.0, 0, 255).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def _mosaic(
    images: Sequence[np.ndarray], cols: int, top: int, bottom: int, framed: Sequence[bool]
) -> tuple[np.ndarray, int, int]:
    """The tiles on a white canvas, ``top``/``bottom`` mosaic pixels of room for text above
    and below each; ``framed`` tiles get a red frame. Returns (canvas, cell width, cell height)."""
    height, width = images[0].shape[:2]
    cell_w, cell_h = width + TILE_GAP, height + top + bottom + TILE_GAP
    rows = math.ceil(len(images) / cols)
    canvas = np.full((rows * cell_h, cols * cell_w, 3), 255, dtype=np.uint8)
    red = np.array([int(WRONG_COLOR[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.uint8)
    for i, image in enumerate(images):
        y = (i // cols) * cell_h + TILE_GAP // 2 + top
        x = (i % cols) * cell_w + TILE_GAP // 2
        if framed[i]:
            canvas[y - 1 : y + height + 1, x - 1 : x + width + 1] = red
        canvas[y : y + height, x : x + width] = _tile_rgb(image)
    return canvas, cell_w, cell_h


def _mosaic_figure(canvas: np.ndarray, title: str) -> tuple[Figure, Axes]:
    """A figure that shows ``canvas`` at :data:`MOSAIC_SCALE` under a one-line ``title``."""
    title_px = 36
    width_px = canvas.shape[1] * MOSAIC_SCALE
    height_px = canvas.shape[0] * MOSAIC_SCALE
    fig = Figure(figsize=(width_px / DPI, (height_px + title_px) / DPI), dpi=DPI)
    ax = fig.add_axes((0.0, 0.0, 1.0, height_px / (height_px + title_px)))
    ax.imshow(canvas, interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    fig.text(
        0.5,
        1.0 - 0.5 * title_px / (height_px + title_px),
        title,
        ha="center",
        va="center",
        fontsize="large",
    )
    return fig, ax


def plot_predictions(
    images: Any,
    labels: Any,
    probs: Any,
    out_path: str | os.PathLike[str],
    n: int = 25,
) -> Path:
    """Draw the first ``n`` images in a grid, each titled ``T:7 P:7``; wrong ones in red.

    ``images`` is uint8 (N, 28, 28) (numpy or a CPU tensor), ``labels`` (N,) true digits,
    ``probs`` (N, 10) predicted probabilities.
    """
    images_arr, labels_arr, probs_arr = _check_predictions(images, labels, probs)
    count = min(n, len(images_arr))
    if count <= 0:
        raise ValueError("there are no images to plot")
    preds = probs_arr.argmax(axis=1)
    _, cols = _grid(count)
    ok = preds[:count] == labels_arr[:count]
    canvas, cell_w, cell_h = _mosaic(list(images_arr[:count]), cols, 8, 0, ~ok)
    fig, ax = _mosaic_figure(canvas, f"First {count} test images: {int((~ok).sum())} wrong")
    for i in range(count):
        ax.text(
            (i % cols + 0.5) * cell_w - 0.5,
            (i // cols) * cell_h + TILE_GAP // 2 + 7,
            f"T:{labels_arr[i]} P:{preds[i]}",
            ha="center",
            va="bottom",
            fontsize=10,
            color=RIGHT_COLOR if ok[i] else WRONG_COLOR,
            fontweight="normal" if ok[i] else "bold",
        )
    return save_figure(fig, out_path)


def confident_mistake_indices(labels: Any, probs: Any, n: int) -> np.ndarray:
    """Indices of at most ``n`` wrong predictions, the most confident (top probability) first.

    Ties keep dataset order, so the choice is deterministic.
    """
    labels_arr = np.asarray(labels).astype(np.int64)
    probs_arr = np.asarray(probs, dtype=np.float64)
    preds = probs_arr.argmax(axis=1)
    wrong = np.flatnonzero(preds != labels_arr)
    confidence = probs_arr[wrong, preds[wrong]]
    order = np.argsort(-confidence, kind="stable")
    return wrong[order[: max(n, 0)]]


def plot_confident_mistakes(
    images: Any,
    labels: Any,
    probs: Any,
    out_path: str | os.PathLike[str],
    n: int = 16,
) -> Path:
    """Draw the ``n`` most confidently wrong images, each with its top-3 probabilities.

    With no mistake at all the picture says so, so that the report still has it.
    """
    images_arr, labels_arr, probs_arr = _check_predictions(images, labels, probs)
    chosen = confident_mistake_indices(labels_arr, probs_arr, n)
    total_wrong = int(np.count_nonzero(probs_arr.argmax(axis=1) != labels_arr))
    if len(chosen) == 0:
        fig = Figure(figsize=(6.0, 1.6), dpi=DPI)
        fig.text(
            0.5,
            0.5,
            f"No mistakes: all {len(labels_arr):,} test images are classified correctly.",
            ha="center",
            va="center",
            fontsize=12,
        )
        return save_figure(fig, out_path)
    _, cols = _grid(len(chosen), columns=min(4, len(chosen)))
    top, height = 8, images_arr.shape[1]
    canvas, cell_w, cell_h = _mosaic(
        [images_arr[i] for i in chosen], cols, top, 13, [False] * len(chosen)
    )
    fig, ax = _mosaic_figure(
        canvas, f"Most confident mistakes: {len(chosen)} of {total_wrong:,} wrong test images"
    )
    for slot, index in enumerate(chosen):
        x = (slot % cols + 0.5) * cell_w - 0.5
        y = (slot // cols) * cell_h + TILE_GAP // 2
        top3 = np.argsort(-probs_arr[index], kind="stable")[:3]
        ax.text(
            x,
            y + top - 1,
            f"#{index}  T:{labels_arr[index]} P:{top3[0]}",
            ha="center",
            va="bottom",
            fontsize=10,
            color=WRONG_COLOR,
            fontweight="bold",
        )
        ax.text(
            x,
            y + top + height + 1,
            "\n".join(f"{d}: {percent(probs_arr[index, d])}" for d in top3),
            ha="center",
            va="top",
            fontsize=8.5,
            family="monospace",
            linespacing=1.15,
        )
    return save_figure(fig, out_path)


def load_test_images(config: dict[str, Any], labels: np.ndarray, run_dir: Path) -> np.ndarray:
    """The test images (uint8 (N, 28, 28)) that ``labels`` (from the stored predictions) belong to.

    They come from the dataset named by ``config["data_dir"]`` (None = shipped MNIST).
    Predictions for the first N test images only (a run evaluated on a subset) are
    accepted; a test split whose labels differ from ``labels`` is refused, since
    pictures of other images beside these predictions would be wrong without anyone
    noticing.
    """
    data_dir = config.get("data_dir")
    if data_dir is not None and not isinstance(data_dir, str):
        raise RunFolderError(f"{RunFolder(run_dir).config}: data_dir must be a path or null")
    from ..data.sources import load_dataset  # torch: only when test images are drawn

    dataset = load_dataset(data_dir)
    images = dataset.test_images.numpy()
    expected = dataset.test_labels.numpy()
    where = RunFolder(run_dir).predictions
    if len(labels) > len(expected):
        raise RunFolderError(
            f"{where}: holds {len(labels)} predictions but the test set of "
            f"{dataset.source} has only {len(expected)} images"
        )
    if not np.array_equal(expected[: len(labels)], labels):
        raise RunFolderError(
            f"{where}: labels do not match the test labels of {dataset.source} "
            "(was the run trained on another --data-dir?)"
        )
    return images[: len(labels)]


def write_run_plots(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Draw every plot of a run folder into its plots folder and return their paths.

    All run files are read and checked before the first picture is written, so a
    missing or corrupt file raises :class:`~mnist_classifier.errors.RunFolderError`
    (naming the file) and leaves the existing plots as they were.
    """
    run = check_run_dir(run_dir)
    config = read_config(run)
    history = read_history(run)
    metrics = read_metrics(run)
    probs, labels = read_predictions(run)
    images = load_test_images(config, labels, run)
    plots = RunFolder(run).plots
    test = metrics["test"]
    return [
        plot_curves(history, plots, best_epoch=metrics["best_epoch"]),
        plot_confusion_matrix(test["confusion_matrix"], plots / "confusion_matrix.png"),
        plot_per_class(test["per_class"], plots / "per_class.png"),
        plot_predictions(images, labels, probs, plots / "predictions.png"),
        plot_confident_mistakes(images, labels, probs, plots / "confident_mistakes.png"),
        plot_reliability(reliability_panels(metrics, labels, probs), plots / "reliability.png"),
    ]


def reliability_panels(
    metrics: Mapping[str, Any], labels: Any, probs: Any
) -> list[tuple[str, dict[str, list[Any]]]]:
    """(title, bins) per panel of :func:`plot_reliability`: the test set's bins before and after
    calibration from ``metrics`` when the run was calibrated, else the stored probabilities'."""
    from .calibration import reliability_bins

    stored = (metrics.get("calibration") or {}).get("reliability", {}).get("test", {})
    if isinstance(stored, Mapping) and {"uncalibrated", "calibrated"} <= set(stored):
        temperature = float(metrics.get("temperature") or 1.0)
        return [
            ("Before calibration", stored["uncalibrated"]),
            (f"After calibration (T = {temperature:.3g})", stored["calibrated"]),
        ]
    return [("Not calibrated", reliability_bins(probs, labels))]


def plot_reliability(
    panels: Sequence[tuple[str, Mapping[str, Sequence[Any]]]], out_path: str | os.PathLike[str]
) -> Path:
    """One reliability diagram per ``(title, bins)`` panel (bins as from
    :func:`~mnist_classifier.evaluation.calibration.reliability_bins`): a bar per confidence
    bin at its accuracy, the gap to the bin's mean confidence shaded, the diagonal of a
    perfectly calibrated model, and the expected calibration error in the title."""
    fig = new_figure(4.2 * max(len(panels), 1), 4.0)
    axes = np.atleast_1d(fig.subplots(1, max(len(panels), 1))).ravel()
    for ax, (title, bins) in zip(axes, panels, strict=False):
        count = np.asarray(bins["count"], dtype=np.float64)
        acc = np.asarray(bins["accuracy"], dtype=np.float64)
        conf = np.asarray(bins["confidence"], dtype=np.float64)
        n = len(count)
        width = 1.0 / max(n, 1)
        centres = (np.arange(n) + 0.5) * width
        used = count > 0
        ece = float(np.sum(count * np.abs(acc - conf)) / max(count.sum(), 1.0))
        ax.bar(
            centres[used],
            acc[used],
            width=width,
            color=TRAIN_COLOR,
            edgecolor="white",
            label="accuracy",
            alpha=0.85,
        )
        ax.bar(
            centres[used],
            (conf - acc)[used],
            bottom=acc[used],
            width=width,
            facecolor="none",
            edgecolor=WRONG_COLOR,
            linewidth=1.2,
            hatch="///",
            label="gap to mean confidence",
        )
        ax.plot([0, 1], [0, 1], linestyle="--", color=RIGHT_COLOR, linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (top probability)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{title}\nECE {percent(ece)}", fontsize=10)
        ax.legend(loc="upper left", fontsize=8)
    return save_figure(fig, out_path)
