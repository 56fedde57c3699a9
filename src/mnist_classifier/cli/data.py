"""``mnist-classifier data ...``: look at, download and draw the dataset."""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
from typing import TYPE_CHECKING, Any

from ..data.format import CLASS_NAMES
from ..errors import ConfigError

if TYPE_CHECKING:
    import torch

MAX_SHOW = 400  # images in one `data show` grid; more would be unreadable and slow to draw


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        default=None,
        help="folder of MNIST-format files (default: $MNIST_CLASSIFIER_DATA_DIR, "
        "else the copy shipped with the package)",
    )


def register(subparsers: Any) -> None:
    data = subparsers.add_parser("data", help="inspect, download and draw the dataset")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    data_sub.required = True

    info = data_sub.add_parser("info", help="counts per split and class, checksums, mean/std")
    add_data_dir(info)
    info.add_argument("--json", action="store_true", help="print the summary as JSON")
    info.set_defaults(func=cmd_info)

    download = data_sub.add_parser(
        "download", help="fetch the official MNIST files from mirrors, verified"
    )
    download.add_argument("--out", metavar="DIR", required=True, help="folder to write into")
    download.add_argument(
        "--mirror",
        metavar="URL",
        action="append",
        default=None,
        help="base URL to try (repeatable, tried in order; default: the built-in mirrors)",
    )
    download.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        default=None,
        help="give up on a mirror after this many seconds without data (default: 30)",
    )
    download.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    download.add_argument(
        "--no-progress",
        action="store_true",
        help="plain lines instead of progress bars (also TQDM_DISABLE=1)",
    )
    download.set_defaults(func=cmd_download)

    show = data_sub.add_parser("show", help="draw a grid of sample images with their labels")
    add_data_dir(show)
    show.add_argument("--split", choices=("train", "test"), default="train")
    show.add_argument(
        "--n", type=int, default=25, help=f"number of images, at most {MAX_SHOW} (default: 25)"
    )
    show.add_argument("--seed", type=int, default=0, help="which images to pick (default: 0)")
    show.add_argument("--out", metavar="PNG", required=True, help="image file to write")
    show.set_defaults(func=cmd_show)


def dataset_summary(data_dir: str | None) -> dict[str, Any]:
    import torch

    from ..data.sources import load_dataset

    ds = load_dataset(data_dir)
    splits = {}
    for split, labels in (("train", ds.train_labels), ("test", ds.test_labels)):
        counts = torch.bincount(labels, minlength=10).tolist()
        splits[split] = {"count": int(labels.numel()), "per_class": counts}
    return {
        "source": ds.source,
        "files": ds.files,
        "checksums": ds.checksums,
        "official_mnist": ds.is_official_mnist,
        "from_cache": ds.from_cache,
        "mean": round(ds.mean, 4),
        "std": round(ds.std, 4),
        "splits": splits,
    }


def cmd_info(args: argparse.Namespace) -> int:
    summary = dataset_summary(args.data_dir)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    official = summary["official_mnist"]
    print(f"source:     {summary['source']}")
    print(f"official:   {'yes (checksums match MNIST)' if official else 'no'}")
    print(f"cache:      {'hit' if summary['from_cache'] else 'decoded now'}")
    origin = "MNIST's" if official else "from the training split"
    print(f"mean / std: {summary['mean']:.4f} / {summary['std']:.4f} ({origin})")
    for stem, path in sorted(summary["files"].items()):
        status = summary["checksums"].get(stem, "-")
        print(f"  {stem:<26} {status:<20} {path}")
    header = "split  " + "".join(f"{d:>7}" for d in CLASS_NAMES) + "    total"
    print(header)
    for split, info in summary["splits"].items():
        row = "".join(f"{c:>7}" for c in info["per_class"])
        print(f"{split:<7}{row}{info['count']:>9}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from .. import progress_bar
    from ..data.download import DEFAULT_MIRRORS, DEFAULT_TIMEOUT, download_mnist

    with progress_bar.disabled(args.no_progress):
        paths = download_mnist(
            args.out,
            mirrors=args.mirror or DEFAULT_MIRRORS,
            progress=not args.quiet,
            timeout=args.timeout if args.timeout is not None else DEFAULT_TIMEOUT,
        )
    for path in paths.values():
        print(path)
    if not args.quiet:
        print(f"use it with: mnist-classifier data info --data-dir {args.out}", file=sys.stderr)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    import torch

    from ..data.sources import load_dataset
    from ..fileio import atomic_write_bytes

    if not 1 <= args.n <= MAX_SHOW:
        raise ConfigError(f"--n must be between 1 and {MAX_SHOW}, got {args.n}")
    ds = load_dataset(args.data_dir)
    images, labels = (
        (ds.train_images, ds.train_labels)
        if args.split == "train"
        else (ds.test_images, ds.test_labels)
    )
    if args.n > len(labels):
        raise ConfigError(f"--n {args.n} is more than the {len(labels)} {args.split} images")
    gen = torch.Generator().manual_seed(args.seed)
    picks = torch.randperm(len(labels), generator=gen)[: args.n]
    title = f"{args.split} split, {args.n} samples (seed {args.seed})"
    atomic_write_bytes(args.out, render_samples(images[picks], labels[picks], picks, title))
    print(f"wrote {args.out}")
    return 0


def render_samples(
    images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor, title: str
) -> bytes:
    """PNG bytes of a grid of uint8 ``images`` (N, 28, 28), each titled with its label and index."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(labels)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(1.3 * cols, 1.45 * rows + 0.4), dpi=100)
    FigureCanvasAgg(fig)
    fig.suptitle(title, fontsize=9)
    for i in range(rows * cols):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.axis("off")
        if i < n:
            ax.imshow(images[i].numpy(), cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
            ax.set_title(f"{int(labels[i])}  (#{int(indices[i])})", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
