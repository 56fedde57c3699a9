"""Write the model the package ships (``src/mnist_classifier/models/files/bundled.{pt,onnx}``).

    python scripts/bundle_model.py RUN_DIR_OR_CHECKPOINT [--min-accuracy 0.98] [--check-images 2000]
        [--out-dir DIR]

This script is the one way the bundled files are produced. From a run folder's best
checkpoint (or a checkpoint file) it keeps what inference needs (model name and
arguments, weights, normalisation, class names, config, metrics, package version, and
any other inference field such as a calibration temperature) and drops the training
state (optimizer, schedule, RNG states, history). It then exports that checkpoint to
ONNX (the exporter of ``export --format onnx``, with its parity check), and checks, before
either file is put in place:

- the checkpoint loads with ``torch.load(weights_only=True)`` and by ``load_checkpoint``;
- ONNX Runtime's probabilities match PyTorch's within 1e-5 on the first
  ``--check-images`` MNIST test digits;
- both files are under 2 MB;
- test accuracy on those digits is at least ``--min-accuracy``.

Both files are then written atomically into the package (each one a rename), ONNX first;
``--out-dir`` writes them elsewhere instead (the tests do).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from mnist_classifier.bundled import BUNDLED_ONNX, BUNDLED_PT, MAX_BUNDLED_BYTES
from mnist_classifier.data.sources import load_dataset
from mnist_classifier.errors import MnistClassifierError
from mnist_classifier.fileio import atomic_write_bytes
from mnist_classifier.inference.onnx import PARITY_TOLERANCE, export_onnx
from mnist_classifier.inference.predictor import OnnxPredictor, TorchPredictor
from mnist_classifier.models.checkpoint import (
    load_checkpoint,
    resolve_checkpoint_path,
    save_checkpoint,
)

# Entries a bundled checkpoint does not carry: the training state, and load_checkpoint's path.
DROPPED = ("training", "path")


def stripped(ckpt: dict) -> dict:
    """The checkpoint without its training state (every other entry kept as it is)."""
    out = {k: v for k, v in ckpt.items() if k not in DROPPED}
    out["training"] = None
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", metavar="RUN_DIR_OR_CHECKPOINT")
    parser.add_argument("--min-accuracy", type=float, default=0.98)
    parser.add_argument("--check-images", type=int, default=2000)
    parser.add_argument("--out-dir", type=Path, default=BUNDLED_PT.parent)
    args = parser.parse_args(argv)
    try:
        return bundle(args.run, args.min_accuracy, args.check_images, args.out_dir)
    except (MnistClassifierError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def bundle(run: str, min_accuracy: float, check_images: int, out_dir: Path) -> int:
    source = resolve_checkpoint_path(run)
    ckpt = stripped(load_checkpoint(source))
    with tempfile.TemporaryDirectory(prefix="bundle-model-") as tmp:
        pt = Path(tmp) / BUNDLED_PT.name
        onnx = Path(tmp) / BUNDLED_ONNX.name
        save_checkpoint(pt, ckpt)
        torch.load(pt, map_location="cpu", weights_only=True)  # raises if not plain data
        export_onnx(pt, onnx, log=print)
        pt_bytes, onnx_bytes = pt.read_bytes(), onnx.read_bytes()

        for path, size in ((pt, len(pt_bytes)), (onnx, len(onnx_bytes))):
            if size >= MAX_BUNDLED_BYTES:
                raise ValueError(f"{path.name} is {size} bytes, over {MAX_BUNDLED_BYTES}")

        data = load_dataset()
        images = data.test_images[:check_images].numpy()
        labels = data.test_labels[:check_images].numpy()
        torch_probs = TorchPredictor(load_checkpoint(pt), "cpu").predict_mnist(images)
        onnx_probs = OnnxPredictor(onnx, name=str(onnx), device="cpu").predict_mnist(images)
    diff = float(np.abs(torch_probs - onnx_probs).max())
    if not diff <= PARITY_TOLERANCE:
        raise ValueError(f"ONNX and PyTorch differ by {diff:.2e} > {PARITY_TOLERANCE:g}")
    accuracy = float((torch_probs.argmax(1) == labels).mean())
    if accuracy < min_accuracy:
        raise ValueError(
            f"accuracy {accuracy:.4f} on {len(labels)} test digits is below {min_accuracy}"
        )

    out_dir.mkdir(parents=True, exist_ok=True)
    out_pt, out_onnx = out_dir / BUNDLED_PT.name, out_dir / BUNDLED_ONNX.name
    atomic_write_bytes(out_onnx, onnx_bytes)
    atomic_write_bytes(out_pt, pt_bytes)
    recipe = (ckpt.get("config") or {}).get("recipe")
    print(
        f"bundled {ckpt['model']['name']} (recipe {recipe}) from {source}: "
        f"{out_pt} {len(pt_bytes)} bytes, {out_onnx} {len(onnx_bytes)} bytes; "
        f"accuracy {accuracy:.4f} on {len(labels)} test digits; "
        f"ONNX vs PyTorch max difference {diff:.1e}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
