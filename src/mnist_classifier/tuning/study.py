"""``tune(...)``: run (or continue) a study, then rank its trials and score the best on test.

A study is named, lives in a storage (the embedded SQLite file ``DIR/study.db`` or any
SQLAlchemy URL) and keeps its trials' run folders under ``DIR``. Running the same
study again continues it: ``n_trials`` is the number of finished trials the study
should hold. The objective is the validation score; the test set is touched once per
command, at the end, by the best trial's checkpoint.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..errors import ConfigError
from .space import load_space
from .storage import DEFAULT_HEARTBEAT, import_optuna, open_storage, storage_url
from .worker import METRICS, PRUNERS, WorkerSpec, load_study, run_worker, run_workers

DEFAULT_N_TRIALS = 20


@dataclass
class TrialRow:
    """One line of the leaderboard."""

    number: int
    state: str  # COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    value: float | None  # the objective (validation accuracy or loss)
    params: dict[str, Any]
    epochs: int | None
    seconds: float | None
    run_dir: str | None
    retry_of: int | None = None


@dataclass
class StudySummary:
    """What a study holds now: the leaderboard, the best trial and what pruning saved."""

    study: str
    storage: str
    metric: str
    rows: list[TrialRow]
    best: TrialRow | None
    pruned_seconds_saved: float  # estimated: the epochs pruned trials did not train
    best_test: dict[str, Any] | None = None
    counts: dict[str, int] = field(default_factory=dict)


def default_study_dir(study: str) -> Path:
    return Path("studies") / study


def study_spec(
    study: str,
    *,
    base_config: TrainConfig,
    storage: str | None = None,
    space: str = "mlp-architecture",
    n_trials: int = DEFAULT_N_TRIALS,
    timeout: float | None = None,
    pruner: str = "median",
    metric: str = "val_acc",
    out: str | os.PathLike[str] | None = None,
    heartbeat: float = DEFAULT_HEARTBEAT,
    threads: int = 0,
) -> WorkerSpec:
    """Check the arguments and describe the study for its workers."""
    if not study or "/" in study:
        raise ConfigError(f"--study {study!r}: give a name without '/'")
    if pruner not in PRUNERS:
        raise ConfigError(f"unknown pruner {pruner!r}; choose one of: {', '.join(PRUNERS)}")
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; choose one of: {', '.join(METRICS)}")
    if n_trials < 1:
        raise ConfigError(f"--n-trials must be at least 1, got {n_trials}")
    if timeout is not None and not timeout > 0:
        raise ConfigError(f"--timeout must be a positive number of seconds, got {timeout}")
    if not heartbeat > 0:
        raise ConfigError(f"--heartbeat must be positive, got {heartbeat}")
    load_space(space)  # checked before any worker starts
    folder = Path(out) if out is not None else default_study_dir(study)
    return WorkerSpec(
        study=study,
        storage=storage_url(storage, folder),
        space=str(space),
        base_config=base_config.to_dict(),
        out=str(folder),
        n_trials=n_trials,
        deadline=time.time() + timeout if timeout else None,
        pruner=pruner,
        metric=metric,
        heartbeat=heartbeat,
        threads=threads,
    )


def tune(
    study: str,
    *,
    base_config: TrainConfig | None = None,
    storage: str | None = None,
    space: str = "mlp-architecture",
    n_trials: int = DEFAULT_N_TRIALS,
    timeout: float | None = None,
    jobs: int = 1,
    pruner: str = "median",
    metric: str = "val_acc",
    out: str | os.PathLike[str] | None = None,
    heartbeat: float = DEFAULT_HEARTBEAT,
    evaluate_best: bool = True,
    dataset: Any = None,
    log: Callable[[str], None] = print,
    quiet_trials: bool = False,
    tensorboard: bool = False,
) -> StudySummary:
    """Run the study to ``n_trials`` finished trials with ``jobs`` local worker processes
    (``jobs=1`` works in this process), then summarise it and score the best trial on test."""
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    cores = os.cpu_count() or 1
    spec = study_spec(
        study,
        base_config=base_config if base_config is not None else TrainConfig(),
        storage=storage,
        space=space,
        n_trials=n_trials,
        timeout=timeout,
        pruner=pruner,
        metric=metric,
        out=out,
        heartbeat=heartbeat,
        threads=max(1, cores // jobs) if jobs > 1 else 0,
    )
    spec.quiet = quiet_trials
    spec.tensorboard = tensorboard
    Path(spec.out).mkdir(parents=True, exist_ok=True)
    created = load_study(spec)  # created here once, so that workers only load it
    created.set_user_attr("metric", metric)
    created.set_user_attr("space", str(space))
    log(
        f"study {study!r} in {_display_url(spec.storage)}: {len(created.trials)} trial(s) so far, "
        f"running to {n_trials} with {jobs} worker(s); trials in {spec.out}"
    )
    if jobs == 1:
        run_worker(spec, dataset=dataset, log=log)
    else:
        run_workers(spec, jobs, log=log)
        # A worker that died leaves its trial running until its heartbeat goes stale;
        # finishing the study here retries it (and resumes its run folder).
        if spec.deadline is None or time.time() < spec.deadline:
            run_worker(spec, dataset=dataset, log=log)
    summary = summarize(study, storage_url=spec.storage)
    if evaluate_best and summary.best is not None and summary.best.run_dir:
        summary.best_test = evaluate_on_test(summary.best.run_dir, spec.base_config)
    return summary


def _display_url(url: str) -> str:
    from .storage import _safe

    return _safe(url)


def open_study(study: str, *, storage: str | None = None, out: Any = None) -> tuple[Any, str]:
    """An existing study (never created here) and its storage URL."""
    optuna = import_optuna()
    folder = Path(out) if out is not None else default_study_dir(study)
    url = storage_url(storage, folder)
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).is_file():
        raise ConfigError(
            f"{url[len('sqlite:///') :]}: no study database here (run the study first)"
        )
    try:
        return optuna.load_study(study_name=study, storage=open_storage(url)), url
    except KeyError:
        raise ConfigError(f"no study named {study!r} in {_display_url(url)}") from None


def summarize(study: str, *, storage_url: str) -> StudySummary:
    """The leaderboard of a study, best first, and the time its pruning saved."""
    optuna = import_optuna()
    loaded = optuna.load_study(study_name=study, storage=open_storage(storage_url))
    return summarize_study(loaded, storage_url)


def summarize_study(study: Any, url: str) -> StudySummary:
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.study import StudyDirection

    maximize = study.direction == StudyDirection.MAXIMIZE
    metric = study.user_attrs.get("metric", "val_acc" if maximize else "val_loss")
    rows: list[TrialRow] = []
    saved = 0.0
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        history = RetryHeartbeatStaleTrialCallback.retry_history(t)
        row = TrialRow(
            number=t.number,
            state=t.state.name,
            value=t.value if t.value is not None else _last_intermediate(t),
            params=dict(t.params),
            epochs=attrs.get("epochs_run"),
            seconds=attrs.get("seconds"),
            run_dir=attrs.get("run_dir"),
            retry_of=history[-1] if history else None,
        )
        counts[row.state] = counts.get(row.state, 0) + 1
        rows.append(row)
        planned, run, seconds = (
            attrs.get("epochs_planned"),
            attrs.get("epochs_run"),
            attrs.get("seconds"),
        )
        if t.state.name == "PRUNED" and planned and run and seconds:
            saved += (planned - run) * seconds / run
    finished = [r for r in rows if r.state == "COMPLETE" and r.value is not None]
    sign = -1.0 if maximize else 1.0

    def key(r: TrialRow) -> tuple[int, float, int]:
        order = {"COMPLETE": 0, "PRUNED": 1}.get(r.state, 2)
        score = sign * r.value if r.value is not None and math.isfinite(r.value) else math.inf
        return order, score, r.number

    rows.sort(key=key)
    best = min(finished, key=lambda r: sign * float(r.value or 0)) if finished else None
    return StudySummary(
        study=study.study_name,
        storage=url,
        metric=metric,
        rows=rows,
        best=best,
        pruned_seconds_saved=saved,
        counts=counts,
    )


def _last_intermediate(trial: Any) -> float | None:
    values = trial.intermediate_values
    return float(values[max(values)]) if values else None


def evaluate_on_test(run_dir: str, base_config: dict[str, Any]) -> dict[str, Any]:
    """The best trial's checkpoint scored on the test set (the only use of the test set)."""
    from ..evaluation.scoring import evaluate
    from ..run_folder import RunFolder

    return evaluate(
        RunFolder(Path(run_dir)).best,
        data_dir=base_config.get("data_dir"),
        device=base_config.get("device", "auto"),
    )


def format_params(params: dict[str, Any]) -> str:
    """``model.hidden.depth=2 model.hidden.1=256 ...`` shortened to ``hidden=256,128 ...``."""
    depth_keys = {k[: -len(".depth")] for k in params if k.endswith(".depth")}
    parts: list[str] = []
    for stem in sorted(depth_keys):
        depth = int(params[f"{stem}.depth"])
        widths = [str(params.get(f"{stem}.{i}", "?")) for i in range(1, depth + 1)]
        parts.append(f"{stem.removeprefix('model.')}={','.join(widths)}")
    for k, v in params.items():
        if any(k == f"{s}.depth" or k.startswith(f"{s}.") for s in depth_keys):
            continue
        text = f"{v:.3g}" if isinstance(v, float) else str(v)
        parts.append(f"{k.removeprefix('model.')}={text}")
    return " ".join(parts)


def row_score(summary: StudySummary, row: TrialRow) -> str:
    """A trial's objective as the leaderboard shows it: a percent, a loss, or "-"."""
    from ..evaluation.metrics import percent

    if row.value is None:
        return "-"
    return percent(row.value) if summary.metric == "val_acc" else f"{row.value:.4f}"


def row_state(row: TrialRow) -> str:
    """A trial's state in lower case, with the trial it retries."""
    return row.state.lower() + (f" (retry of {row.retry_of})" if row.retry_of is not None else "")


def leaderboard_lines(summary: StudySummary, limit: int = 10) -> list[str]:
    """The leaderboard as aligned text lines (trial, parameters, score, epochs, seconds, state)."""

    label = "val acc" if summary.metric == "val_acc" else "val loss"
    header = ("trial", label, "epochs", "seconds", "state", "parameters")
    table: list[tuple[str, ...]] = [header]
    for r in summary.rows[:limit]:
        score, state = row_score(summary, r), row_state(r)
        table.append(
            (
                str(r.number),
                score,
                "-" if r.epochs is None else str(r.epochs),
                "-" if r.seconds is None else f"{r.seconds:.1f}",
                state,
                format_params(r.params),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    lines = [
        "  ".join(
            cell.rjust(w) if i in (1, 2, 3) else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=False))
        )
        + "  "
        + row[-1]
        for row in table
    ]
    hidden = len(summary.rows) - limit
    if hidden > 0:
        lines.append(f"... and {hidden} more trial(s)")
    return lines


def export_best(summary: StudySummary, path: str | os.PathLike[str]) -> Path:
    """Write the best trial's training config as TOML, for ``train --config FILE``."""
    from ..fileio import atomic_write_text
    from ..run_folder import read_config

    if summary.best is None or not summary.best.run_dir:
        raise ConfigError(f"study {summary.study!r} has no complete trial to export yet")
    values = TrainConfig.from_dict(read_config(summary.best.run_dir)).to_dict()
    header = (
        f"# The best trial ({summary.best.number}) of study {summary.study!r}: "
        f"{summary.metric} {summary.best.value}\n"
        f"# Train it again with: mnist-classifier train --config {Path(path).name}\n"
    )
    target = Path(path)
    atomic_write_text(target, header + to_toml(values))
    return target


def to_toml(values: dict[str, Any]) -> str:
    """A flat config dict (with a ``model_kwargs`` table) as TOML; ``None`` values are left out."""
    lines: list[str] = []
    tables: list[str] = []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, dict):
            tables.append(f"\n[{key}]")
            tables.extend(f"{k} = {_toml_value(v)}" for k, v in value.items() if v is not None)
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines + tables) + "\n"


def _toml_value(value: Any) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write {value!r} as TOML")
