"""Calibration on the MNIST test set: ECE and what ``--min-confidence`` catches, before and after.

    python benchmarks/calibration.py [--recipe cnn-fast] [--seed 0] [--run RUN] [--threshold 0.9 ...]

Trains ``--recipe`` on the shipped MNIST into a temporary folder (training fits the
temperature on its validation split), or takes an existing ``--run`` (calibrated post
hoc with ``mnist-classifier calibrate`` first if it was not). Then scores the 10,000 test images once
and prints a markdown table, one row per temperature (1 = uncalibrated, then the fitted
one): expected calibration error (15 bins) on test and validation, the test NLL, and
per threshold how many wrong answers become "unsure" (top probability below it: what
``predict --min-confidence`` answers) and how many right answers do too.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI does; before torch loads

import argparse
import tempfile
from pathlib import Path

import torch

import mnist_classifier
from machine import describe_machine
from mnist_classifier.data.batches import train_val_split
from mnist_classifier.data.sources import load_dataset
from mnist_classifier.evaluation.calibration import (
    expected_calibration_error,
    probabilities_at,
    temperature_nll,
)
from mnist_classifier.evaluation.scoring import predict_view_logits
from mnist_classifier.models.checkpoint import (
    checkpoint_temperature,
    load_checkpoint,
    resolve_checkpoint_path,
)
from mnist_classifier.models.deployed import deployed_from_checkpoint


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="cnn-fast")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run", type=Path, default=None, help="an existing run or checkpoint")
    parser.add_argument("--threshold", type=float, nargs="+", default=[0.9])
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        if args.run is None:
            run = mnist_classifier.train(
                recipe=args.recipe, seed=args.seed, out=Path(tmp) / "run", log=None
            ).path
            what = f"recipe {args.recipe}, seed {args.seed}, trained on the shipped MNIST"
        else:
            run, what = args.run, f"run {args.run}"
        path = resolve_checkpoint_path(run)
        ckpt = load_checkpoint(path)
        if "calibration" not in ckpt:
            raise SystemExit(f"{path} is not calibrated: run `mnist-classifier calibrate` first")
        fitted = checkpoint_temperature(ckpt)
        config = ckpt.get("config") or {}
        data = load_dataset(config.get("data_dir"))
        _, val = train_val_split(
            data.train_images, data.train_labels, config["val_fraction"], config["seed"]
        )
        deployed = deployed_from_checkpoint(ckpt, "cpu")
        deployed.set_temperature(1.0)
        test_logits = predict_view_logits(deployed, data.test_images)
        val_logits = predict_view_logits(deployed, val.images)

    labels = data.test_labels.numpy()
    head = ["temperature", "test ECE", "validation ECE", "test NLL", "test accuracy"]
    for t in args.threshold:
        head += [f"wrong caught < {t:g}", f"right made unsure < {t:g}"]
    rows = []
    for name, t in (("1 (uncalibrated)", 1.0), (f"{fitted:.3f} (fitted on validation)", fitted)):
        probs = probabilities_at(test_logits, t).numpy()
        val_probs = probabilities_at(val_logits, t).numpy()
        conf, right = probs.max(1), probs.argmax(1) == labels
        wrong = int((~right).sum())
        cells = [
            name,
            _pct(expected_calibration_error(probs, labels)),
            _pct(expected_calibration_error(val_probs, val.labels.numpy())),
            f"{temperature_nll(test_logits, data.test_labels, t):.4f}",
            _pct(float(right.mean())),
        ]
        for threshold in args.threshold:
            unsure = conf < threshold
            cells += [
                f"{int((unsure & ~right).sum())} of {wrong}",
                f"{int((unsure & right).sum())} of {int(right.sum())}",
            ]
        rows.append(cells)

    print(f"# {what}; {len(labels):,} test images, {len(val):,} validation images")
    print(f"# machine: {describe_machine()}")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for cells in rows:
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
