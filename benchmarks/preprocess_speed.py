"""Time of preprocessing (decode included) per image, beside the model's own time, on one thread.

    python benchmarks/preprocess_speed.py [--repeats 60] [--profile KIND]
    python benchmarks/preprocess_speed.py --check [--model RUN_OR_CHECKPOINT]
    python benchmarks/preprocess_speed.py --save-reference
    python benchmarks/preprocess_speed.py --against OLD_SRC [--repeats 30]

Three inputs, each as the encoded bytes a client sends (so the decode is timed too):

- ``drawing``: a digit drawn on the web page's pad (white, 22 px brush, on a black
  280x280 canvas) as the page sends it: scaled into a black 300x300 field, PNG;
- ``photo 640x480``: dark ink on unevenly lit, noisy paper, JPEG quality 85;
- ``phone 1280x1280``: the same at 1280x1280 (a phone photo, already downscaled), JPEG.

It prints a markdown table of the median milliseconds per image of ``to_mnist`` (decode,
then preprocessing), and of the model alone (cnn-tiny with random weights, batch 1,
PyTorch and, when installed, ONNX Runtime). Everything runs on one thread
(torch.set_num_threads(1), BLAS and OpenMP limited to one thread before numpy loads).
``--profile KIND`` prints where the time of one input goes (cProfile, by own time).
``--against OLD_SRC`` (the ``src`` folder of another checkout, e.g. from
``git worktree add /tmp/old v0.1 && ... --against /tmp/old/src``) loads that version's
preprocessing beside this one in the same process and times the two interleaved, run
for run, so that a change's before/after figures share the machine's load.

``--check`` runs preprocessing over the labelled set of benchmarks/preprocess_suite.py
and compares the 28x28 outputs with the saved ones of an earlier version
(benchmarks/preprocess_reference.npz): mean absolute difference per kind of image,
how many are identical, and, with ``--model``, the accuracy of that model on the old
and on the new outputs. ``--save-reference`` overwrites the saved outputs with the
current ones.
"""

from __future__ import annotations

import os

# numpy's BLAS and OpenMP on one thread: set before numpy is imported.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import cProfile
import importlib
import importlib.util
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from machine import describe_machine
from mnist_classifier.errors import ImageError
from mnist_classifier.inference.preprocess import to_mnist
from preprocess_suite import REFERENCE, encoded, suite

from drawn_input import as_sent_by_the_page  # isort: skip
from handwriting import render_digit  # isort: skip  (in tests/, which the suite puts on the path)


def drawing(rng: np.random.Generator) -> bytes:
    """A digit as the page sends it: white strokes on the black pad, in a 300x300 PNG."""
    ink = render_digit(3, rng, 190, 22.0)
    pad = np.zeros((280, 280), dtype=np.float32)
    h, w = ink.shape
    top, left = (280 - h) // 2, (280 - w) // 2
    pad[top : top + h, left : left + w] = ink
    return as_sent_by_the_page((pad * 255 + 0.5).astype(np.uint8))


def photo(rng: np.random.Generator, width: int, height: int) -> bytes:
    """Dark ink on off-white paper with a lighting gradient, a shadow and noise, as a JPEG."""
    ink = render_digit(7, rng, int(0.55 * height), max(3.0, height / 40))
    field = np.zeros((height, width), dtype=np.float32)
    h, w = ink.shape
    top, left = int(0.25 * height), int(0.35 * width)
    field[top : top + h, left : left + w] = ink[: height - top, : width - left]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    light = 1.0 - 0.3 * np.clip(xs / width * 0.8 + ys / height * 0.4, 0.0, 1.0)
    shadow = 1.0 - 0.15 * np.exp(
        -((ys - 0.7 * height) ** 2 + (xs - 0.2 * width) ** 2) / (0.3 * width) ** 2
    )
    paper = 0.9 * light * shadow
    tint = np.array([1.0, 0.97, 0.92], dtype=np.float32)
    ink_colour = np.array([0.12, 0.12, 0.25], dtype=np.float32)
    cover = field[..., None]
    rgb = paper[..., None] * (tint * (1 - cover) + ink_colour * cover)
    rgb += rng.normal(0, 0.02, rgb.shape).astype(np.float32)
    image = Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))
    return encoded(image, "JPEG", quality=85)


def inputs() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    return {
        "drawing 300x300 PNG": drawing(rng),
        "photo 640x480 JPEG": photo(rng, 640, 480),
        "phone 1280x1280 JPEG": photo(rng, 1280, 1280),
    }


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def model_times(repeats: int) -> dict[str, float]:
    from mnist_classifier.inference.predictor import load_predictor
    from mnist_classifier.models.checkpoint import build_checkpoint, save_checkpoint
    from mnist_classifier.models.registry import create_model

    try:
        from mnist_classifier.inference.onnx import export_onnx
    except ImportError:  # the onnx extra is not installed
        export_onnx = None  # type: ignore[assignment]
    one = np.random.default_rng(0).integers(0, 256, size=(1, 28, 28), dtype=np.uint8)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        model = create_model("cnn-tiny").eval()
        ckpt = build_checkpoint(
            model, model_name="cnn-tiny", model_kwargs={}, mean=0.1307, std=0.3081, config={}
        )
        path = save_checkpoint(Path(tmp) / "cnn-tiny.pt", ckpt)
        predictor = load_predictor(path, backend="torch", device="cpu")
        out["torch"] = median_ms(lambda: predictor.predict_mnist(one), 10 * repeats)
        if export_onnx is not None:
            onnx = load_predictor(export_onnx(path, Path(tmp) / "m.onnx"), backend="onnx")
            out["onnx"] = median_ms(lambda: onnx.predict_mnist(one), 10 * repeats)
    return out


def speed(repeats: int) -> None:
    cases = inputs()
    print(f"# one thread; median of {repeats} runs per input\n# machine: {describe_machine()}")
    models = model_times(repeats)
    model_cols = "".join(f" model alone, {b} (ms) |" for b in models)
    print(f"| input | bytes | preprocessing incl. decode (ms) |{model_cols}")
    print("|---|---:|---:|" + "---:|" * len(models))
    for name, data in cases.items():
        ms = median_ms(lambda d=data: to_mnist(d), repeats)  # type: ignore[misc]
        cols = "".join(f" {t:.3f} |" for t in models.values())
        print(f"| {name} | {len(data):,} | {ms:.2f} |{cols}", flush=True)


def load_other(src: Path) -> Callable[[bytes], np.ndarray]:
    """``to_mnist`` of the package in another ``src`` folder, imported under another name."""
    root = src / "mnist_classifier"
    if not (root / "__init__.py").is_file():
        raise SystemExit(f"{src}: no mnist_classifier package in it")
    spec = importlib.util.spec_from_file_location(
        "mnist_other", root / "__init__.py", submodule_search_locations=[str(root)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["mnist_other"] = module
    spec.loader.exec_module(module)
    other: Callable[[bytes], np.ndarray] = importlib.import_module(
        "mnist_other.inference.preprocess"
    ).to_mnist
    return other


def against(src: Path, repeats: int) -> None:
    """Median ms per input of another version's preprocessing and this one's, interleaved."""
    other = load_other(src)
    print(
        f"# one thread; median of {repeats} interleaved runs per input and version\n"
        f"# before: {src}\n# machine: {describe_machine()}"
    )
    print("| input | before (ms) | now (ms) | speed-up |")
    print("|---|---:|---:|---:|")
    for name, data in inputs().items():
        for _ in range(3):
            other(data)
            to_mnist(data)
        times: tuple[list[float], list[float]] = ([], [])
        for _ in range(repeats):
            for fn, out in ((other, times[0]), (to_mnist, times[1])):
                start = time.perf_counter()
                fn(data)
                out.append(time.perf_counter() - start)
        old, new = (statistics.median(t) * 1e3 for t in times)
        print(f"| {name} | {old:.2f} | {new:.2f} | {old / new:.1f}x |", flush=True)


def profile(kind: str, repeats: int) -> None:
    data = next(v for k, v in inputs().items() if k.startswith(kind))
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeats):
        to_mnist(data)
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(25)


def run_suite() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(outputs (N, 28, 28) uint8, labels, kinds, found) over the labelled set."""
    from mnist_classifier.data.sources import load_dataset

    data = load_dataset()
    images, labels, kinds, found = [], [], [], []
    for kind, label, blob in suite(data.test_images.numpy(), data.test_labels.numpy()):
        try:
            images.append(to_mnist(blob))
            found.append(True)
        except ImageError:
            images.append(np.zeros((28, 28), dtype=np.uint8))
            found.append(False)
        labels.append(label)
        kinds.append(kind)
    return np.stack(images), np.array(labels), np.array(kinds), np.array(found)


def check(model: str | None) -> None:
    saved = np.load(REFERENCE)
    new, labels, kinds, found = run_suite()
    if not np.array_equal(labels, saved["labels"]) or not np.array_equal(kinds, saved["kinds"]):
        raise SystemExit(f"{REFERENCE.name} was made from another set of images; regenerate it")
    old = saved["images"]
    predictor = None
    if model is not None:
        from mnist_classifier.inference.predictor import load_predictor

        predictor = load_predictor(model)
    header = "| images | n | identical | mean abs diff (0-255) | max abs diff |"
    if predictor is not None:
        header += " accuracy, earlier outputs | accuracy, now |"
    print(header)
    print("|---|---:|---:|---:|---:|" + ("---:|---:|" if predictor is not None else ""))
    groups = [*dict.fromkeys(kinds.tolist()), "all"]
    for group in groups:
        rows = np.ones(len(kinds), bool) if group == "all" else kinds == group
        diff = np.abs(new[rows].astype(np.int16) - old[rows].astype(np.int16))
        same = int((diff.reshape(int(rows.sum()), -1).max(axis=1) == 0).sum())
        line = f"| {group} | {int(rows.sum())} | {same} | {diff.mean():.3f} | {int(diff.max())} |"
        if predictor is not None:
            hits = []
            for images, ok in ((old[rows], saved["found"][rows]), (new[rows], found[rows])):
                guess = predictor.predict_mnist(images).argmax(1)
                hits.append(float(((guess == labels[rows]) & ok).mean()))
            line += f" {hits[0] * 100:.2f}% | {hits[1] * 100:.2f}% |"
        print(line, flush=True)
    print(f"no digit found: earlier {int((~saved['found']).sum())}, now {int((~found).sum())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=60, help="timed runs per input")
    parser.add_argument(
        "--profile", metavar="KIND", help="profile one input: drawing, photo, phone"
    )
    parser.add_argument("--check", action="store_true", help="compare outputs with the saved ones")
    parser.add_argument("--model", help="with --check: also compare accuracy with this model")
    parser.add_argument("--save-reference", action="store_true", help="save the current outputs")
    parser.add_argument(
        "--against", metavar="OLD_SRC", type=Path, help="time another src folder's version too"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.save_reference:
        images, labels, kinds, found = run_suite()
        np.savez_compressed(REFERENCE, images=images, labels=labels, kinds=kinds, found=found)
        print(f"saved {len(images)} outputs to {REFERENCE}")
    elif args.check:
        check(args.model)
    elif args.against is not None:
        against(args.against, args.repeats)
    elif args.profile:
        profile(args.profile, args.repeats)
    else:
        speed(args.repeats)


if __name__ == "__main__":
    main()
