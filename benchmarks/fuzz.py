"""A longer fuzz run of the suite's property-based targets, bounded in time.

Runs every target of tests/fuzz_targets.py (the IDX reader on arbitrary bytes,
preprocessing on arbitrary arrays, the checkpoint loader on field- and byte-mutated
checkpoints) in rounds of ``--batch`` random examples, each round with a fresh seed,
until ``--seconds`` per target have passed. A target's property is that the code
returns a value or raises only the package's typed error; the first counterexample
stops that target, is printed with its seed, and makes the script exit 1. Prints a
table of examples tried per target.

    python benchmarks/fuzz.py [--seconds 60] [--targets idx,arrays,...] [--batch 200]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import random
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from hypothesis import HealthCheck, given, settings

from fuzz_targets import TARGETS, Target


def fuzz(target: Target, seconds: float, batch: int, rng: random.Random) -> tuple[int, str | None]:
    """Examples tried and the first failure (None when the property held throughout)."""
    tried = 0
    deadline = time.monotonic() + seconds

    def counted(case: object) -> None:
        nonlocal tried
        tried += 1
        target.check(case)

    while time.monotonic() < deadline:
        seed = rng.getrandbits(64)
        run = settings(
            max_examples=batch, deadline=None, database=None,
            suppress_health_check=list(HealthCheck),
        )(given(target.strategy)(counted))  # fmt: skip
        try:
            run._hypothesis_internal_use_seed = seed  # type: ignore[attr-defined]
            run()
        except Exception:
            return tried, f"seed {seed}:\n{traceback.format_exc(limit=6)}"
    return tried, None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="time per target (60)")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated targets")
    parser.add_argument("--batch", type=int, default=200, help="examples per round (200)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the round seeds")
    args = parser.parse_args()
    names = [n for n in args.targets.split(",") if n]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    rng = random.Random(args.seed)
    rows, failed = [], False
    for name in names:
        started = time.monotonic()
        tried, failure = fuzz(TARGETS[name], args.seconds, args.batch, rng)
        elapsed = time.monotonic() - started
        rows.append((name, tried, elapsed, "FAILED" if failure else "held"))
        if failure:
            failed = True
            print(f"{name}: counterexample after {tried} examples, {failure}", file=sys.stderr)
    print(f"{'target':<20} {'examples':>9} {'seconds':>8}  property")
    for name, tried, elapsed, status in rows:
        print(f"{name:<20} {tried:>9} {elapsed:>8.1f}  {status}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
