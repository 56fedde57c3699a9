"""Inference speed of every registered model through PyTorch eager and ONNX Runtime.

    python benchmarks/inference.py [--seconds 2] [--models cnn-tiny mlp-128 ...] [--threads N]

For each model (random weights: speed does not depend on them) it prints images/s at
batch 1 and batch 1024, and the batch-1 latency (median and p99), for the PyTorch
predictor and, when the ONNX extra is installed, the exported ONNX model. Inputs are
uint8 28x28 images; the timing covers normalisation and softmax, as a user sees it.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI does; before torch loads

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from machine import describe_machine
from mnist_classifier.inference.predictor import load_predictor
from mnist_classifier.models.checkpoint import build_checkpoint, save_checkpoint
from mnist_classifier.models.registry import count_parameters, create_model, list_models


def timed(fn: Callable[[], object], seconds: float) -> list[float]:
    """Per-call durations of ``fn`` for about ``seconds`` after a short warm-up."""
    for _ in range(3):
        fn()
    durations: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(durations) < 5:
        start = time.perf_counter()
        fn()
        durations.append(time.perf_counter() - start)
    return durations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per measurement")
    parser.add_argument("--models", nargs="+", default=list_models())
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        from mnist_classifier.inference.onnx import export_onnx
    except ImportError:  # the onnx extra is not installed
        export_onnx = None  # type: ignore[assignment]
    rng = np.random.default_rng(0)
    one = rng.integers(0, 256, size=(1, 28, 28), dtype=np.uint8)
    many = rng.integers(0, 256, size=(1024, 28, 28), dtype=np.uint8)
    print(
        f"# {torch.get_num_threads()} threads; {args.seconds:.0f} s per measurement\n"
        f"# machine: {describe_machine()}"
    )
    print(
        "| model | parameters | backend | batch 1 img/s | batch 1 p50 ms | batch 1 p99 ms | batch 1024 img/s |"
    )
    print("|---|---:|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            torch.manual_seed(0)
            model = create_model(name).eval()
            ckpt = build_checkpoint(
                model, model_name=name, model_kwargs={}, mean=0.1307, std=0.3081, config={}
            )
            path = save_checkpoint(Path(tmp) / f"{name}.pt", ckpt)
            predictors = {"torch": load_predictor(path, backend="torch", device="cpu")}
            if export_onnx is not None:
                onnx_path = export_onnx(path, Path(tmp) / f"{name}.onnx")
                predictors["onnx"] = load_predictor(onnx_path, backend="onnx", device="cpu")
            for backend, predictor in predictors.items():
                single = timed(lambda p=predictor: p.predict_mnist(one), args.seconds)
                batch = timed(lambda p=predictor: p.predict_mnist(many), args.seconds)
                p50 = statistics.median(single) * 1e3
                p99 = float(np.percentile(single, 99)) * 1e3
                print(
                    f"| {name} | {count_parameters(model):,} | {backend} | "
                    f"{1 / statistics.median(single):,.0f} | {p50:.3f} | {p99:.3f} | "
                    f"{1024 / statistics.median(batch):,.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
