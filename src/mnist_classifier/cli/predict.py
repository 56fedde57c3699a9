"""``mnist-classifier predict | export``: read digits in image files, export a model."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.format import CLASS_NAMES
from ..errors import ConfigError
from ..inference import EXPORT_FORMATS
from ..run_folder import RunFolder
from .completion import complete_path
from .options import add_backend, add_device, add_model, add_quiet, add_threads

if TYPE_CHECKING:
    from ..inference.number import NumberReading
    from ..inference.predictor import Prediction

MODEL_EXTENSIONS = (".pt", ".onnx")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def register(subparsers: Any) -> None:
    predict = subparsers.add_parser(
        "predict",
        help="read the digit in image files (photos, scans, drawings)",
        description="Predict the digit in each image. PATH may be files or folders (searched "
        f"recursively for {', '.join(e[1:] for e in IMAGE_EXTENSIONS)}). One line per image on "
        "stdout (with --json, one JSON object per image: JSON Lines); an image that cannot be "
        "read is reported on stderr and the others go on. Exit code 0 when every image was "
        "read, 1 otherwise.",
    )
    complete_path(
        predict.add_argument(
            "paths",
            metavar="PATH",
            nargs="+",
            help="image files or folders; the first may be the model instead (see above)",
        )
    )
    add_model(predict)
    predict.add_argument(
        "--top-k", type=_top_k, default=3, metavar="K", help="show the K most likely digits (3)"
    )
    predict.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per image on stdout (JSON Lines): name, digit (null when unsure "
        "or failed), confidence, probabilities, top_k, error",
    )
    predict.add_argument("--csv", metavar="OUT.csv", help="also write the results as CSV")
    predict.add_argument(
        "--explain",
        metavar="DIR",
        help="save, per image, a PNG of the image next to the 28x28 input the model saw",
    )
    predict.add_argument(
        "--multi",
        action="store_true",
        help="read a row of digits in each image (a zip code, a year) as one number; an unsure "
        "digit shows as '?' (without --multi, an image with several digits is refused)",
    )
    add_backend(predict)
    predict.add_argument(
        "--min-confidence",
        type=_probability,
        default=0.0,
        metavar="P",
        help="report 'unsure' when the top probability is below P (0 to 1, default 0)",
    )
    add_device(predict)
    add_threads(predict, default=None, default_text="one per core")
    add_quiet(predict, "summary line")
    predict.set_defaults(func=cmd_predict)

    export = subparsers.add_parser(
        "export",
        help="export a model to ONNX or TorchScript (checked against PyTorch)",
        description="Write a checkpoint as ONNX or TorchScript. The file takes float32 pixels "
        "(N, 1, 28, 28) in 0..255 and returns probabilities (N, 10); the normalisation is inside. "
        "The export is compared with PyTorch on MNIST test images before it is kept.",
    )
    complete_path(export.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT"))
    export.add_argument("--format", choices=EXPORT_FORMATS, default=EXPORT_FORMATS[0])
    export.add_argument("--out", metavar="FILE", required=True, help="the file to write")
    export.set_defaults(func=cmd_export)


def _top_k(text: str) -> int:
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 1 to 10, got {text!r}"
        ) from None
    if not 1 <= k <= 10:
        raise argparse.ArgumentTypeError(f"must be from 1 to 10, got {k}")
    return k


def _probability(text: str) -> float:
    try:
        p = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text!r}") from None
    if not 0.0 <= p <= 1.0:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {text}")
    return p


# ---------------------------------------------------------------------------- predict


def collect_images(paths: list[str]) -> list[tuple[str, str | None]]:
    """(path, error) per input: files as given, folders expanded to their images (sorted).

    ``error`` is None for a file to read; a missing path or a folder without images
    gives one entry with its error message, so it is reported like an unreadable file.
    """
    entries: list[tuple[str, str | None]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = [
                os.path.join(folder, name)
                for folder, dirs, names in _walk(path)
                for name in names
                if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")
            ]
            if not found:
                kinds = ", ".join(e[1:] for e in IMAGE_EXTENSIONS)
                entries.append((raw, f"{raw}: no images ({kinds}) in this folder"))
            entries.extend((name, None) for name in found)
        elif path.exists():
            entries.append((raw, None))
        else:
            entries.append((raw, f"{raw}: no such file or folder"))
    return entries


def _walk(root: Path) -> list[tuple[str, list[str], list[str]]]:
    """os.walk in sorted order, skipping hidden folders."""
    out = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.append((folder, dirs, sorted(names)))
    return out


def split_model_and_images(model: str | None, paths: list[str]) -> tuple[str | None, list[str]]:
    """(the model, the images) of ``predict [--model M] PATH...``; None means the bundled model.

    Without ``--model`` the first PATH is the model when it is a ``.pt`` or ``.onnx`` file, a
    run folder, or (with more paths after it) a path that does not exist and has no image
    extension, so a mistyped run folder is one error line rather than an image that failed.
    """
    if model is not None:
        return model, paths
    first = Path(paths[0])
    if first.is_dir():
        is_model = RunFolder(first).holds_run()
    elif first.suffix.lower() in MODEL_EXTENSIONS:
        is_model = True
    else:
        is_model = (
            not first.exists() and len(paths) > 1 and first.suffix.lower() not in IMAGE_EXTENSIONS
        )
    if not is_model:
        return None, paths
    if len(paths) == 1:
        raise ConfigError(
            f"{paths[0]}: is a model; give the images to read after it "
            "(or read with the bundled model: mnist-classifier predict IMAGE...)"
        )
    return paths[0], paths[1:]


def cmd_predict(args: argparse.Namespace) -> int:
    from ..inference.predictor import Prediction, load_predictor

    model, paths = split_model_and_images(args.model, args.paths)
    predictor = load_predictor(model, backend=args.backend, device=args.device)
    if predictor.backend == "torch" and args.threads:
        from ..runtime import set_threads

        set_threads(args.threads)
    entries = collect_images(paths)
    if args.multi:
        return _predict_numbers(args, predictor, entries)
    readable = [name for name, error in entries if error is None]
    found = iter(predictor.predict(readable, min_confidence=args.min_confidence))
    results = [
        next(found) if error is None else Prediction.failed(name, error) for name, error in entries
    ]
    width = min(max((len(p.name) for p in results if p.ok), default=0), 60)
    for p in results:
        if args.json:
            print(json_line(p, args.top_k, predictor.label))
        elif p.ok:
            print(format_line(p, args.top_k, width))
        if not p.ok:
            print(f"error: {printable(p.error or '')}", file=sys.stderr)
    if args.csv:
        write_csv(args.csv, results)
    if args.explain:
        from ..inference.explain import write_explanations

        written = write_explanations(args.explain, results, args.top_k)
        if not args.quiet:
            print(f"explanations: {written} PNG files in {args.explain}", file=sys.stderr)
    failed = sum(1 for p in results if not p.ok)
    if (len(results) > 1 or failed) and not args.quiet:
        unsure = sum(1 for p in results if p.ok and p.digit is None)
        print(
            f"{len(results)} images: {len(results) - failed - unsure} predicted, "
            f"{unsure} unsure, {failed} failed",
            file=sys.stderr,
        )
    return 1 if failed else 0


def _predict_numbers(
    args: argparse.Namespace, predictor: Any, entries: list[tuple[str, str | None]]
) -> int:
    """``predict --multi``: one number per image (``name  90210  confidences ...``)."""
    from ..errors import ConfigError
    from ..inference.number import NumberReading

    if args.explain:
        raise ConfigError("--explain does not work with --multi")
    readings = [
        predictor.read_number(name, min_confidence=args.min_confidence)
        if error is None
        else NumberReading.failed(name, error)
        for name, error in entries
    ]
    width = min(max((len(r.name) for r in readings if r.ok), default=0), 60)
    for r in readings:
        if args.json:
            print(json.dumps(r.to_dict()))
        elif r.ok:
            print(format_number_line(r, width))
        if not r.ok:
            print(f"error: {printable(r.error or '')}", file=sys.stderr)
    if args.csv:
        write_numbers_csv(args.csv, readings)
    failed = sum(1 for r in readings if not r.ok)
    if (len(readings) > 1 or failed) and not args.quiet:
        unsure = sum(1 for r in readings if r.ok and not r.complete)
        print(
            f"{len(readings)} images: {len(readings) - failed - unsure} read, "
            f"{unsure} with unsure digits, {failed} failed",
            file=sys.stderr,
        )
    return 1 if failed else 0


def format_number_line(reading: NumberReading, width: int = 0) -> str:
    """``file  number  confidences: p1 p2 ...`` (one probability per digit, left to right)."""
    from ..evaluation.metrics import percent

    confidences = " ".join(percent(p.confidence) for p in reading.digits)
    return f"{printable(reading.name):<{width}}  {reading.text:>6}  confidences: {confidences}"


def write_numbers_csv(path: str | os.PathLike[str], readings: list[NumberReading]) -> None:
    """Columns file, number, digits, confidences, error (``predict --multi --csv``).

    ``number`` is empty unless every digit was read; ``digits`` shows unsure ones as ``?``;
    ``confidences`` are fractions separated by spaces, left to right.
    """
    from ..fileio import atomic_write_text

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", "number", "digits", "confidences", "error"])
    for r in readings:
        confidences = " ".join(f"{p.confidence:.6f}" for p in r.digits)
        number = r.text if r.complete else ""
        writer.writerow([printable(r.name), number, r.text, confidences, printable(r.error or "")])
    atomic_write_text(path, buffer.getvalue())


def printable(text: str) -> str:
    """``text`` with the bytes of a non-UTF-8 file name shown as ``\\xff`` escapes.

    File names that are not UTF-8 reach Python as lone surrogates (``surrogateescape``);
    they cannot be written as UTF-8, so they are escaped wherever a name is printed or
    stored in the CSV, instead of failing the whole output.
    """
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def format_line(p: Prediction, k: int, width: int = 0) -> str:
    """``file  digit  confidence  top-k`` for one prediction."""
    digit = str(p.digit) if p.digit is not None else "unsure"
    from ..evaluation.metrics import percent

    top = ", ".join(f"{d} {percent(q)}" for d, q in p.top_k(k))
    return f"{printable(p.name):<{width}}  {digit:>6}  {percent(p.confidence):>7}  top-{k}: {top}"


def json_line(p: Prediction, k: int, model: str | None = None) -> str:
    """One prediction as one line of JSON; ``top_k`` lists the ``k`` most likely digits,
    ``model`` says which model answered (``bundled: RECIPE (MODEL)`` or ``MODEL (PATH)``)."""
    record = p.to_dict()
    record["top_k"] = [{"digit": d, "probability": q} for d, q in p.top_k(k)]
    if model is not None:
        record["model"] = model
    return json.dumps(record)


def write_csv(path: str | os.PathLike[str], results: list[Prediction]) -> None:
    """Columns file, digit, confidence, p0..p9, error; written atomically.

    ``digit`` is empty when unsure or failed; probabilities are fractions (0 to 1).
    """
    from ..fileio import atomic_write_text

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", "digit", "confidence", *(f"p{d}" for d in CLASS_NAMES), "error"])
    for p in results:
        probs = [f"{q:.6f}" for q in p.probabilities] or [""] * 10
        digit = "" if p.digit is None else str(p.digit)
        confidence = f"{p.confidence:.6f}" if p.ok else ""
        writer.writerow([printable(p.name), digit, confidence, *probs, printable(p.error or "")])
    atomic_write_text(path, buffer.getvalue())


# ---------------------------------------------------------------------------- export


def cmd_export(args: argparse.Namespace) -> int:
    from ..inference.onnx import export

    export(args.checkpoint, args.out, args.format, log=print)
    return 0
