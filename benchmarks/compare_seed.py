"""The seed recipe two ways, side by side in one run: the original projects' pipeline and ours.

Both train the 784-128-64-10 MLP with dropout 0.2, Adam (lr 1e-3, weight decay 1e-4),
batch 32, 10 epochs, 80/20 split, validating after every epoch. "train s" is the wall
time of the training epochs including their validation passes, excluding dataset
loading, for both; "total s" is the whole call (set-up, training, test evaluation and,
for ours, writing the run folder).

    python benchmarks/compare_seed.py [--repeats 3] [--epochs 10] [--threads N] [--no-command]

A second table breaks down the whole command on our side: ``mnist-classifier train
--recipe seed`` run as a subprocess (what ``make demo`` runs), its wall clock measured
from outside, split into the phases the command reports (``train --json``): training with
its validation passes, the final test pass, plots and report, and the rest (start-up,
data, checkpoints, exit); "overhead" is wall time minus training.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI does; before torch loads

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from machine import describe_machine

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mnist_classifier
from mnist_classifier.data.sources import load_dataset
from seed_pipeline import run_seed_pipeline


def run_ours(epochs: int, seed: int, limit: int | None) -> dict[str, float]:
    dataset = load_dataset()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        run = mnist_classifier.train(
            recipe="seed", out=Path(tmp) / "run", epochs=epochs, seed=seed,
            limit_train=limit or 0, dataset=dataset, log=None,
        )  # fmt: skip
        total = time.perf_counter() - started
    train_images = (limit or 48_000) * epochs
    seconds = run.metrics["train_seconds"]
    return {
        "train_seconds": seconds,
        "total_seconds": total,
        "images_per_second": train_images / seconds,
        "val_accuracy": run.metrics["val"]["accuracy"],
        "test_accuracy": run.metrics["test"]["accuracy"],
    }


def run_baseline(epochs: int, seed: int, limit: int | None) -> dict[str, float]:
    started = time.perf_counter()
    result = run_seed_pipeline(epochs=epochs, seed=seed, limit=limit)
    result["total_seconds"] = time.perf_counter() - started
    return result


PHASES = (
    ("training", "training"),
    ("final_evaluation", "test pass"),
    ("plots_and_report", "plots and report"),
)


def run_command(epochs: int, seed: int, limit: int | None, threads: int) -> dict[str, float]:
    """``mnist-classifier train --recipe seed`` in a fresh process: its phases and wall time."""
    with tempfile.TemporaryDirectory() as tmp:
        argv = [
            sys.executable, "-m", "mnist_classifier", "train", "--recipe", "seed",
            "--epochs", str(epochs), "--seed", str(seed), "--threads", str(threads),
            "--out", str(Path(tmp) / "run"), "--json", "-q",
        ]  # fmt: skip
        if limit:
            argv += ["--limit-train", str(limit)]
        started = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"mnist-classifier train failed: {done.stderr.strip()}")
    phases = json.loads(done.stdout)["phases"]
    row = {key: float(phases[key]) for key, _ in PHASES}
    row["wall"] = wall
    row["rest"] = wall - sum(row[key] for key, _ in PHASES)
    row["overhead"] = wall - row["training"]
    return row


def print_command_table(rows: list[dict[str, float]]) -> None:
    def median(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    print(f"\n`mnist-classifier train --recipe seed` as a subprocess, median of {len(rows)}:\n")
    columns = [*PHASES, ("rest", "start-up, data, checkpoints, exit"), ("wall", "total (wall)")]
    print("| " + " | ".join(label for _, label in columns) + " | overhead (total - training) |")
    print("|" + "---:|" * (len(columns) + 1))
    cells = [f"{median(key):.2f} s" for key, _ in columns]
    print("| " + " | ".join(cells) + f" | {median('overhead'):.2f} s |")


def summarize(rows: list[dict[str, float]]) -> dict[str, float]:
    secs = [r["train_seconds"] for r in rows]
    return {
        "median": statistics.median(secs),
        "min": min(secs),
        "max": max(secs),
        "total": statistics.median(r["total_seconds"] for r in rows),
        "images_per_second": statistics.median(r["images_per_second"] for r in rows),
        "val": statistics.mean(r["val_accuracy"] for r in rows),
        "test": statistics.mean(r["test_accuracy"] for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--limit", type=int, default=None, help="training images (quick check)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads for both sides (default 1)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the raw results as JSON")
    parser.add_argument(
        "--no-command", action="store_true", help="skip the whole-command (subprocess) table"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"# seed recipe, {args.epochs} epochs, batch 32, {args.repeats} repeats, "
        f"{torch.get_num_threads()} threads\n# machine: {describe_machine()}"
    )
    results: dict[str, list[dict[str, float]]] = {"original pipeline": [], "mnist-classifier": []}
    for rep in range(args.repeats):
        # Alternate the order so neither side always runs on a warmer machine.
        order = ["original pipeline", "mnist-classifier"]
        if rep % 2:
            order.reverse()
        for name in order:
            fn = run_baseline if name == "original pipeline" else run_ours
            row = fn(args.epochs, rep, args.limit)
            results[name].append(row)
            print(
                f"  repeat {rep + 1} {name:<18} train {row['train_seconds']:7.2f}s  "
                f"test {100 * row['test_accuracy']:.2f}%",
                flush=True,
            )
    base = summarize(results["original pipeline"])
    ours = summarize(results["mnist-classifier"])
    print()
    print(
        "| pipeline | train s (median) | min | max | total s | images/s | val acc | test acc | speed-up |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, s in (("original pipeline", base), ("mnist-classifier", ours)):
        print(
            f"| {name} | {s['median']:.2f} | {s['min']:.2f} | {s['max']:.2f} | {s['total']:.2f} | "
            f"{s['images_per_second']:,.0f} | {100 * s['val']:.2f}% | {100 * s['test']:.2f}% | "
            f"{base['median'] / s['median']:.1f}x |"
        )
    delta = 100 * (ours["test"] - base["test"])
    print(f"\ntest accuracy difference (ours - original): {delta:+.2f} points")
    command_rows: list[dict[str, float]] = []
    if not args.no_command:
        for rep in range(args.repeats):
            command_rows.append(run_command(args.epochs, rep, args.limit, args.threads or 1))
            print(f"  repeat {rep + 1} whole command: {command_rows[-1]['wall']:.2f}s", flush=True)
        print_command_table(command_rows)
    if args.json:
        raw = {**results, "whole command": command_rows}
        Path(args.json).write_text(json.dumps(raw, indent=2))


if __name__ == "__main__":
    main()
