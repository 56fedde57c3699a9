"""THE run-folder contract (``runs/NAME/``): file names, history fields, writers, checked readers.

Training writes a run folder and everything else (plots, the report, comparison,
the Python API's :class:`~mnist_classifier.training.run.Run`, checkpoint path
resolution) reads it, through this module only: no other module spells a file
name of the run folder. Every writer is atomic (a reader never sees half a file)
and every reader validates what it returns, so that a missing or corrupt file
becomes one :class:`~mnist_classifier.errors.RunFolderError` naming that file,
instead of a traceback from deep inside csv, json or matplotlib.

The layout (docs/ARCHITECTURE.md has what each file holds)::

    config.json  history.csv  metrics.json  predictions.npz  report.html
    checkpoints/best.pt  checkpoints/last.pt  plots/*.png
    .lock        held (flock) by the one process training into the folder
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from .data.format import NUM_CLASSES
from .errors import RunFolderError
from .fileio import TEMP_SUFFIX, atomic_path, atomic_write_text, temp_prefix

if TYPE_CHECKING:  # numpy is imported by the two functions that need it: the CLI's --help
    import numpy as np  # reads the file names from here

HISTORY_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")
_ACCURACY_COLUMNS = ("train_acc", "val_acc")
_SCORE_KEYS = ("precision", "recall", "f1")

CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.npz"
REPORT_FILE = "report.html"
PLOTS_DIR = "plots"
TENSORBOARD_DIR = "tensorboard"  # train --tensorboard: event files
CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_NAMES = ("best", "last")  # checkpoints/<name>.pt
LOCK_FILE = ".lock"


@dataclass(frozen=True)
class RunFolder:
    """The paths of one run folder (nothing is created or read by building one)."""

    root: Path

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> RunFolder:
        return cls(Path(path))

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def history(self) -> Path:
        return self.root / HISTORY_FILE

    @property
    def metrics(self) -> Path:
        return self.root / METRICS_FILE

    @property
    def predictions(self) -> Path:
        return self.root / PREDICTIONS_FILE

    @property
    def report(self) -> Path:
        return self.root / REPORT_FILE

    @property
    def plots(self) -> Path:
        return self.root / PLOTS_DIR

    @property
    def tensorboard(self) -> Path:
        return self.root / TENSORBOARD_DIR

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS_DIR

    def checkpoint(self, which: str) -> Path:
        """``checkpoints/<which>.pt``; ``which`` is ``best`` or ``last``."""
        if which not in CHECKPOINT_NAMES:
            raise ValueError(f"unknown checkpoint {which!r}; choose one of {CHECKPOINT_NAMES}")
        return self.checkpoints / f"{which}.pt"

    @property
    def best(self) -> Path:
        return self.checkpoint("best")

    @property
    def last(self) -> Path:
        return self.checkpoint("last")

    @property
    def lock(self) -> Path:
        return self.root / LOCK_FILE

    def training_files(self) -> tuple[Path, ...]:
        """The files a training process writes (and so the only temporaries it may clean)."""
        return (
            self.config, self.history, self.metrics, self.predictions,
            *(self.checkpoint(name) for name in CHECKPOINT_NAMES),
        )  # fmt: skip

    def holds_run(self) -> bool:
        """True once training has started writing here (a config or a checkpoint folder)."""
        return self.config.exists() or self.checkpoints.exists()


# ---------------------------------------------------------------------------------------------
# The training lock


@contextlib.contextmanager
def lock_run_folder(run: RunFolder) -> Iterator[list[Path]]:
    """Hold the run folder for one training process, or refuse in one line.

    Creates the folder, takes an exclusive ``flock`` on its ``.lock`` file (released
    by the kernel when the process ends, however it ends, so a restarted process can
    always take it again), then removes the temporary files a killed writer left
    behind (:func:`remove_stale_temporaries`) and yields them. A second process
    asking for the same folder gets a :class:`RunFolderError` naming it.
    """
    try:
        import fcntl
    except ImportError:  # no flock (Windows): nothing to hold
        yield remove_stale_temporaries(run)
        return
    created = not run.root.exists()
    try:
        run.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(run.lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise RunFolderError(f"{run.root}: cannot be used ({exc.strerror or exc})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            by = f" (process {holder})" if holder.isdigit() else ""
            raise RunFolderError(
                f"{run.root}: another training is using this run folder{by}; "
                "wait for it to end or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield remove_stale_temporaries(run)
        except BaseException:
            if created and not run.holds_run():  # failed before writing anything: no trace
                with contextlib.suppress(OSError):
                    run.lock.unlink()
                    run.root.rmdir()
            raise
    finally:
        os.close(fd)  # releases the lock


def remove_stale_temporaries(run: RunFolder) -> list[Path]:
    """Delete the temporary files (``.NAME.XXXXXX.tmp``) of the training files that a
    killed process left behind; returns those removed. Call it holding the lock."""
    removed = []
    for target in run.training_files():
        if not target.parent.is_dir():
            continue
        for tmp in target.parent.glob(f"{temp_prefix(target)}*{TEMP_SUFFIX}"):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed


# ---------------------------------------------------------------------------------------------
# Writers (used by training)


def _json_text(value: Mapping[str, Any]) -> str:
    return json.dumps(value, indent=2) + "\n"


def write_config(run: RunFolder, config: Mapping[str, Any]) -> Path:
    run.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run.config, _json_text(config))
    return run.config


def write_history(run: RunFolder, history: Sequence[Mapping[str, float]]) -> Path:
    """``history.csv``: one row per epoch with :data:`HISTORY_COLUMNS`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: row[k] for k in HISTORY_COLUMNS})
    atomic_write_text(run.history, buffer.getvalue())
    return run.history


def write_metrics(run: RunFolder, metrics: Mapping[str, Any]) -> Path:
    atomic_write_text(run.metrics, _json_text(metrics))
    return run.metrics


def write_predictions(run: RunFolder, probs: np.ndarray, labels: np.ndarray) -> Path:
    """``predictions.npz``: test-set ``probs`` float32 (N, 10) and ``labels`` int64 (N,)."""
    import numpy as np

    with atomic_path(run.predictions) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(
            fh, probs=np.asarray(probs, np.float32), labels=np.asarray(labels, np.int64)
        )
    return run.predictions


def write_report_text(run: RunFolder, html_text: str) -> Path:
    try:
        atomic_write_text(run.report, html_text)
    except OSError as exc:
        raise RunFolderError(f"{run.report}: cannot be written ({exc.strerror or exc})") from None
    return run.report


# ---------------------------------------------------------------------------------------------
# Checked readers (used by evaluation, the API and the CLI)


def run_name(run_dir: str | os.PathLike[str]) -> str:
    """The name of a run: its folder's name (``runs/mlp-seed`` -> ``mlp-seed``)."""
    path = Path(run_dir)
    return path.name or path.resolve().name


def check_run_dir(run_dir: str | os.PathLike[str]) -> Path:
    """Return ``run_dir`` as a Path after checking that it is a folder holding run files."""
    path = Path(run_dir)
    if not path.exists():
        raise RunFolderError(f"{path}: run folder does not exist")
    if not path.is_dir():
        raise RunFolderError(f"{path}: is not a folder (expected a run folder such as runs/NAME)")
    run = RunFolder(path)
    if not run.config.exists() and not run.metrics.exists():
        raise RunFolderError(
            f"{path}: not a run folder (it holds no {CONFIG_FILE} or {METRICS_FILE})"
        )
    return path


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunFolderError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise RunFolderError(f"{path}: is a folder, not a file") from None
    except UnicodeDecodeError:
        raise RunFolderError(f"{path}: is not UTF-8 text") from None
    except OSError as exc:
        raise RunFolderError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def _read_json_object(path: Path) -> dict[str, Any]:
    text = _read_text(path)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunFolderError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(value, dict):
        raise RunFolderError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def read_config(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The training config of a run (``config.json``), unknown keys kept as they are."""
    return _read_json_object(RunFolder.at(run_dir).config)


def read_history(run_dir: str | os.PathLike[str]) -> list[dict[str, float]]:
    """One dict per epoch from ``history.csv``, every value a number (``epoch`` an int).

    Extra columns are kept if they hold numbers, and dropped otherwise.
    """
    path = RunFolder.at(run_dir).history
    lines = _read_text(path).splitlines()
    reader = csv.DictReader(lines)
    header = reader.fieldnames or []
    missing = [c for c in HISTORY_COLUMNS if c not in header]
    if missing:
        raise RunFolderError(f"{path}: missing column(s) {', '.join(missing)}")
    rows: list[dict[str, float]] = []
    for line_no, raw in enumerate(reader, start=2):
        row: dict[str, float] = {}
        for key, text in raw.items():
            if key is None:
                raise RunFolderError(f"{path}: line {line_no} has more fields than the header")
            try:
                row[key] = float(text)
            except (TypeError, ValueError):
                if key in HISTORY_COLUMNS:
                    raise RunFolderError(
                        f"{path}: line {line_no}: column {key} is not a number ({text!r})"
                    ) from None
        epoch = row["epoch"]
        if not float(epoch).is_integer():
            raise RunFolderError(f"{path}: line {line_no}: epoch {epoch!r} is not a whole number")
        row["epoch"] = int(epoch)
        for key in _ACCURACY_COLUMNS:
            if not 0.0 <= row[key] <= 1.0:
                raise RunFolderError(
                    f"{path}: line {line_no}: {key} {row[key]!r} is not a fraction in [0, 1]"
                )
        rows.append(row)
    if not rows:
        raise RunFolderError(f"{path}: no epochs recorded")
    return rows


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_scores(path: Path, where: str, scores: object) -> None:
    if not isinstance(scores, dict):
        raise RunFolderError(f"{path}: {where} is not an object")
    for key in _SCORE_KEYS:
        if not _is_number(scores.get(key)):
            raise RunFolderError(f"{path}: {where}.{key} is missing or not a number")
    if not _is_int(scores.get("support")) or scores["support"] < 0:
        raise RunFolderError(f"{path}: {where}.support is missing or not a count")


def _check_split(path: Path, split: str, block: object) -> None:
    if not isinstance(block, dict):
        raise RunFolderError(f"{path}: {split!r} is missing or not an object")
    accuracy = block.get("accuracy")
    if not _is_number(accuracy) or not 0.0 <= accuracy <= 1.0:
        raise RunFolderError(f"{path}: {split}.accuracy is missing or not a fraction in [0, 1]")
    if not _is_number(block.get("loss")):
        raise RunFolderError(f"{path}: {split}.loss is missing or not a number")
    cm = block.get("confusion_matrix")
    if (
        not isinstance(cm, list)
        or len(cm) != NUM_CLASSES
        or not all(isinstance(r, list) and len(r) == NUM_CLASSES for r in cm)
        or not all(_is_int(c) and c >= 0 for r in cm for c in r)
    ):
        raise RunFolderError(
            f"{path}: {split}.confusion_matrix is not a {NUM_CLASSES}x{NUM_CLASSES} table of counts"
        )
    per_class = block.get("per_class")
    if not isinstance(per_class, dict):
        raise RunFolderError(f"{path}: {split}.per_class is missing or not an object")
    for digit in range(NUM_CLASSES):
        _check_scores(path, f"{split}.per_class.{digit}", per_class.get(str(digit)))
    for avg in ("macro_avg", "weighted_avg"):
        _check_scores(path, f"{split}.{avg}", block.get(avg))


def read_metrics(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The final metrics of a run (``metrics.json``), checked against the run-folder contract."""
    path = RunFolder.at(run_dir).metrics
    metrics = _read_json_object(path)
    if not isinstance(metrics.get("model"), str):
        raise RunFolderError(f"{path}: 'model' is missing or not a string")
    for key in ("parameters", "epochs_run", "best_epoch"):
        if not _is_int(metrics.get(key)) or metrics[key] < 0:
            raise RunFolderError(f"{path}: {key!r} is missing or not a whole number")
    seconds = metrics.get("train_seconds")
    if not _is_number(seconds) or not math.isfinite(seconds) or seconds < 0:
        raise RunFolderError(f"{path}: 'train_seconds' is missing or not a number of seconds")
    for split in ("test", "val"):
        _check_split(path, split, metrics.get(split))
    return metrics


def read_predictions(run_dir: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(probs, labels)`` from ``predictions.npz``: float32 (N, 10) and int64 (N,)."""
    import zipfile

    import numpy as np

    path = RunFolder.at(run_dir).predictions
    if not path.is_file():
        what = "is not a file" if path.exists() else "file not found"
        raise RunFolderError(f"{path}: {what}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "probs" not in npz.files or "labels" not in npz.files:
                raise RunFolderError(
                    f"{path}: must hold arrays 'probs' and 'labels', found {', '.join(npz.files)}"
                )
            probs = np.asarray(npz["probs"])
            labels = np.asarray(npz["labels"])
    except RunFolderError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise RunFolderError(f"{path}: not a readable .npz archive ({exc})") from None
    if (
        probs.ndim != 2
        or probs.shape[1] != NUM_CLASSES
        or not np.issubdtype(probs.dtype, np.floating)
    ):
        raise RunFolderError(
            f"{path}: probs must be float (N, {NUM_CLASSES}), found {probs.dtype} {probs.shape}"
        )
    if labels.ndim != 1 or len(labels) != len(probs) or not np.issubdtype(labels.dtype, np.integer):
        raise RunFolderError(
            f"{path}: labels must be int (N,) with N = {len(probs)}, "
            f"found {labels.dtype} {labels.shape}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise RunFolderError(f"{path}: labels must be digits 0-9")
    if not np.all(np.isfinite(probs)):
        raise RunFolderError(f"{path}: probs holds NaN or infinite values")
    return probs.astype(np.float32, copy=False), labels.astype(np.int64, copy=False)
