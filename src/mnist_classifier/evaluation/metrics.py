"""Classification metrics as plain functions of labels and predictions.

These are pure numpy functions with no knowledge of models or files, so that
training (which records them) and evaluation (which reports them) share them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data.format import NUM_CLASSES


def confusion_matrix(
    labels: np.ndarray, preds: np.ndarray, num_classes: int = NUM_CLASSES
) -> np.ndarray:
    """(num_classes, num_classes) int64 counts; rows = true class, columns = predicted class."""
    labels = np.asarray(labels, dtype=np.int64)
    preds = np.asarray(preds, dtype=np.int64)
    flat = labels * num_classes + preds
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def classification_report(cm: np.ndarray) -> dict[str, Any]:
    """Per-class precision/recall/F1/support plus macro and weighted averages, from a confusion matrix."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    per_class = {
        str(k): {
            "precision": float(precision[k]),
            "recall": float(recall[k]),
            "f1": float(f1[k]),
            "support": int(support[k]),
        }
        for k in range(cm.shape[0])
    }
    total = float(support.sum())
    weights = support / total if total else np.zeros_like(support)
    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "per_class": per_class,
        "macro_avg": {
            "precision": float(precision.mean()),
            "recall": float(recall.mean()),
            "f1": float(f1.mean()),
            "support": int(total),
        },
        "weighted_avg": {
            "precision": float((precision * weights).sum()),
            "recall": float((recall * weights).sum()),
            "f1": float((f1 * weights).sum()),
            "support": int(total),
        },
    }


def split_metrics(labels: np.ndarray, probs: np.ndarray, loss: float) -> dict[str, Any]:
    """The metrics block of one split, as the run folder stores it."""
    cm = confusion_matrix(labels, probs.argmax(axis=1), probs.shape[1])
    report = classification_report(cm)
    return {
        "accuracy": report["accuracy"],
        "loss": float(loss),
        "confusion_matrix": cm.tolist(),
        "per_class": report["per_class"],
        "macro_avg": report["macro_avg"],
        "weighted_avg": report["weighted_avg"],
    }


def percent(fraction: float) -> str:
    """Accuracy as a percentage with two decimals: 0.98612 -> '98.61%'."""
    return f"{100.0 * fraction:.2f}%"


def format_split_report(name: str, block: dict[str, Any]) -> str:
    """Aligned text tables: accuracy/loss, the classification report and the confusion matrix."""
    lines = [f"{name}: accuracy {percent(block['accuracy'])}  loss {block['loss']:.4f}", ""]
    lines.append(f"{'class':>12} {'precision':>10} {'recall':>10} {'f1':>10} {'support':>9}")
    rows = [(k, v) for k, v in block["per_class"].items()]
    rows += [("macro avg", block["macro_avg"]), ("weighted avg", block["weighted_avg"])]
    for i, (label, v) in enumerate(rows):
        if i == len(block["per_class"]):
            lines.append("")
        lines.append(
            f"{label:>12} {v['precision']:>10.4f} {v['recall']:>10.4f} {v['f1']:>10.4f} {v['support']:>9d}"
        )
    cm = block["confusion_matrix"]
    lines += ["", "confusion matrix (rows: true digit, columns: predicted)"]
    lines.append("      " + "".join(f"{k:>6}" for k in range(len(cm))))
    for k, row in enumerate(cm):
        lines.append(f"{k:>6}" + "".join(f"{c:>6}" for c in row))
    return "\n".join(lines)
