"""A study worker: draws trials from the shared study and trains each into its own run folder.

Every trial is an ordinary run folder, ``DIR/trial-NNNN/`` (the number of the first
attempt: a retry resumes the same folder), trained with the test set kept out
(``evaluate_test=False``). Each epoch's validation score is reported to Optuna through a
trainer callback, which also prunes. Any number of workers (processes here or on other
machines) run this loop against one storage: each starts a trial while the study has
fewer than ``n_trials`` finished or running trials, picks up retries of trials whose
worker died (failed by their stopped heartbeat), and waits while others' trials run.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..errors import TrainingError
from ..training.callbacks import Callback
from .space import SearchSpace, load_space
from .storage import DEFAULT_HEARTBEAT, import_optuna, open_storage

PRUNERS = ("median", "hyperband", "none")
METRICS = {"val_acc": "maximize", "val_loss": "minimize"}
TRIAL_DIR = "trial-{number:04d}"
POLL_SECONDS = 2.0  # how often an idle worker looks at the study while others' trials run


@dataclass
class WorkerSpec:
    """Everything a worker process needs (picklable: sent to spawned processes)."""

    study: str
    storage: str  # an SQLAlchemy URL
    space: str  # a preset name or a TOML path
    base_config: dict[str, Any]  # the TrainConfig that every trial starts from
    out: str  # the study folder holding trial-NNNN/
    n_trials: int
    deadline: float | None = None  # time.time() after which no trial starts
    pruner: str = "median"
    metric: str = "val_acc"
    heartbeat: float = DEFAULT_HEARTBEAT
    threads: int = 0  # CPU threads per trial when the config leaves it to the policy; 0 = policy
    quiet: bool = False
    tensorboard: bool = False  # each trial logs for TensorBoard into its run folder


def make_pruner(name: str, epochs: int) -> Any:
    optuna = import_optuna()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1))
    return optuna.pruners.NopPruner()


def load_study(spec: WorkerSpec, storage: Any | None = None) -> Any:
    optuna = import_optuna()
    storage = (
        storage if storage is not None else open_storage(spec.storage, heartbeat=spec.heartbeat)
    )
    epochs = int(spec.base_config.get("epochs", 1))
    return optuna.create_study(
        study_name=spec.study,
        storage=storage,
        load_if_exists=True,
        direction=METRICS[spec.metric],
        pruner=make_pruner(spec.pruner, epochs),
    )


class ReportToTrial(Callback):
    """Reports each epoch's validation score to the trial; prunes when the pruner says so."""

    def __init__(self, trial: Any, metric: str) -> None:
        self.trial = trial
        self.metric = metric
        self.optuna = import_optuna()
        self.reported: set[int] = set()

    def _report(self, row: Mapping[str, float]) -> None:
        epoch = int(row["epoch"])
        if epoch not in self.reported:
            self.trial.report(float(row[self.metric]), epoch)
            self.reported.add(epoch)
        self.trial.set_user_attr("epochs_run", epoch)
        self.trial.set_user_attr("seconds", float(row["seconds"]))

    def on_train_start(self, trainer: Any) -> None:
        # A resumed trial: the epochs trained before the interruption count as reported.
        for row in trainer.progress.history:
            self._report(row)

    def on_epoch_end(self, trainer: Any, epoch: int, row: Mapping[str, float]) -> None:
        self._report(row)
        if epoch < trainer.cfg.epochs and self.trial.should_prune():
            trainer.log(f"pruned after epoch {epoch} ({self.metric} {row[self.metric]:.4f})")
            raise self.optuna.TrialPruned(f"pruned after epoch {epoch}")


def trial_folder(out: Path, trial: Any) -> Path:
    """``DIR/trial-NNNN``: the folder of the trial's first attempt (retries share it)."""
    # A live trial has no system_attrs of its own; RetryFailedTrialCallback keeps the
    # numbers of earlier attempts there ("retry_history").
    system_attrs = trial.storage.get_trial_system_attrs(trial._trial_id)
    history = list(system_attrs.get("retry_history", []))
    number = history[0] if history else trial.number
    return out / TRIAL_DIR.format(number=number)


def trial_config(spec: WorkerSpec, space: SearchSpace, trial: Any) -> TrainConfig:
    """The trial's config: the base, then the space's fixed settings and this trial's draws."""
    from ..models.registry import create_model, uses_convolutions
    from ..training.configure import make_config

    values, model_args = space.suggest(trial)
    cfg = make_config(TrainConfig.from_dict(spec.base_config), model_args=model_args, **values)
    if cfg.threads == 0 and spec.threads > 0:
        from ..runtime import resolve_device, training_threads

        convs = uses_convolutions(create_model(cfg.model, **cfg.model_kwargs))
        policy = training_threads(0, resolve_device(cfg.device), convs)
        cfg = cfg.updated({"threads": min(policy, spec.threads)})
    return cfg


def run_trial(
    trial: Any,
    spec: WorkerSpec,
    space: SearchSpace,
    dataset: Any,
    log: Callable[[str], None],
) -> float:
    """Train one trial into its run folder (resuming it when a previous attempt left one)."""
    from ..run_folder import RunFolder
    from ..training.api import train

    out = Path(spec.out)
    run_dir = trial_folder(out, trial)
    cfg = trial_config(spec, space, trial)
    trial.set_user_attr("run_dir", str(run_dir.resolve()))
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    trial.set_user_attr("epochs_planned", cfg.epochs)
    callbacks: list[Callback] = [ReportToTrial(trial, spec.metric)]
    if spec.tensorboard:
        from ..training.tensorboard import TensorBoardLogger

        callbacks.append(TensorBoardLogger())

    def trial_log(message: str) -> None:
        log(f"trial {trial.number}: {message}")

    folder = RunFolder(run_dir)
    common = {"dataset": dataset, "callbacks": callbacks, "evaluate_test": False}
    try:
        if folder.last.is_file():
            trial.set_user_attr("resumed", True)
            run = train(resume=run_dir, log=trial_log, **common)
        else:
            if folder.holds_run():  # a first attempt killed before its first checkpoint
                shutil.rmtree(run_dir)
            run = train(cfg, out=run_dir, log=trial_log, **common)
    except TrainingError as exc:  # a diverged trial is a result of the search, not a crash
        trial.set_user_attr("error", str(exc))
        raise
    from ..models.checkpoint import load_checkpoint

    metrics = load_checkpoint(run.best_checkpoint)["metrics"]
    trial.set_user_attr("epochs_run", int(metrics["epochs_run"]))
    trial.set_user_attr("seconds", float(metrics["train_seconds"]))
    trial.set_user_attr("best_epoch", int(metrics["best_epoch"]))
    val = metrics["val"]
    return float(val["accuracy"] if spec.metric == "val_acc" else val["loss"])


def _counts(study: Any) -> dict[str, int]:
    from optuna.trial import TrialState

    counts = {"done": 0, "running": 0, "waiting": 0}
    for t in study.get_trials(deepcopy=False):
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
            t.state == TrialState.FAIL and "error" in t.user_attrs
        ):
            counts["done"] += 1
        elif t.state == TrialState.RUNNING:
            counts["running"] += 1
        elif t.state == TrialState.WAITING:
            counts["waiting"] += 1
    return counts


def run_worker(spec: WorkerSpec, *, dataset: Any = None, log: Callable[[str], None] = print) -> int:
    """Run trials until the study holds ``n_trials`` finished ones (or the deadline passes);
    return how many trials this worker ran."""
    from ..runtime import quiet_openmp_waiters

    quiet_openmp_waiters()
    optuna = import_optuna()
    from optuna.storages import fail_stale_trials

    space = load_space(spec.space)
    study = load_study(spec)
    logger = (lambda _m: None) if spec.quiet else log
    data: list[Any] = [dataset] if dataset is not None else []

    def objective(trial: Any) -> float:
        if not data:  # loaded once per worker, when its first trial starts
            from ..data.sources import load_dataset

            data.append(load_dataset(spec.base_config.get("data_dir")))
        return run_trial(trial, spec, space, data[0], logger)

    ran = 0
    while spec.deadline is None or time.time() < spec.deadline:
        fail_stale_trials(study)  # a dead worker's trial: failed, and a retry queued
        counts = _counts(study)
        if counts["waiting"] or counts["done"] + counts["running"] < spec.n_trials:
            study.optimize(objective, n_trials=1, catch=(TrainingError,))
            ran += 1
        elif counts["done"] >= spec.n_trials:
            break
        else:  # others' trials are running: wait for them to finish or to go stale
            time.sleep(POLL_SECONDS)
    del optuna
    return ran


def _worker_process(spec: WorkerSpec) -> None:
    """Entry point of a spawned worker process."""
    import sys

    from ..errors import MnistClassifierError

    try:
        run_worker(spec)
    except MnistClassifierError as exc:
        print(f"mnist-classifier: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


def run_workers(spec: WorkerSpec, jobs: int, log: Callable[[str], None] = print) -> list[int]:
    """Start ``jobs`` worker processes on this machine and wait for them; their exit codes."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker_process, args=(spec,), name=f"tune-worker-{i}")
        for i in range(jobs)
    ]
    for p in processes:
        p.start()
    try:
        for p in processes:
            p.join()
    except KeyboardInterrupt:
        for p in processes:
            p.join(timeout=30)
        raise
    codes = [int(p.exitcode if p.exitcode is not None else -1) for p in processes]
    for p, code in zip(processes, codes, strict=True):
        if code != 0:
            log(f"worker {p.name} (pid {p.pid}) exited with code {code}")
    return codes
