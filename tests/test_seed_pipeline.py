"""The seed-pipeline baseline (benchmarks/seed_pipeline.py) on a small real subset."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "seed_pipeline.py"


@pytest.fixture(scope="module")
def seed_pipeline() -> ModuleType:
    spec = importlib.util.spec_from_file_location("seed_pipeline", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_items_are_to_tensor_then_normalize(seed_pipeline: ModuleType) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    items = seed_pipeline.MnistItems(images, np.array([4, 0, 9]))
    x, label = items[2]
    assert len(items) == 3 and label == 9 and isinstance(label, int)
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    expected = (torch.from_numpy(images[2]).float() / 255 - 0.1307) / 0.3081
    torch.testing.assert_close(x[0], expected)


def test_one_epoch_on_a_small_subset(seed_pipeline: ModuleType) -> None:
    lines: list[str] = []
    threads = torch.get_num_threads()
    try:  # one thread: batches of 32 gain nothing from more, and the CPU is shared
        result = seed_pipeline.run_seed_pipeline(
            epochs=1, seed=0, limit=2000, threads=1, log=lines.append
        )
    finally:
        torch.set_num_threads(threads)
    for key in ("train_seconds", "val_accuracy", "test_accuracy", "images_per_second"):
        assert key in result
    assert result["train_images"] == 1600 and result["val_images"] == 400
    assert result["train_seconds"] > 0 and result["images_per_second"] > 0
    assert result["val_accuracy"] > 0.6 and result["test_accuracy"] > 0.6  # chance is 0.10
    assert len(lines) == 2 and lines[0].startswith("Epoch [1/1]")
    assert "%" in lines[-1] and "test accuracy" in lines[-1]
