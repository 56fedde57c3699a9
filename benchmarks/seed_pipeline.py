"""The original beginner projects' training pipeline, rebuilt faithfully as a baseline.

What the seed projects did, step by step, with torchvision replaced by the same
operations written out (torchvision is not a dependency of this package):

- a map-style ``Dataset`` whose ``__getitem__`` turns one uint8 28x28 array into a
  ``PIL.Image`` (mode "L"), converts it to a float tensor (1, 28, 28) in [0, 1] the
  way ``ToTensor()`` does, and normalises it with ``Normalize((0.1307,), (0.3081,))``,
  one image per call;
- ``random_split`` of the 60,000 training images 80/20 into train/validation;
- ``DataLoader(batch_size=32, shuffle=True)`` for training, ``shuffle=False`` for
  validation and test, ``num_workers=0`` (the default);
- the MLP 784-128-64-10 with ReLU and dropout 0.2, Adam (lr 1e-3, weight decay
  1e-4), cross-entropy, 10 epochs;
- per epoch a training loop (``loss.item()`` and ``.item()`` accuracy every step)
  and a validation loop under ``torch.no_grad()``, printing losses and accuracies;
  then the test accuracy.

Usage::

    python benchmarks/seed_pipeline.py [--epochs 10] [--seed 0] [--threads N] [--limit N]

prints one line per epoch, then one JSON line. ``train_seconds`` is the wall time
of all epochs (training and per-epoch validation), excluding dataset loading and
the final test pass; ``images_per_second`` is training images processed per
second of that time. Accuracies in the returned dict are fractions (0.9771).
Importable: :func:`run_seed_pipeline` returns the same dict.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI does; before torch loads

import argparse
import json
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, random_split

from mnist_classifier.data.sources import Dataset as MnistData
from mnist_classifier.data.sources import load_dataset
from mnist_classifier.runtime import set_threads

MEAN, STD = 0.1307, 0.3081  # the seed projects' Normalize((0.1307,), (0.3081,))
BATCH_SIZE = 32
VAL_FRACTION = 0.2


def _fromarray_accepts_mode() -> bool:
    """Whether this Pillow still takes ``Image.fromarray(..., mode="L")`` without a warning.

    torchvision's MNIST passes ``mode="L"``; Pillow 11.3 deprecated the argument for
    a while (later releases accept it again for compatible modes). Where it warns
    or is refused, the mode is omitted: a uint8 2-D array gives an "L" image anyway.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            Image.fromarray(np.zeros((1, 1), dtype=np.uint8), mode="L")
        except (DeprecationWarning, TypeError, ValueError):
            return False
    return True


FROMARRAY_MODE = _fromarray_accepts_mode()


def to_tensor(image: Image.Image) -> torch.Tensor:
    """A grayscale PIL image -> float32 tensor (1, H, W) in [0, 1], as torchvision's ToTensor."""
    array = np.array(image, np.uint8, copy=True)  # (H, W)
    t = torch.from_numpy(array).view(image.size[1], image.size[0], 1)  # (H, W, C)
    return t.permute(2, 0, 1).contiguous().to(torch.float32).div(255)  # (C, H, W)


def normalize(t: torch.Tensor) -> torch.Tensor:
    """``(t - mean) / std`` per channel on a copy, as torchvision's Normalize (inplace=False)."""
    t = t.clone()
    mean = torch.as_tensor((MEAN,), dtype=t.dtype, device=t.device)
    std = torch.as_tensor((STD,), dtype=t.dtype, device=t.device)
    if (std == 0).any():
        raise ValueError("std evaluated to zero, leading to division by zero")
    return t.sub_(mean.view(-1, 1, 1)).div_(std.view(-1, 1, 1))


class MnistItems(Dataset[tuple[torch.Tensor, int]]):
    """MNIST as the seed projects saw it: one PIL image per ``__getitem__``, then transforms."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images = images  # (N, 28, 28) uint8
        self.labels = labels  # (N,) int64

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if FROMARRAY_MODE:
            image = Image.fromarray(self.images[index], mode="L")
        else:
            image = Image.fromarray(self.images[index])
        return normalize(to_tensor(image)), int(self.labels[index])


class SeedMLP(nn.Module):
    """The seed projects' network: 784-128-64-10, ReLU, dropout 0.2."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(),  # (B, 1, 28, 28) -> (B, 784)
            nn.Linear(784, 128),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(64, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # logits (B, 10)


def _evaluate(model: nn.Module, loader: DataLoader, criterion: nn.Module) -> tuple[float, float]:
    """Mean batch loss and accuracy (fraction) over ``loader``, the seed projects' way."""
    model.eval()
    running_loss, correct, total = 0.0, 0, 0
    with torch.no_grad():
        for images, labels in loader:
            outputs = model(images)
            loss = criterion(outputs, labels)
            running_loss += loss.item()
            predicted = outputs.argmax(1)
            total += labels.size(0)
            correct += (predicted == labels).sum().item()
    return running_loss / len(loader), correct / total


def run_seed_pipeline(
    epochs: int = 10,
    seed: int = 0,
    limit: int | None = None,
    *,
    threads: int | None = None,
    dataset: MnistData | None = None,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Train and test the seed recipe; return timings and accuracies (fractions).

    ``limit`` keeps only the first N training images (before the 80/20 split) and
    the first N test images, for quick runs. ``dataset`` reuses data already
    loaded. ``log`` receives the per-epoch lines (None: silent).
    """
    say = log or (lambda _line: None)
    set_threads(threads)
    data = dataset if dataset is not None else load_dataset()
    train_images, train_labels = data.train_images.numpy(), data.train_labels.numpy()
    test_images, test_labels = data.test_images.numpy(), data.test_labels.numpy()
    if limit:
        train_images, train_labels = train_images[:limit], train_labels[:limit]
        test_images, test_labels = test_images[:limit], test_labels[:limit]

    full_train = MnistItems(train_images, train_labels)
    test_set = MnistItems(test_images, test_labels)
    n_train = int((1 - VAL_FRACTION) * len(full_train))
    train_set, val_set = random_split(
        full_train,
        [n_train, len(full_train) - n_train],
        generator=torch.Generator().manual_seed(seed),
    )
    torch.manual_seed(seed)  # model initialisation and the loader's shuffling
    train_loader = DataLoader(train_set, batch_size=BATCH_SIZE, shuffle=True, num_workers=0)
    val_loader = DataLoader(val_set, batch_size=BATCH_SIZE, shuffle=False, num_workers=0)
    test_loader = DataLoader(test_set, batch_size=BATCH_SIZE, shuffle=False, num_workers=0)

    model = SeedMLP()
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)

    history: list[dict[str, float]] = []
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        running_loss, correct, total = 0.0, 0, 0
        for images, labels in train_loader:
            optimizer.zero_grad()
            outputs = model(images)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            predicted = outputs.argmax(1)
            total += labels.size(0)
            correct += (predicted == labels).sum().item()
        train_loss, train_acc = running_loss / len(train_loader), correct / total
        val_loss, val_acc = _evaluate(model, val_loader, criterion)
        history.append(
            {
                "train_loss": train_loss,
                "train_acc": train_acc,
                "val_loss": val_loss,
                "val_acc": val_acc,
            }
        )
        say(
            f"Epoch [{epoch + 1}/{epochs}] train loss {train_loss:.4f}, "
            f"train acc {100 * train_acc:.2f}% | val loss {val_loss:.4f}, "
            f"val acc {100 * val_acc:.2f}% | {time.perf_counter() - start:.1f}s"
        )
    train_seconds = time.perf_counter() - start

    test_loss, test_acc = _evaluate(model, test_loader, criterion)
    say(f"Test loss {test_loss:.4f}, test accuracy {100 * test_acc:.2f}%")
    return {
        "train_seconds": train_seconds,
        "val_accuracy": history[-1]["val_acc"] if history else float("nan"),
        "test_accuracy": test_acc,
        "images_per_second": epochs * len(train_set) / train_seconds,
        "test_loss": test_loss,
        "epochs": epochs,
        "seed": seed,
        "threads": torch.get_num_threads(),
        "train_images": len(train_set),
        "val_images": len(val_set),
        "test_images": len(test_set),
        "pil_mode_argument": FROMARRAY_MODE,
        "history": history,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument(
        "--limit", type=int, default=0, help="use only the first N train and test images"
    )
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.limit < 0 or args.threads < 0:
        parser.error("--epochs must be at least 1; --limit and --threads at least 0")
    result = run_seed_pipeline(args.epochs, args.seed, args.limit or None, threads=args.threads)
    result.pop("history")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
