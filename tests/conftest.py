"""Shared fixtures: an isolated decode cache, the shipped MNIST, and a small real subset."""

from __future__ import annotations

import os
import tempfile

import pytest

# Keep the user's cache untouched: every test session decodes into its own folder.
os.environ.setdefault(
    "MNIST_CLASSIFIER_CACHE_DIR", tempfile.mkdtemp(prefix="mnist-classifier-test-cache-")
)


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
