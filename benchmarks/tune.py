"""Trials per hour of one study with 1 and with 2 local worker processes (``tune --jobs K``).

Each row runs the same study definition from scratch (the ``mlp-architecture`` preset,
``--epochs 1 --limit-train N``, no pruning, the same number of trials) as a separate
``mnist-classifier tune`` command, so process start-up, data loading, the study database
and the final test-set scoring are all included. Two rates are printed: over the whole
command's wall time, and over the span from the first trial's start to the last trial's
end (what a longer study converges to). Configurations alternate within each repeat, so
they share the machine's load; the table gives medians over ``--repeats``.

    python benchmarks/tune.py [--trials 8] [--limit-train 5000] [--repeats 3]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI does; before torch loads

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_study(jobs: int, trials: int, limit_train: int, folder: Path) -> tuple[float, float]:
    """(command wall seconds, first-start-to-last-end seconds) of one fresh study."""
    import optuna

    from mnist_classifier.tuning.storage import open_storage, storage_url

    out = folder / f"jobs-{jobs}"
    command = [
        sys.executable, "-m", "mnist_classifier", "tune", "--study", "bench",
        "--space", "mlp-architecture", "--n-trials", str(trials), "--jobs", str(jobs),
        "--epochs", "1", "--limit-train", str(limit_train), "--pruner", "none",
        "--out", str(out), "--quiet-trials",
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    study = optuna.load_study(study_name="bench", storage=open_storage(storage_url(None, out)))
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    first = min(t.datetime_start for t in done if t.datetime_start)
    last = max(t.datetime_complete for t in done if t.datetime_complete)
    return wall, (last - first).total_seconds() * trials / len(done)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--limit-train", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    results: dict[int, list[tuple[float, float]]] = {w: [] for w in args.workers}
    with tempfile.TemporaryDirectory(prefix="tune-bench-") as tmp:
        for repeat in range(args.repeats):
            order = args.workers if repeat % 2 == 0 else list(reversed(args.workers))
            for jobs in order:
                folder = Path(tmp) / f"r{repeat}"
                folder.mkdir(exist_ok=True)
                results[jobs].append(run_study(jobs, args.trials, args.limit_train, folder))
                print(
                    f"repeat {repeat + 1}, {jobs} worker(s): {results[jobs][-1][0]:.1f}s",
                    file=sys.stderr,
                )
    print(f"\n{args.trials} trials of mlp-architecture, 1 epoch on {args.limit_train} images each, "
          f"median of {args.repeats}; {os.cpu_count()} CPU cores\n")  # fmt: skip
    print("| workers | command s | trials/hour (command) | trials/hour (trials only) |")
    print("| ---: | ---: | ---: | ---: |")
    for jobs in args.workers:
        wall = statistics.median(r[0] for r in results[jobs])
        span = statistics.median(r[1] for r in results[jobs])
        print(
            f"| {jobs} | {wall:.1f} | {args.trials / wall * 3600:,.0f} | {args.trials / span * 3600:,.0f} |"
        )


if __name__ == "__main__":
    main()
