"""The Python API: ``train(...)`` (and ``evaluate``, ``Run``, ``make_config``), as short as the CLI."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..data.sources import Dataset
from ..errors import ConfigError
from ..evaluation.scoring import evaluate
from ..models.checkpoint import load_checkpoint
from ..run_folder import RunFolder, lock_run_folder
from . import distributed
from .callbacks import Callback
from .configure import default_run_dir, make_config
from .distributed import DistContext
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
    dist_backend: str | None = None,
    **overrides: Any,
) -> Run:
    """Train a model and return its :class:`Run`.

    ``mnist_classifier.train(model="cnn", epochs=3)`` trains into ``runs/<name>``;
    ``train(resume="runs/NAME")`` continues an interrupted run from its last checkpoint.
    ``dataset`` replaces the data named by the config (an in-memory :class:`Dataset`).
    ``callbacks`` follow training (:mod:`.callbacks`); ``evaluate_test=False`` keeps the test
    set out of the run (no test metrics, no ``metrics.json``: what tuning trials do).
    Under torchrun every process calls this: they train one model together
    (:mod:`.distributed`; ``dist_backend`` overrides gloo / nccl) and rank 0 writes the run.
    One training at a time holds a run folder (``lock_run_folder``, taken by rank 0).
    """
    extra: dict[str, Any] = {"callbacks": callbacks, "evaluate_test": evaluate_test}
    logger = log if log is not None else (lambda _msg: None)
    ctx = DistContext.from_env()
    with contextlib.ExitStack() as held:  # the run folder's lock, from the plan to the end
        if not ctx.enabled:
            plan = _plan(config, out, recipe, resume, overrides, ctx, held)
            return _fit(plan, logger, step_hook, dataset, ctx, extra)
        with distributed.process_group(ctx, dist_backend, str(overrides.get("device") or "auto")):
            # Rank 0 locks and checks the run folder and reads any checkpoint; every rank
            # gets its answer.
            plan = ctx.run_on_main(lambda: _plan(config, out, recipe, resume, overrides, ctx, held))
            return _fit(plan, logger, step_hook, dataset, ctx, extra)


@dataclass
class _Plan:
    """What a call to :func:`train` will do: the config, the folder, a checkpoint to resume."""

    cfg: TrainConfig
    run_dir: Path
    checkpoint: dict[str, Any] | None = None
    note: str = ""  # the line logged when resuming


def _plan(
    config: Any,
    out: str | os.PathLike[str] | None,
    recipe: str | None,
    resume: str | os.PathLike[str] | None,
    overrides: dict[str, Any],
    ctx: DistContext,
    held: contextlib.ExitStack,
) -> _Plan:
    if resume is not None:
        return _resume_plan(Path(resume), overrides, ctx, held)
    cfg = make_config(config, recipe=recipe, **overrides)
    distributed.check_world(cfg, ctx.world_size)
    if out is None and ctx.max_restarts > 0:
        raise ConfigError(
            "under torchrun --max-restarts, name the run folder with --out: a restarted worker "
            "group continues the run it finds there"
        )
    run_dir = Path(out) if out is not None else default_run_dir(cfg)
    folder = RunFolder(run_dir)
    held.enter_context(lock_run_folder(folder))  # one training per run folder
    if folder.holds_run():
        if ctx.restart_count == 0:
            raise ConfigError(
                f"{run_dir}: already holds a run; continue it with --resume {run_dir} or choose another --out"
            )
        if folder.last.is_file():  # torchrun restarted the workers: continue this run
            return _resume_plan(run_dir, {}, ctx, None, same_as=cfg)  # already locked
    return _Plan(cfg, run_dir)


def _resume_plan(
    run_dir: Path,
    overrides: dict[str, Any],
    ctx: DistContext,
    held: contextlib.ExitStack | None,
    same_as: TrainConfig | None = None,
) -> _Plan:
    run = RunFolder(run_dir)
    if not run.last.is_file():
        raise ConfigError(f"{run_dir}: nothing to resume (no last checkpoint in it)")
    if held is not None:
        held.enter_context(lock_run_folder(run))  # a second resumer is refused
    ckpt = load_checkpoint(run.last)
    state = ckpt.get("training") or {}
    if ckpt.get("metrics") and run.metrics.is_file():
        raise ConfigError(f"{run_dir}: the run is already complete (its final metrics exist)")
    cfg = TrainConfig.from_dict(ckpt["config"], source=str(run.last))
    # Only where the run executes may change; anything else would change the result.
    allowed = {"device", "threads"}
    if same_as is not None and (not ctx.job or state.get("job") != ctx.job):
        # Not written by an earlier attempt of this job: a run that was there before it.
        raise ConfigError(
            f"{run_dir}: already holds a run; continue it with --resume {run_dir} or choose another --out"
        )
    if same_as is not None:  # a restarted worker group: the same command, so the same config
        ours, stored = same_as.to_dict(), cfg.to_dict()
        if {k: v for k, v in ours.items() if k not in allowed} != {
            k: v for k, v in stored.items() if k not in allowed
        }:
            raise ConfigError(f"{run_dir}: already holds a different run; choose another --out")
        overrides = {k: ours[k] for k in allowed}
    changed = {k: v for k, v in overrides.items() if v is not None}
    if set(changed) - allowed:
        refused = ", ".join(sorted(set(changed) - allowed))
        raise ConfigError(f"--resume continues the stored config; cannot change {refused}")
    cfg = cfg.updated(changed, source="arguments")
    distributed.check_world(cfg, ctx.world_size)  # another world size works: same global batch
    why = f"restart {ctx.restart_count} of the worker group: " if same_as is not None else ""
    note = (
        f"{why}resuming {run_dir} at epoch {state.get('epochs_done', 0) + 1}, "
        f"step {state.get('step_in_epoch', 0)}"
    )
    return _Plan(cfg, run_dir, ckpt, note)


def _fit(
    plan: _Plan,
    log: Callable[[str], None],
    step_hook: StepHook | None,
    dataset: Dataset | None,
    ctx: DistContext,
    extra: dict[str, Any],
) -> Run:
    trainer = Trainer(
        plan.cfg, plan.run_dir, log=log, step_hook=step_hook, dataset=dataset, dist=ctx, **extra
    )
    if plan.checkpoint is not None:
        trainer.restore(plan.checkpoint)
        trainer.log(plan.note)
    trainer.fit()
    ctx.barrier()  # every rank leaves together, after rank 0 has written the run
    if not ctx.is_main:  # the run folder may live on another machine
        return Run(path=plan.run_dir, config=plan.cfg)
    return Run.load(plan.run_dir)
