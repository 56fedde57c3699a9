"""In-memory batches: a seeded train/validation split, permutation slices, per-batch normalisation.

No per-item Dataset or DataLoader: a whole split is one uint8 tensor, an epoch
is one random permutation, and a batch is a contiguous slice of the permuted
tensor, converted to float and normalised in one vectorised step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..errors import ConfigError


@dataclass
class Split:
    """Images (N, 28, 28) uint8 and labels (N,) int64, on one device."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str) -> Split:
        return Split(self.images.to(device), self.labels.to(device))

    def subset(self, n: int) -> Split:
        """The first ``n`` items (all of them if ``n`` is larger)."""
        return Split(self.images[:n], self.labels[:n])


def train_val_split(
    images: torch.Tensor, labels: torch.Tensor, val_fraction: float, seed: int
) -> tuple[Split, Split]:
    """Split deterministically by ``seed``: the same seed always gives the same two sets."""
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(
            f"validation fraction must be between 0 and 1 (exclusive), got {val_fraction}"
        )
    n = int(labels.shape[0])
    n_val = round(n * val_fraction)
    if n_val < 1 or n_val >= n:
        raise ConfigError(f"validation fraction {val_fraction} leaves an empty split of {n} items")
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=gen)
    val_idx, train_idx = order[:n_val].sort().values, order[n_val:].sort().values
    return Split(images[train_idx], labels[train_idx]), Split(images[val_idx], labels[val_idx])


def normalize(images: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """uint8 (B, 28, 28) -> float32 (B, 1, 28, 28) with ``(x / 255 - mean) / std``."""
    x = images.to(torch.float32).unsqueeze(1)
    # (x/255 - mean)/std == x * (1/(255*std)) - mean/std, one fused multiply-add.
    return torch.addcmul(
        torch.full((), -mean / std, device=x.device),
        x,
        torch.full((), 1.0 / (255.0 * std), device=x.device),
    )


def iterate_batches(
    split: Split,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (uint8 images, labels) batches: slices of one permutation of the split."""
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    n = len(split)
    if shuffle:
        order = torch.randperm(n, generator=generator).to(split.images.device)
        images, labels = split.images[order], split.labels[order]
    else:
        images, labels = split.images, split.labels
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield images[start : start + batch_size], labels[start : start + batch_size]


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)
