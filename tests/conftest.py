"""Shared test fixtures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mnist_classifier.data.idx import write_idx
from mnist_classifier.data.sources import FILE_STEMS


@pytest.fixture
def make_idx_dataset(tmp_path: Path) -> Callable[..., Path]:
    """Factory: write a small MNIST-format dataset (random 28x28 images, labels cycling 0-9).

    ``make_idx_dataset(folder=None, n_train=50, n_test=20, compress=True, seed=0)``
    returns the folder holding the four standard files.
    """

    def make(
        folder: Path | None = None,
        n_train: int = 50,
        n_test: int = 20,
        compress: bool = True,
        seed: int = 0,
    ) -> Path:
        folder = folder if folder is not None else tmp_path / "idx-data"
        rng = np.random.default_rng(seed)
        for split, n in (("train", n_train), ("test", n_test)):
            img_stem, lbl_stem = FILE_STEMS[split]
            suffix = ".gz" if compress else ""
            images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
            labels = (np.arange(n) % 10).astype(np.uint8)
            write_idx(folder / f"{img_stem}{suffix}", images)
            write_idx(folder / f"{lbl_stem}{suffix}", labels)
        return folder

    return make
