"""``mnist-classifier tune``: hyper-parameter studies (Optuna), their leaderboard, report and export."""

from __future__ import annotations

import argparse
from typing import Any

from .train import TRAIN_KEYS, add_training_options

PRUNER_CHOICES = ("median", "hyperband", "none")  # tuning/worker.py: PRUNERS
METRIC_CHOICES = ("val_acc", "val_loss")  # tuning/worker.py: METRICS
SPACE_PRESETS = ("mlp-architecture", "cnn")  # tuning/space.py: PRESETS


def register(subparsers: Any) -> None:
    tune = subparsers.add_parser(
        "tune",
        help="search hyper-parameters and architectures: a study of many runs (Optuna)",
        description="Run or continue a study: each trial is a run folder DIR/trial-NNNN/ "
        "trained with the settings drawn from the search space and scored on the validation "
        "split; the best trial is scored on the test set once, at the end. Training flags "
        "fix every setting the space does not search. Starting the same command again (here "
        "or on another machine sharing --storage) adds workers to the same study. Needs the "
        "'tune' extra.",
    )
    opt = tune.add_argument
    opt("--study", required=True, metavar="NAME", help="the study's name (created if new)")
    opt(
        "--storage",
        metavar="URL",
        help="SQLAlchemy URL of the study database, e.g. postgresql://user:pw@host/db "
        "(default: the SQLite file DIR/study.db)",
    )
    opt(
        "--space",
        default="mlp-architecture",
        metavar="FILE|PRESET",
        help=f"search space: a TOML file or a preset ({', '.join(SPACE_PRESETS)}); "
        "default mlp-architecture",
    )
    opt(
        "--n-trials",
        type=int,
        metavar="N",
        help="finished trials the study should hold (default 20)",
    )
    opt("--timeout", type=float, metavar="S", help="start no trial after S seconds")
    opt("--jobs", type=int, default=1, metavar="K", help="worker processes on this machine")
    opt("--pruner", choices=PRUNER_CHOICES, default="median", help="stop poor trials early")
    opt(
        "--metric",
        choices=METRIC_CHOICES,
        default="val_acc",
        help="the objective (validation accuracy, maximised, or loss, minimised)",
    )
    opt("--out", metavar="DIR", help="the study folder (default studies/NAME)")
    opt(
        "--heartbeat",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds between a running trial's heartbeats; a trial silent for twice this "
        "is failed and retried, resuming its run folder (default 30)",
    )
    opt(
        "--report",
        nargs="?",
        const="",
        default=None,
        metavar="FILE",
        help="write the study's HTML page (default DIR/study.html)",
    )
    opt("--export-best", metavar="FILE", help="write the best trial's config as TOML")
    opt("--quiet-trials", action="store_true", help="no per-epoch lines from the trials")
    opt(
        "--tensorboard",
        action="store_true",
        help="log every trial for TensorBoard into its run folder (the 'tensorboard' extra)",
    )
    add_training_options(tune)
    tune.set_defaults(func=cmd_tune)


def _base_config(args: argparse.Namespace) -> Any:
    from ..training.configure import make_config
    from .options import parse_model_args

    overrides = {key: getattr(args, key, None) for key in TRAIN_KEYS}  # no --sync-bn here
    return make_config(
        args.config, recipe=args.recipe, model_args=parse_model_args(args.model_arg), **overrides
    )


def cmd_tune(args: argparse.Namespace) -> int:
    from ..evaluation.metrics import percent
    from ..tuning.space import load_space
    from ..tuning.storage import import_optuna
    from ..tuning.study import (
        DEFAULT_N_TRIALS,
        export_best,
        leaderboard_lines,
        open_study,
        summarize_study,
        tune,
    )

    import_optuna()  # the extra's one-line message before anything else
    if args.tensorboard:
        from ..training.tensorboard import check_tensorboard

        check_tensorboard()
    only_outputs = args.n_trials is None and (args.report is not None or args.export_best)
    if only_outputs:
        study, url = open_study(args.study, storage=args.storage, out=args.out)
        summary = summarize_study(study, url)
        summary.best_test = None
    else:
        load_space(args.space)
        summary = tune(
            args.study,
            base_config=_base_config(args),
            storage=args.storage,
            space=args.space,
            n_trials=args.n_trials if args.n_trials is not None else DEFAULT_N_TRIALS,
            timeout=args.timeout,
            jobs=args.jobs,
            pruner=args.pruner,
            metric=args.metric,
            out=args.out,
            heartbeat=args.heartbeat,
            quiet_trials=args.quiet_trials,
            tensorboard=args.tensorboard,
        )
    print()
    for line in leaderboard_lines(summary):
        print(line)
    counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(summary.counts.items()))
    print(f"trials: {counts or 'none'}")
    if summary.counts.get("PRUNED"):
        print(f"pruning saved about {summary.pruned_seconds_saved:.0f}s of training")
    if summary.best is not None:
        line = f"best: trial {summary.best.number} ({summary.best.run_dir})"
        if summary.best_test is not None:
            line += f", test accuracy {percent(summary.best_test['accuracy'])}"
        print(line)
    if args.report is not None:
        from pathlib import Path

        from ..tuning.report import write_study_report

        target = Path(args.report) if args.report else None
        study, _ = open_study(args.study, storage=args.storage, out=args.out)
        written = write_study_report(study, summary, study_dir=args.out, path=target)
        print(f"report: {written}")
    if args.export_best:
        print(f"best config: {export_best(summary, args.export_best)}")
    return 0
