"""Compare finished runs side by side: a table (Markdown and CSV) and overlaid validation curves.

Files written into the output folder:

- ``comparison.md``: an aligned Markdown table, readable as plain text too
  (the ``compare`` command prints it);
- ``comparison.csv``: the same rows with raw numbers (fractions, seconds) for scripts;
- ``val_curves.png``: validation accuracy and validation loss per epoch, one line per run.

"Best validation accuracy" is the highest ``val_acc`` in a run's history;
"test accuracy" is the test accuracy in its final metrics.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.ticker import MaxNLocator, PercentFormatter

from ..errors import RunFolderError
from ..fileio import atomic_write_text
from ..run_folder import check_run_dir, read_history, read_metrics, run_name
from .metrics import percent
from .plots import new_figure, save_figure
from .report import format_seconds

TABLE_COLUMNS = (
    "run",
    "model",
    "parameters",
    "epochs",
    "train time",
    "best val acc",
    "test acc",
)
CSV_COLUMNS = (
    "run",
    "path",
    "model",
    "parameters",
    "epochs",
    "train_seconds",
    "best_val_accuracy",
    "best_val_epoch",
    "test_accuracy",
)


@dataclass(frozen=True)
class RunSummary:
    """What the comparison shows of one run."""

    name: str
    path: Path
    model: str
    parameters: int
    epochs: int
    train_seconds: float
    best_val_accuracy: float
    best_val_epoch: int
    test_accuracy: float
    history: tuple[dict[str, float], ...]


def summarize_run(run_dir: str | os.PathLike[str], name: str | None = None) -> RunSummary:
    """Read one run folder into a :class:`RunSummary` (``name`` defaults to the folder name)."""
    run = check_run_dir(run_dir)
    metrics = read_metrics(run)
    history = read_history(run)
    best = max(history, key=lambda row: row["val_acc"])
    return RunSummary(
        name=name or run_name(run),
        path=run,
        model=metrics["model"],
        parameters=int(metrics["parameters"]),
        epochs=int(metrics["epochs_run"]),
        train_seconds=float(metrics["train_seconds"]),
        best_val_accuracy=float(best["val_acc"]),
        best_val_epoch=int(best["epoch"]),
        test_accuracy=float(metrics["test"]["accuracy"]),
        history=tuple(history),
    )


def summarize_runs(run_dirs: Sequence[str | os.PathLike[str]]) -> list[RunSummary]:
    """Summaries of ``run_dirs`` in order; runs whose folder names clash are named by path."""
    if not run_dirs:
        raise RunFolderError("no run folder to compare")
    names = [run_name(p) for p in run_dirs]
    return [
        summarize_run(path, name if names.count(name) == 1 else str(path))
        for path, name in zip(run_dirs, names, strict=True)
    ]


def _table_cells(summary: RunSummary) -> list[str]:
    return [
        summary.name,
        summary.model,
        f"{summary.parameters:,}",
        str(summary.epochs),
        format_seconds(summary.train_seconds),
        f"{percent(summary.best_val_accuracy)} (epoch {summary.best_val_epoch})",
        percent(summary.test_accuracy),
    ]


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def format_markdown(summaries: Sequence[RunSummary]) -> str:
    """An aligned Markdown table: text columns left-aligned, numbers right-aligned."""
    rows = [[_md_cell(c) for c in _table_cells(s)] for s in summaries]
    header = list(TABLE_COLUMNS)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    numeric = [False, False, True, True, True, True, True]

    def line(cells: list[str]) -> str:
        padded = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(cells, widths, numeric, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join(
            "-" * (w + 1) + ":" if num else "-" * (w + 2)
            for w, num in zip(widths, numeric, strict=True)
        )
        + "|"
    )
    return "\n".join([line(header), rule, *(line(r) for r in rows)]) + "\n"


def format_csv(summaries: Sequence[RunSummary]) -> str:
    """The comparison as CSV with raw numbers (accuracies as fractions, time in seconds)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in summaries:
        writer.writerow(
            [
                s.name,
                str(s.path),
                s.model,
                s.parameters,
                s.epochs,
                f"{s.train_seconds:.3f}",
                f"{s.best_val_accuracy:.6f}",
                s.best_val_epoch,
                f"{s.test_accuracy:.6f}",
            ]
        )
    return buffer.getvalue()


def plot_val_curves(summaries: Sequence[RunSummary], out_path: str | os.PathLike[str]) -> Path:
    """Overlay validation accuracy (percent) and validation loss per epoch, one line per run."""
    fig = new_figure(11.0, 4.2)
    acc_ax, loss_ax = fig.subplots(1, 2)
    for s in summaries:
        epochs = np.array([row["epoch"] for row in s.history])
        marker = "o" if len(epochs) <= 30 else None
        acc_ax.plot(
            epochs, [100 * row["val_acc"] for row in s.history], marker=marker, label=s.name
        )
        loss_ax.plot(epochs, [row["val_loss"] for row in s.history], marker=marker, label=s.name)
    acc_ax.set_title("Validation accuracy")
    acc_ax.set_ylabel("accuracy")
    acc_ax.yaxis.set_major_formatter(PercentFormatter(xmax=100, decimals=None))
    loss_ax.set_title("Validation loss")
    loss_ax.set_ylabel("cross-entropy loss")
    for ax in (acc_ax, loss_ax):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    return save_figure(fig, out_path)


def compare_runs(
    run_dirs: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str]
) -> Path:
    """Write ``comparison.md``, ``comparison.csv`` and ``val_curves.png`` into ``out_dir``.

    Every run is read and checked before anything is written. Returns the path of
    ``comparison.md``, whose text is the table to show.
    """
    summaries = summarize_runs(run_dirs)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"{out}: exists and is not a folder")
    markdown = out / "comparison.md"
    try:
        atomic_write_text(out / "comparison.csv", format_csv(summaries))
        plot_val_curves(summaries, out / "val_curves.png")
        atomic_write_text(markdown, format_markdown(summaries))
    except OSError as exc:
        raise RunFolderError(f"{out}: cannot be written ({exc.strerror or exc})") from None
    return markdown
