"""How much augmentation costs per batch, next to a model's forward + backward on the same batch.

Times each augmentation recipe on one (batch, 1, 28, 28) batch of real MNIST
digits, and, for scale, a training step's forward + backward of the seed MLP
(784-128-64-10) and of a small CNN (three 3x3 conv-bn-relu blocks, 16-32-64
channels). Each row is the median of ``--repeats`` timed runs after warm-up;
every row is measured in the same process, interleaved, so they share the
machine's load.

    python benchmarks/augment_speed.py [--batch 512] [--repeats 30] [--threads N]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI does; before torch loads

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mnist_classifier.data.augment import (
    LIGHT,
    STRONG,
    AugmentConfig,
    augment_batch,
    random_shift,
)
from mnist_classifier.data.sources import load_dataset
from mnist_classifier.models import create_model
from mnist_classifier.runtime import set_threads


def _train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    model.train()

    def step() -> None:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    return step


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    set_threads(args.threads)

    ds = load_dataset()
    x = ds.train_images[: args.batch].to(torch.float32).unsqueeze(1) / 255.0
    y = ds.train_labels[: args.batch]
    g = torch.Generator().manual_seed(0)
    translate_only = AugmentConfig(translate=2)
    rows: dict[str, Callable[[], object]] = {
        "random_shift 2 px (pad + gather)": lambda: random_shift(x, 2, g),
        "augment_batch translate=2 (grid_sample)": lambda: augment_batch(x, translate_only, g),
        "augment_batch LIGHT (affine)": lambda: augment_batch(x, LIGHT, g),
        "augment_batch STRONG (affine + elastic)": lambda: augment_batch(x, STRONG, g),
        "MLP 784-128-64-10 forward + backward": _train_step(
            create_model("mlp-128-64-dropout"), x, y
        ),
        "small CNN 16-32-64 forward + backward": _train_step(create_model("cnn-small"), x, y),
    }
    times: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(3):  # warm-up
        for fn in rows.values():
            fn()
    for _ in range(args.repeats):
        for name, fn in rows.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) * 1000 for name, t in times.items()}
    print(f"batch {args.batch}, {torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"{'what':44} {'ms/batch':>9} {'us/image':>9}")
    for name, ms in medians.items():
        print(f"{name:44} {ms:9.2f} {ms * 1000 / args.batch:9.2f}")
    print(json.dumps({"batch": args.batch, "ms_per_batch": medians}))


if __name__ == "__main__":
    main()
