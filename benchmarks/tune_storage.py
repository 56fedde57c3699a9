"""Optuna's SQLite storage against its journal file storage with several local writers.

Each of ``--workers`` processes runs ``--trials`` tiny trials (no training: a quadratic
with five reported steps, a user attribute per step and a median pruner), so the
storage is written far more often than in a real study. The table reports, per
storage, the wall time, the trials recorded, whether every trial number is unique, and
the errors the workers raised ("database is locked" would show here). This is the
measurement behind the embedded default in ``tuning/storage.py``.

    python benchmarks/tune_storage.py [--workers 4] [--trials 60]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

WORKER = r"""
import sys, optuna
optuna.logging.set_verbosity(optuna.logging.ERROR)
import warnings; warnings.simplefilter("ignore")
kind, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "sqlite":
    storage = optuna.storages.RDBStorage(f"sqlite:///{path}", heartbeat_interval=1, grace_period=5,
                                         engine_kwargs={"connect_args": {"timeout": 120}})
else:
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    storage = JournalStorage(JournalFileBackend(path))
study = optuna.create_study(study_name="s", storage=storage, load_if_exists=True,
                            pruner=optuna.pruners.MedianPruner(n_startup_trials=2))
def objective(trial):
    x = trial.suggest_float("x", -10, 10)
    for step in range(5):
        trial.report((x - 2) ** 2 + step, step)
        trial.set_user_attr(f"a{step}", step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return (x - 2) ** 2
errors = 0
for _ in range(n):
    try:
        study.optimize(objective, n_trials=1)
    except Exception as exc:
        errors += 1
        print("ERROR", type(exc).__name__, str(exc).splitlines()[0][:120])
print("errors", errors)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--trials", type=int, default=60)
    args = parser.parse_args()
    import optuna

    rows = []
    with tempfile.TemporaryDirectory(prefix="tune-storage-") as tmp:
        for kind, name in (("sqlite", "s.db"), ("journal", "j.log")):
            path = str(Path(tmp) / name)
            subprocess.run([sys.executable, "-c", WORKER, kind, path, "0"], check=True)
            started = time.perf_counter()
            procs = [
                subprocess.Popen(
                    [sys.executable, "-c", WORKER, kind, path, str(args.trials)],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for _ in range(args.workers)
            ]
            outputs = [p.communicate()[0] for p in procs]
            wall = time.perf_counter() - started
            errors = Counter(
                line.split(" ", 2)[2]
                for out in outputs
                for line in out.splitlines()
                if line.startswith("ERROR")
            )
            if kind == "sqlite":
                storage = f"sqlite:///{path}"
            else:
                from optuna.storages.journal import JournalFileBackend, JournalStorage

                storage = JournalStorage(JournalFileBackend(path))
            trials = optuna.load_study(study_name="s", storage=storage).trials
            unique = len({t.number for t in trials}) == len(trials)
            rows.append(
                (kind, wall, len(trials), unique, sum(errors.values()), errors.most_common(1))
            )
    print(f"\n{args.workers} processes x {args.trials} trials (5 reports each)\n")
    print("| storage | wall s | trials recorded | numbers unique | errors | most common error |")
    print("| --- | ---: | ---: | --- | ---: | --- |")
    for kind, wall, count, unique, n_errors, common in rows:
        first = common[0][0] if common else "-"
        print(
            f"| {kind} | {wall:.1f} | {count} / {args.workers * args.trials} | {unique} | {n_errors} | {first} |"
        )


if __name__ == "__main__":
    main()
