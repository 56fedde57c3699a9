"""Which input gives the best accuracy for digits drawn on the page's pad?

A drawing on the pad is rarely where and how big MNIST's digits are: it may be
small, large, or off to one side. This script stands in for drawings with MNIST
test digits placed on a black 280x280 pad at a random size (35-90% of its height)
and position, and compares what the model sees in three ways:

- ``MNIST 28x28``: the original test image (the reference);
- ``pad squashed to 28x28``: the pad downscaled on the client and sent as JSON
  pixels, used as they are;
- ``pad PNG, server preprocessing``: what the page sends (the pad scaled to 200x200
  in a black 300x300 field, as a PNG) through the server's preprocessing, which finds
  the digit, fits it into 20x20 and centres it by its centre of mass.

    python benchmarks/drawn_input.py RUN_OR_CHECKPOINT [--n 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import io

import numpy as np
from PIL import Image

from mnist_classifier.data.sources import load_dataset
from mnist_classifier.errors import ImageError
from mnist_classifier.inference.predictor import load_predictor
from mnist_classifier.inference.preprocess import to_mnist

PAD = 280  # the page's canvas, pixels
SEND_SIDE, SEND_MARGIN = 300, 50  # what the page sends: the pad scaled into a field with a margin


def place_on_pad(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``digit`` (28x28) cut to its ink, scaled and put at a random place on a black pad."""
    ys, xs = np.nonzero(digit > 30)
    crop = digit[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    scale = rng.uniform(0.35, 0.9) * PAD / crop.shape[0]
    scale = min(scale, 0.95 * PAD / crop.shape[1])
    h, w = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    big = np.asarray(Image.fromarray(crop).resize((w, h), Image.Resampling.BILINEAR))
    pad = np.zeros((PAD, PAD), dtype=np.uint8)
    top, left = rng.integers(0, PAD - h + 1), rng.integers(0, PAD - w + 1)
    pad[top : top + h, left : left + w] = big
    return pad


def as_sent_by_the_page(pad: np.ndarray) -> bytes:
    inner = SEND_SIDE - 2 * SEND_MARGIN
    field = Image.new("L", (SEND_SIDE, SEND_SIDE), 0)
    field.paste(
        Image.fromarray(pad).resize((inner, inner), Image.Resampling.BILINEAR),
        (SEND_MARGIN, SEND_MARGIN),
    )
    buf = io.BytesIO()
    field.save(buf, "PNG")
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT")
    parser.add_argument("--n", type=int, default=2000, help="test digits (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    predictor = load_predictor(args.checkpoint)
    data = load_dataset()
    rng = np.random.default_rng(args.seed)
    picks = rng.choice(len(data.test_labels), size=args.n, replace=False)
    digits = data.test_images.numpy()[picks]
    labels = data.test_labels.numpy()[picks]

    squashed, served, no_digit = [], [], 0
    for digit in digits:
        pad = place_on_pad(digit, rng)
        squashed.append(np.asarray(Image.fromarray(pad).resize((28, 28), Image.Resampling.BOX)))
        try:
            served.append(to_mnist(as_sent_by_the_page(pad)))
        except ImageError:
            no_digit += 1
            served.append(np.zeros((28, 28), dtype=np.uint8))  # counted as wrong

    print(
        f"model {predictor.model_name}, {args.n} test digits placed on a {PAD}x{PAD} pad (seed {args.seed})"
    )
    print(f"{'input the model sees':<34} {'accuracy':>9}")
    for name, images in (
        ("MNIST 28x28 (reference)", digits),
        ("pad squashed to 28x28", np.stack(squashed)),
        ("pad PNG, server preprocessing", np.stack(served)),
    ):
        accuracy = float((predictor.predict_mnist(images).argmax(1) == labels).mean())
        print(f"{name:<34} {accuracy * 100:>8.2f}%")
    print(f"'no digit found' on the page's PNG: {no_digit}")


if __name__ == "__main__":
    main()
