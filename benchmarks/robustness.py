"""Does it read users' digits? MNIST test digits turned into what users send, per model.

Each variant (see ``benchmarks/robustness_variants.py``) is built from the same MNIST
*test* digits: binarised; binary 16x16 and 32x32 bitmaps scaled up (blocky); stretched
to fill the box; thick strokes (up to a third of the digit's height) and thin ones; dark
ink on unevenly lit paper as a JPEG; small and off-centre on a large sheet; rotated by
15 degrees; drawn on the web page's pad. Each image is read two ways, "plain resize"
(resize to 28x28, invert a light background, no centring) and "ours" (the package's
preprocessing, as ``predict`` and the server use it), then classified by every model.

Printed: accuracy per variant (columns) per model and reading (rows); how many wrong
answers ``--min-confidence 0.9`` turns into "unsure" (and how many right ones it costs);
the expected calibration error per variant (15 equal-width bins, over the images where
a digit was found).

    python benchmarks/robustness.py --models RUN_OR_CKPT [RUN_OR_CKPT ...] [--limit 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mnist_classifier.data.sources import load_dataset
from mnist_classifier.evaluation.calibration import expected_calibration_error
from mnist_classifier.inference.predictor import load_predictor
from robustness_variants import VARIANTS, build, ours, plain_resize

READINGS = ("plain resize", "ours")
UNSURE_BELOW = 0.9


@dataclass
class Scores:
    """One (model, reading, variant): the predicted class and its probability per digit."""

    predicted: np.ndarray  # (N,) int, -1 where no digit was found
    confidence: np.ndarray  # (N,) float, 0 where no digit was found
    labels: np.ndarray
    probs: np.ndarray  # (N, 10) probabilities (rows where no digit was found unused)
    found: np.ndarray  # (N,) bool

    @property
    def ece(self) -> float:
        """Expected calibration error over the images where a digit was found."""
        return expected_calibration_error(self.probs[self.found], self.labels[self.found])

    @property
    def accuracy(self) -> float:
        return float((self.predicted == self.labels).mean())


def read_variants(
    digits: np.ndarray, seed: int, variants: list[str]
) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """(reading, variant) -> (28x28 images, found mask): each image built and read once."""
    out = {}
    for name in variants:
        images = build(name, digits, seed)
        plain = np.stack([plain_resize(im) for im in images])
        read = [ours(im) for im in images]
        found = np.array([r is not None for r in read])
        pixels = np.stack([r if r is not None else np.zeros((28, 28), np.uint8) for r in read])
        out[("plain resize", name)] = (plain, np.ones(len(images), dtype=bool))
        out[("ours", name)] = (pixels, found)
    return out


def score(predictor, read, labels: np.ndarray) -> dict[tuple[str, str], Scores]:
    scores = {}
    for key, (pixels, found) in read.items():
        probs = predictor.predict_mnist(pixels)
        predicted = np.where(found, probs.argmax(1), -1)
        confidence = np.where(found, probs.max(1), 0.0)
        scores[key] = Scores(predicted, confidence, labels, probs, found)
    return scores


def run(models: list[str], limit: int, seed: int, variants: list[str] | None = None) -> str:
    """The benchmark's markdown report for ``models`` on ``limit`` test digits per variant."""
    variants = variants or list(VARIANTS)
    data = load_dataset()
    rng = np.random.default_rng(seed)
    n = min(limit, len(data.test_labels))
    picks = rng.choice(len(data.test_labels), size=n, replace=False)
    digits = data.test_images.numpy()[picks]
    labels = data.test_labels.numpy()[picks]
    started = time.perf_counter()
    read = read_variants(digits, seed, variants)
    read_seconds = time.perf_counter() - started

    names, results = [], []
    for model in models:
        predictor = load_predictor(model)
        names.append(f"{Path(model).name} ({predictor.model_name})")
        results.append(score(predictor, read, labels))

    lines = [
        f"{n} MNIST test digits per variant (seed {seed}); building and reading the images "
        f"took {read_seconds:.0f} s",
        "",
        "| model | reading | " + " | ".join(variants) + " | suite mean |",
        "| --- | --- | " + " | ".join("---:" for _ in variants) + " | ---: |",
    ]
    suite = [v for v in variants if v != "MNIST"]
    for name, scores in zip(names, results, strict=True):
        for reading in READINGS:
            accs = [scores[(reading, v)].accuracy for v in variants]
            mean = np.mean([scores[(reading, v)].accuracy for v in suite]) if suite else np.nan
            cells = " | ".join(f"{a * 100:.1f}" for a in accs)
            lines.append(f"| {name} | {reading} | {cells} | {mean * 100:.1f} |")

    lines += [
        "",
        f"`--min-confidence {UNSURE_BELOW}` on the suite (all variants but MNIST, read by ours):",
        "",
        "| model | wrong answers | wrong turned unsure | right answers | right turned unsure |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, scores in zip(names, results, strict=True):
        keys = [("ours", v) for v in suite] or [("ours", v) for v in variants]
        predicted = np.concatenate([scores[k].predicted for k in keys])
        confidence = np.concatenate([scores[k].confidence for k in keys])
        truth = np.concatenate([scores[k].labels for k in keys])
        wrong, right = predicted != truth, predicted == truth
        unsure = confidence < UNSURE_BELOW
        lines.append(
            f"| {name} | {int(wrong.sum())} | {int((wrong & unsure).sum())} "
            f"({_pct(wrong & unsure, wrong)}) | {int(right.sum())} | "
            f"{int((right & unsure).sum())} ({_pct(right & unsure, right)}) |"
        )

    lines += [
        "",
        "Expected calibration error (15 bins, read by ours), per variant:",
        "",
        "| model | " + " | ".join(variants) + " |",
        "| --- | " + " | ".join("---:" for _ in variants) + " |",
    ]
    for name, scores in zip(names, results, strict=True):
        cells = []
        for v in variants:
            cells.append(f"{scores[('ours', v)].ece:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pct(part: np.ndarray, whole: np.ndarray) -> str:
    return f"{100 * part.sum() / whole.sum():.0f}%" if whole.sum() else "-"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True, metavar="RUN_OR_CKPT")
    parser.add_argument("--limit", type=int, default=1000, help="digits per variant (1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), help="a subset (default: all)"
    )
    args = parser.parse_args(argv)
    if args.limit < 1:
        parser.error(f"--limit must be at least 1, got {args.limit}")
    print(run(args.models, args.limit, args.seed, args.variants))


if __name__ == "__main__":
    main()
