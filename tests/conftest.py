"""Shared fixtures: an isolated decode cache, the shipped MNIST, a small real subset,
and small generated MNIST-format datasets."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

# As the CLI does, before torch loads: idle OpenMP threads sleep instead of spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Keep the user's cache untouched: every test session decodes into its own folder.
os.environ.setdefault(
    "MNIST_CLASSIFIER_CACHE_DIR", tempfile.mkdtemp(prefix="mnist-classifier-test-cache-")
)


from mnist_classifier.data.idx import write_idx
from mnist_classifier.data.sources import FILE_STEMS


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests are slow tests too, so ``make test-fast`` (-m "not slow") skips them."""
    for item in items:
        if item.get_closest_marker("browser") is not None:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def mnist():
    """The full shipped MNIST (loaded once per session)."""
    from mnist_classifier.data.sources import load_dataset

    return load_dataset()


@pytest.fixture(scope="session")
def small_mnist(mnist):
    """A small real subset: 3,000 training and 1,000 test images, same normalisation."""
    import dataclasses

    return dataclasses.replace(
        mnist,
        train_images=mnist.train_images[:3000],
        train_labels=mnist.train_labels[:3000],
        test_images=mnist.test_images[:1000],
        test_labels=mnist.test_labels[:1000],
    )


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


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, mnist) -> Path:
    """A small trained run folder shared by the inference tests: cnn-small, 2 epochs on
    6,000 training images (1,500 for validation, 1,000 test images); about 97% accurate."""
    import dataclasses

    import mnist_classifier

    data = dataclasses.replace(
        mnist,
        train_images=mnist.train_images[:7500],
        train_labels=mnist.train_labels[:7500],
        test_images=mnist.test_images[:1000],
        test_labels=mnist.test_labels[:1000],
    )
    out = tmp_path_factory.mktemp("trained") / "run"
    run = mnist_classifier.train(
        out=out, model="cnn-small", epochs=2, threads=2, log=None, dataset=data
    )
    return run.path
