"""The Python API: ``train(...)`` (and ``evaluate``, ``Run``, ``make_config``), as short as the CLI."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..data.sources import Dataset
from ..errors import ConfigError
from ..evaluation.scoring import evaluate
from ..models.checkpoint import load_checkpoint
from ..run_folder import RunFolder, lock_run_folder
from .callbacks import Callback
from .configure import default_run_dir, make_config
from .loop import StepHook, Trainer
from .run import Run

__all__ = ["Run", "evaluate", "make_config", "train"]


def train(
    config: TrainConfig | dict[str, Any] | str | os.PathLike[str] | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    recipe: str | None = None,
    resume: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] | None = print,
    step_hook: StepHook | None = None,
    dataset: Dataset | None = None,
    callbacks: Sequence[Callback] = (),
    evaluate_test: bool = True,
    **overrides: Any,
) -> Run:
    """Train a model and return its :class:`Run`.

    ``mnist_classifier.train(model="cnn", epochs=3)`` trains into ``runs/<name>``;
    ``train(resume="runs/NAME")`` continues an interrupted run from its last checkpoint.
    ``dataset`` replaces the data named by the config (an in-memory :class:`Dataset`).
    ``callbacks`` follow training (:mod:`.callbacks`); ``evaluate_test=False`` keeps the test
    set out of the run (no test metrics, no ``metrics.json``: what tuning trials do).
    """
    extra: dict[str, Any] = {"callbacks": callbacks, "evaluate_test": evaluate_test}
    logger = log if log is not None else (lambda _msg: None)
    if resume is not None:
        return _resume(Path(resume), logger, step_hook, dataset, overrides, extra)
    cfg = make_config(config, recipe=recipe, **overrides)
    run_dir = Path(out) if out is not None else default_run_dir(cfg)
    with lock_run_folder(RunFolder(run_dir)):  # one training per run folder
        if RunFolder(run_dir).holds_run():
            raise ConfigError(
                f"{run_dir}: already holds a run; continue it with --resume {run_dir} or choose another --out"
            )
        Trainer(cfg, run_dir, log=logger, step_hook=step_hook, dataset=dataset, **extra).fit()
    return Run.load(run_dir)


def _resume(
    run_dir: Path,
    log: Callable[[str], None],
    step_hook: StepHook | None,
    dataset: Dataset | None,
    overrides: dict[str, Any],
    extra: dict[str, Any],
) -> Run:
    run = RunFolder(run_dir)
    if not run.last.is_file():
        raise ConfigError(f"{run_dir}: nothing to resume (no last checkpoint in it)")
    with lock_run_folder(run):
        return _resume_locked(run, log, step_hook, dataset, overrides, extra)


def _resume_locked(
    run: RunFolder,
    log: Callable[[str], None],
    step_hook: StepHook | None,
    dataset: Dataset | None,
    overrides: dict[str, Any],
    extra: dict[str, Any],
) -> Run:
    run_dir = run.root
    ckpt = load_checkpoint(run.last)
    state = ckpt.get("training") or {}
    if ckpt.get("metrics") and run.metrics.is_file():
        raise ConfigError(f"{run_dir}: the run is already complete (its final metrics exist)")
    cfg = TrainConfig.from_dict(ckpt["config"], source=str(run.last))
    # Only where the run executes may change; anything else would change the result.
    allowed = {"device", "threads"}
    changed = {k: v for k, v in overrides.items() if v is not None}
    if set(changed) - allowed:
        refused = ", ".join(sorted(set(changed) - allowed))
        raise ConfigError(f"--resume continues the stored config; cannot change {refused}")
    cfg = cfg.updated(changed, source="arguments")
    trainer = Trainer(cfg, run_dir, log=log, step_hook=step_hook, dataset=dataset, **extra)
    trainer.restore(ckpt)
    log(
        f"resuming {run_dir} at epoch {state.get('epochs_done', 0) + 1}, "
        f"step {state.get('step_in_epoch', 0)}"
    )
    trainer.fit()
    return Run.load(run_dir)
