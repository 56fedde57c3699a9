"""mnist-classifier: train, evaluate, explain and serve handwritten-digit classifiers on MNIST.

The public API is imported lazily, so that ``import mnist_classifier`` stays
cheap and inference-only paths (ONNX Runtime) need not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_API = {
    "load_dataset": "mnist_classifier.data.sources",
    "Dataset": "mnist_classifier.data.sources",
    "create_model": "mnist_classifier.models.registry",
    "list_models": "mnist_classifier.models.registry",
    "register_model": "mnist_classifier.models.registry",
    "TrainConfig": "mnist_classifier.config",
    "train": "mnist_classifier.training.api",
    "tune": "mnist_classifier.tuning.study",
    "evaluate": "mnist_classifier.evaluation.scoring",
    "Run": "mnist_classifier.training.run",
    "load_checkpoint": "mnist_classifier.models.checkpoint",
    "load_predictor": "mnist_classifier.inference.predictor",
    "MnistClassifierError": "mnist_classifier.errors",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'mnist_classifier' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
