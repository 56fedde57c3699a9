"""``mnist-classifier data ...``: look at the dataset."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        default=None,
        help="folder of MNIST-format files (default: $MNIST_CLASSIFIER_DATA_DIR, "
        "else the copy shipped with the package)",
    )


def register(subparsers: Any) -> None:
    data = subparsers.add_parser("data", help="inspect the dataset")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    data_sub.required = True

    info = data_sub.add_parser("info", help="counts per split and class, checksums, mean/std")
    add_data_dir(info)
    info.add_argument("--json", action="store_true", help="print the summary as JSON")
    info.set_defaults(func=cmd_info)


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
    print(f"source:     {summary['source']}")
    print(f"official:   {'yes (checksums match MNIST)' if summary['official_mnist'] else 'no'}")
    print(f"cache:      {'hit' if summary['from_cache'] else 'decoded now'}")
    print(f"mean / std: {summary['mean']:.4f} / {summary['std']:.4f}")
    for stem, path in sorted(summary["files"].items()):
        status = summary["checksums"].get(stem, "-")
        print(f"  {stem:<26} {status:<20} {path}")
    header = "split  " + "".join(f"{d:>7}" for d in range(10)) + "    total"
    print(header)
    for split, info in summary["splits"].items():
        row = "".join(f"{c:>7}" for c in info["per_class"])
        print(f"{split:<7}{row}{info['count']:>9}")
    return 0
