"""Data-parallel training speed: one process against N processes, side by side.

Trains the same short job (``--epochs 2`` on ``--limit-train`` images, global batch
``--batch``) with ``mnist-classifier train`` in one process and with ``train --nproc N``
(torch's elastic launcher, gloo on the CPU), interleaved ``--repeats`` times so both
share the machine's load. The CPU cores are split evenly: one process gets them all,
each of N processes gets cores / N threads. A row reports the median over repeats of the
second epoch (the first one warms up): its seconds (training plus the validation pass,
as ``history.csv`` records them) and training images per second over those seconds.
On a machine with CUDA the same job also runs on the GPU (nccl): world 1, and world N
when there are N devices.

    python benchmarks/distributed.py [--models mlp-128-64 cnn-small] [--world 2] [--repeats 3]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI does; before torch loads

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch


def second_epoch_seconds(run: Path) -> float:
    with (run / "history.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    return float(rows[1]["seconds"]) - float(rows[0]["seconds"])


def train_once(model: str, world: int, device: str, args: argparse.Namespace, out: Path) -> float:
    cores = os.cpu_count() or 1
    threads = max(1, cores // world) if device == "cpu" else 1
    cmd = [
        sys.executable, "-m", "mnist_classifier", "train", "--model", model, "--epochs", "2",
        "--limit-train", str(args.limit_train), "--batch-size", str(args.batch),
        "--val-fraction", "0.05", "--threads", str(threads), "--device", device,
        "--no-report", "--out", str(out),
    ]  # fmt: skip
    if world > 1:
        cmd += ["--nproc", str(world)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return second_epoch_seconds(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mlp-128-64", "cnn-small"])
    parser.add_argument("--world", type=int, default=2, help="processes of the parallel rows")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit-train", type=int, default=8192)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args(argv)

    setups = [("cpu", 1), ("cpu", args.world)]
    if torch.cuda.is_available():
        setups.append(("cuda", 1))
        if torch.cuda.device_count() >= args.world:
            setups.append(("cuda", args.world))
    times: dict[tuple[str, str, int], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as tmp:
        for repeat in range(args.repeats):
            for model in args.models:
                for device, world in setups:
                    out = Path(tmp) / f"{model}-{device}-{world}-{repeat}"
                    seconds = train_once(model, world, device, args, out)
                    times.setdefault((model, device, world), []).append(seconds)

    cores = os.cpu_count() or 1
    print(
        f"{args.limit_train} training images, global batch {args.batch}, median of "
        f"{args.repeats} (second epoch, with its validation of 3,000 images); {cores} CPU cores"
    )
    print(
        f"{'model':<12} {'device':<6} {'processes':>9} {'threads':>7} {'s/epoch':>8} {'images/s':>9}"
    )
    for (model, device, world), values in times.items():
        seconds = statistics.median(values)
        threads = max(1, cores // world) if device == "cpu" else "-"
        print(
            f"{model:<12} {device:<6} {world:>9} {threads!s:>7} {seconds:>8.2f} "
            f"{args.limit_train / seconds:>9,.0f}"
        )
    if not torch.cuda.is_available():
        print("cuda: not measured (no CUDA device on this machine)")


if __name__ == "__main__":
    main()
