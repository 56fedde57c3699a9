"""Fake run folders for tests of plots, reports, comparison and anything else that reads runs.

``make_fake_run(path)`` writes a complete run folder in the layout training
writes (config.json, history.csv, metrics.json, predictions.npz, checkpoints/)
without training anything. Its predictions refer to a small generated
MNIST-format dataset (digits drawn with Pillow's font, written as IDX files),
whose folder is stored as ``config["data_dir"]``; the numbers in metrics.json
are computed from those predictions, so they agree with each other.

The checkpoints are placeholders (not loadable by torch): plots and reports never
read them.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mnist_classifier.data.idx import read_idx, write_idx

NUM_CLASSES = 10


def _digit_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 (N, 28, 28): each label drawn as a white digit on black, jittered, with some noise."""
    try:
        font: Any = ImageFont.load_default(size=22)
    except TypeError:  # Pillow built without FreeType: the small bitmap font
        font = ImageFont.load_default()
    images = np.zeros((len(labels), 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        canvas = Image.new("L", (28, 28), 0)
        dx, dy = (int(v) for v in rng.integers(-2, 3, size=2))
        ImageDraw.Draw(canvas).text(
            (14 + dx, 14 + dy), str(int(label)), fill=255, font=font, anchor="mm"
        )
        noise = rng.integers(0, 40, size=(28, 28))
        images[i] = np.clip(np.asarray(canvas, dtype=np.int64) + noise, 0, 255).astype(np.uint8)
    return images


def write_fake_dataset(folder: Path, *, n_train: int = 30, n_test: int = 40, seed: int = 0) -> Path:
    """Write the four MNIST-format IDX files (gzip) of a small generated dataset into ``folder``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(count) % NUM_CLASSES).astype(np.uint8)
        rng.shuffle(labels)
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", _digit_images(labels, rng))
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return folder


def fake_probs(labels: np.ndarray, accuracy: float, rng: np.random.Generator) -> np.ndarray:
    """float32 (N, 10) probability rows whose argmax is right for about ``accuracy`` of ``labels``.

    The top probability lies in [0.55, 0.99], so wrong predictions differ in confidence.
    """
    probs = np.zeros((len(labels), NUM_CLASSES), dtype=np.float64)
    for i, label in enumerate(labels):
        pred = int(label)
        if rng.random() >= accuracy:
            pred = int(rng.choice([d for d in range(NUM_CLASSES) if d != label]))
        top = rng.uniform(0.55, 0.99)
        rest = rng.dirichlet(np.ones(NUM_CLASSES - 1)) * (1.0 - top)
        probs[i, [d for d in range(NUM_CLASSES) if d != pred]] = rest
        probs[i, pred] = top
    return probs.astype(np.float32)


def split_block(labels: np.ndarray, probs: np.ndarray, loss: float) -> dict[str, Any]:
    """A metrics.json split block (accuracy, loss, confusion matrix, per-class, averages)."""
    preds = probs.argmax(axis=1)
    cm = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(cm, (labels, preds), 1)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros(NUM_CLASSES), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(NUM_CLASSES), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(NUM_CLASSES), where=denom > 0)
    total = int(support.sum())
    weights = support / total

    def avg(w: np.ndarray) -> dict[str, Any]:
        return {
            "precision": float((precision * w).sum()),
            "recall": float((recall * w).sum()),
            "f1": float((f1 * w).sum()),
            "support": total,
        }

    return {
        "accuracy": float(tp.sum() / total),
        "loss": float(loss),
        "confusion_matrix": cm.tolist(),
        "per_class": {
            str(d): {
                "precision": float(precision[d]),
                "recall": float(recall[d]),
                "f1": float(f1[d]),
                "support": int(support[d]),
            }
            for d in range(NUM_CLASSES)
        },
        "macro_avg": avg(np.full(NUM_CLASSES, 1.0 / NUM_CLASSES)),
        "weighted_avg": avg(weights),
    }


def make_fake_run(
    path: str | Path,
    *,
    accuracy: float = 0.75,
    epochs: int = 4,
    n_test: int = 40,
    model: str = "mlp-128-64-dropout",
    parameters: int = 109_386,
    schedule: str = "none",
    seed: int = 0,
    data_dir: str | Path | None = None,
    config_extra: dict[str, Any] | None = None,
) -> Path:
    """Write a complete fake run folder at ``path`` and return it.

    Without ``data_dir`` a generated dataset of ``n_test`` test images is written beside
    the run (``<path>.data``) and named in config.json. ``accuracy`` sets the share of
    right test predictions (1.0 gives none wrong); ``schedule="cosine"`` makes the
    learning rate vary; ``config_extra`` adds or replaces config keys.
    """
    run = Path(path)
    run.mkdir(parents=True, exist_ok=False)
    if data_dir is None:
        data_dir = write_fake_dataset(run.parent / f"{run.name}.data", n_test=n_test, seed=seed)
    data_dir = Path(data_dir)
    rng = np.random.default_rng(seed + 1)
    lr0 = 0.001

    config: dict[str, Any] = {
        "model": model,
        "model_kwargs": {},
        "optimizer": "adam",
        "lr": lr0,
        "weight_decay": 0.0001,
        "batch_size": 32,
        "epochs": epochs,
        "val_fraction": 0.2,
        "schedule": schedule,
        "label_smoothing": 0.0,
        "seed": seed,
        "device": "auto",
        "data_dir": str(data_dir),
        "recipe": "seed",
    }
    config.update(config_extra or {})
    (run / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    history = []
    for epoch in range(1, epochs + 1):
        progress = epoch / epochs
        lr = lr0 if schedule == "none" else lr0 * 0.5 * (1 + math.cos(math.pi * progress))
        history.append(
            {
                "epoch": epoch,
                "train_loss": round(1.2 / (epoch + 0.5), 6),
                "train_acc": round(min(1.0, accuracy * (0.8 + 0.22 * progress)), 6),
                "val_loss": round(1.3 / (epoch + 0.5) + 0.02 * rng.random(), 6),
                "val_acc": round(
                    min(1.0, accuracy * (0.8 + 0.2 * progress) - 0.01 * rng.random()), 6
                ),
                "lr": lr,
                "seconds": round(2.5 * epoch, 3),
            }
        )
    with (run / "history.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(history[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)

    test_labels = read_idx(data_dir / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    test_probs = fake_probs(test_labels, accuracy, rng)
    val_labels = (np.arange(20) % NUM_CLASSES).astype(np.int64)
    val_probs = fake_probs(val_labels, accuracy, rng)
    best_epoch = max(history, key=lambda row: row["val_acc"])["epoch"]
    metrics = {
        "model": model,
        "parameters": parameters,
        "epochs_run": epochs,
        "best_epoch": best_epoch,
        "train_seconds": history[-1]["seconds"],
        "device": "cpu",
        "test": split_block(test_labels, test_probs, 0.4),
        "val": split_block(val_labels, val_probs, 0.45),
    }
    (run / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    np.savez_compressed(run / "predictions.npz", probs=test_probs, labels=test_labels)

    (run / "checkpoints").mkdir()
    for name in ("best.pt", "last.pt"):
        (run / "checkpoints" / name).write_bytes(b"placeholder: not a real checkpoint\n")
    return run
