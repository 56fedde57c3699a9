"""Train every named recipe for N seeds and print one table row per recipe.

    python benchmarks/recipes.py [--seeds 3] [--recipes seed mlp-best cnn-fast ...] [--device auto]

Columns: recipe, model, parameters, train seconds (median over seeds, the training
epochs with their validation passes), test accuracy mean and standard deviation.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI does; before torch loads

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

import mnist_classifier
from machine import describe_machine
from mnist_classifier.data.sources import load_dataset
from mnist_classifier.runtime import resolve_device
from mnist_classifier.training.recipes import RECIPES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", metavar="FILE", help="also write the per-seed results as JSON")
    args = parser.parse_args()
    device = resolve_device(args.device)
    dataset = load_dataset()
    print(
        f"# {args.seeds} seeds per recipe on {device.type} "
        f"({torch.get_num_threads()} CPU threads)\n# machine: {describe_machine()}",
        flush=True,
    )
    raw: dict[str, list[dict[str, float]]] = {}
    rows = []
    for name in args.recipes:
        runs = []
        for seed in range(args.seeds):
            with tempfile.TemporaryDirectory() as tmp:
                run = mnist_classifier.train(
                    recipe=name, seed=seed, device=args.device, out=Path(tmp) / "run",
                    dataset=dataset, log=None,
                )  # fmt: skip
            m = run.metrics
            runs.append(
                {"seed": seed, "seconds": m["train_seconds"], "test": m["test"]["accuracy"]}
            )
            print(
                f"  {name} seed {seed}: {m['train_seconds']:.1f}s  test {100 * m['test']['accuracy']:.2f}%",
                flush=True,
            )
        raw[name] = runs
        accs = [100 * r["test"] for r in runs]
        rows.append(
            (
                name, run.config.model, m["parameters"],
                statistics.median(r["seconds"] for r in runs),
                statistics.mean(accs), statistics.stdev(accs) if len(accs) > 1 else 0.0,
            )
        )  # fmt: skip
    print()
    print(
        f"| recipe | model | parameters | train s ({device.type}, median) | test acc mean | std |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for name, model, params, secs, mean, std in rows:
        print(f"| {name} | {model} | {params:,} | {secs:.1f} | {mean:.2f}% | {std:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=2))


if __name__ == "__main__":
    main()
