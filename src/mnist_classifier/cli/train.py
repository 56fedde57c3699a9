"""``mnist-classifier train | evaluate | models``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..run_folder import REPORT_FILE
from .completion import complete_path
from .data import add_data_dir
from .options import (
    add_device,
    add_model_args,
    add_no_progress,
    add_quiet,
    add_threads,
    add_training_choices,
    parse_model_args,
    training_default,
)

if TYPE_CHECKING:
    from ..training.run import Run


def register(subparsers: Any) -> None:
    train = subparsers.add_parser(
        "train",
        help="train a classifier into a run folder",
        description="Train a classifier. Defaults are the seed recipe; a --recipe or --config "
        "sets a starting point and flags override it.",
    )
    add_training_options(train)
    opt = train.add_argument
    opt("--out", metavar="DIR", help="run folder (default runs/<recipe-or-model>-<time>)")
    opt("--resume", metavar="RUN", help="continue an interrupted run from its last checkpoint")
    opt("--no-report", action="store_true", help=f"skip the plots and {REPORT_FILE} at the end")
    opt(
        "--tensorboard",
        nargs="?",
        const="",
        default=None,
        metavar="DIR",
        help="log losses, learning rate, metrics, hyper-parameters and the confusion matrix "
        "for TensorBoard into DIR (default RUN/tensorboard/); needs the 'tensorboard' extra",
    )
    opt(
        "--json",
        action="store_true",
        help="end with a JSON summary on stdout (run folder, checkpoint, report, metrics); "
        "the progress lines go to stderr",
    )
    add_quiet(train, "per-epoch lines or progress bar")
    add_no_progress(train)
    add_distributed(train)
    train.set_defaults(func=cmd_train)

    evaluate = subparsers.add_parser(
        "evaluate", help="test-set metrics of a run or checkpoint (a classification report)"
    )
    complete_path(evaluate.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT"))
    add_data_dir(evaluate)
    add_device(evaluate)
    add_threads(evaluate, default=None, default_text="one per core")
    evaluate.add_argument("--json", action="store_true", help="write the metrics as JSON to stdout")
    evaluate.set_defaults(func=cmd_evaluate)

    models = subparsers.add_parser(
        "models",
        help="list the registered models",
        description="List the registered models: the built-in ones and those that installed "
        "packages add through the 'mnist_classifier.models' entry point.",
    )
    models.add_argument(
        "--json",
        action="store_true",
        help="a JSON list of {name, parameters, description, arguments, provider}",
    )
    models.set_defaults(func=cmd_models)

    recipes = subparsers.add_parser("recipes", help="list the named training recipes")
    recipes.add_argument(
        "--json", action="store_true", help="a JSON list of {name, description, settings}"
    )
    recipes.set_defaults(func=cmd_recipes)


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """The flags that set training config keys (shared by ``train`` and ``tune``)."""
    from ..training.recipes import RECIPES

    d = training_default
    opt = parser.add_argument
    add_training_choices(opt, list(RECIPES))
    opt("--config", metavar="FILE", help="TOML file setting any config key")
    opt(
        "--model",
        help=f"registered model name (see `mnist-classifier models`), default {d('model')}",
    )
    add_model_args(opt)
    opt("--lr", type=float, help=f"(peak) learning rate, default {d('lr'):g}")
    opt("--weight-decay", type=float, help=f"default {d('weight_decay'):g}")
    opt("--batch-size", type=int, help=f"default {d('batch_size')}")
    opt("--epochs", type=int, help=f"default {d('epochs')}")
    opt(
        "--val-fraction",
        type=float,
        help=f"share held out for validation, default {d('val_fraction'):g}",
    )
    opt("--label-smoothing", type=float, help=f"default {d('label_smoothing'):g}")
    opt("--ema", type=float, help="decay of a weight average used for evaluation, 0 = off")
    opt(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="test-time augmentation at evaluation (--no-tta turns a recipe's off)",
    )
    opt("--patience", type=int, help="early stopping after N epochs without a better val loss")
    opt("--seed", type=int, help=f"default {d('seed')}")
    add_device(parser, default=None)
    add_threads(
        parser,
        default=None,
        default_text="1 for fully connected models on a CPU, else one per core",
    )
    opt("--limit-train", type=int, help="train on the first N training images only")
    add_data_dir(parser)


def add_distributed(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "distributed training",
        "Under torchrun (torchrun --nproc-per-node N -m mnist_classifier train ...) the "
        "processes train one model; --batch-size is the global batch, split evenly.",
    )
    group.add_argument(
        "--nproc",
        type=int,
        metavar="N",
        help="train with N processes on this machine (torch's elastic launcher, as torchrun "
        "--standalone does); ignored under torchrun",
    )
    group.add_argument(
        "--max-restarts",
        type=int,
        metavar="K",
        help="with --nproc: restart the processes up to K times after a failure; they resume "
        "the run from its last checkpoint",
    )
    group.add_argument(
        "--sync-bn",
        action="store_true",
        default=None,
        help="synchronise batch-norm statistics over all processes (CUDA only)",
    )
    group.add_argument(
        "--dist-backend",
        choices=("gloo", "nccl", "cpu:gloo,cuda:nccl"),
        help="torch.distributed backend, default gloo on the CPU, nccl for CUDA tensors",
    )


TRAIN_KEYS = (
    "model", "optimizer", "lr", "weight_decay", "batch_size", "epochs", "val_fraction",
    "schedule", "label_smoothing", "augment", "ema", "tta", "patience", "seed", "device",
    "threads", "limit_train", "data_dir", "sync_bn",
)  # fmt: skip


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_train(args: argparse.Namespace) -> int:
    from .report_process import ReportProcess

    # Forked before torch loads: it prepares the report's imports on the second core.
    torchrun = "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ
    reporter = None if args.no_report or args.nproc or torchrun else ReportProcess.start()
    try:
        return _train_and_report(args, reporter)
    finally:
        if reporter is not None:
            reporter.close()


def _train_and_report(args: argparse.Namespace, reporter: Any) -> int:
    import time

    from .. import progress_bar
    from ..errors import MnistClassifierError, TrainingInterrupted
    from ..training.api import train
    from ..training.distributed import is_main_process, launched_by_torchrun

    # -q: no per-epoch lines; --json: they go to stderr, so stdout holds the JSON alone.
    log = None if args.quiet else (_to_stderr if args.json else print)
    overrides = {key: getattr(args, key) for key in TRAIN_KEYS}
    model_args = parse_model_args(args.model_arg)
    if args.resume and (args.recipe or args.config or args.out or model_args):
        from ..errors import ConfigError

        raise ConfigError(
            "--resume takes the run's stored config; drop --recipe/--config/--out/--model-arg"
        )
    if args.max_restarts is not None and args.nproc is None and not launched_by_torchrun():
        from ..errors import ConfigError

        raise ConfigError("--max-restarts needs --nproc (torchrun has its own --max-restarts)")
    callbacks: list[Any] = [reporter.callback()] if reporter is not None else []
    if args.tensorboard is not None:  # checked before launching: one line, not one per process
        from ..training.tensorboard import TensorBoardLogger

        callbacks.append(TensorBoardLogger(args.tensorboard or None))
    if args.nproc is not None and not launched_by_torchrun():
        return _launch(args, overrides, model_args)
    try:
        with progress_bar.disabled(args.quiet or args.no_progress):
            if args.resume:
                run = train(
                    resume=args.resume,
                    log=log,
                    callbacks=callbacks,
                    dist_backend=args.dist_backend,
                    **overrides,
                )
            else:
                run = train(
                    args.config,
                    out=args.out,
                    recipe=args.recipe,
                    log=log,
                    model_args=model_args,
                    callbacks=callbacks,
                    dist_backend=args.dist_backend,
                    **overrides,
                )
    except MnistClassifierError as exc:
        # Errors every rank meets together (rank 0's checks, an agreed stop): rank 0 reports.
        agreed = getattr(exc, "shared_from_main", False) or isinstance(exc, TrainingInterrupted)
        if agreed and not is_main_process():
            return exc.exit_code
        raise
    if not is_main_process():
        return 0
    report = None
    before_report = time.perf_counter()
    if not args.no_report:
        report = reporter.write_report(run.path) if reporter is not None else None
        if report is None:  # no child, or it died: drawn here
            from ..evaluation.report import write_report

            report = write_report(run.path)
        if log is not None:
            log(f"report: {report}")
    phases = time_phases(run.metrics, time.perf_counter() - before_report)
    args.exit_when_done = True  # the run folder is complete and closed (cli.main)
    if args.json:
        print(json.dumps({**train_summary(run, report), "phases": phases}, indent=2))
    else:
        print(f"run folder: {run.path}")
        if log is not None:  # last, so that the end of the output says where the time went
            log(format_phases(phases))
    return 0


def _process_seconds() -> float | None:
    """Seconds since this process started (Linux: from /proc), or None where unknown."""
    try:
        with open("/proc/self/stat") as stat:
            started_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as uptime:
            now = float(uptime.read().split()[0])
        return max(now - started_ticks / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError):
        return None


def time_phases(metrics: dict[str, Any], report_seconds: float) -> dict[str, float | None]:
    """Where the command's wall time went: training, the final evaluation, plots and report,
    and the rest (start-up, loading the data, checkpoints), in seconds."""
    total = _process_seconds()
    training = float(metrics.get("train_seconds") or 0.0)
    final_eval = float(metrics.get("final_eval_seconds") or 0.0)
    rest = None if total is None else max(total - training - final_eval - report_seconds, 0.0)
    return {
        "training": round(training, 3),
        "final_evaluation": round(final_eval, 3),
        "plots_and_report": round(report_seconds, 3),
        "start_up_data_and_checkpoints": None if rest is None else round(rest, 3),
        "total": None if total is None else round(total, 3),
    }


def format_phases(phases: dict[str, float | None]) -> str:
    """The phase breakdown as one line."""
    text = (
        f"time: {phases['training']:.1f} s training and validation, {phases['final_evaluation']:.1f} s final "
        f"evaluation, {phases['plots_and_report']:.1f} s plots and report"
    )
    if phases["total"] is not None:
        text += (
            f", {phases['start_up_data_and_checkpoints']:.1f} s start-up, data and checkpoints;"
            f" {phases['total']:.1f} s in all"
        )
    return text


def train_summary(run: Run, report: Path | None) -> dict[str, Any]:
    """What ``train --json`` prints: where everything is, and the headline numbers."""
    metrics = run.metrics
    split_keys = ("accuracy", "loss")
    return {
        "run": str(run.path),
        "best_checkpoint": str(run.best_checkpoint),
        "last_checkpoint": str(run.last_checkpoint),
        "report": str(report) if report is not None else None,
        "model": metrics.get("model", run.config.model),
        "parameters": metrics.get("parameters"),
        "epochs_run": metrics.get("epochs_run"),
        "best_epoch": metrics.get("best_epoch"),
        "train_seconds": metrics.get("train_seconds"),
        "device": metrics.get("device"),
        "test": {k: metrics.get("test", {}).get(k) for k in split_keys},
        "val": {k: metrics.get("val", {}).get(k) for k in split_keys},
    }


def _launch(
    args: argparse.Namespace, overrides: dict[str, Any], model_args: dict[str, Any] | None
) -> int:
    """``train --nproc N``: check the config once here, then start N workers running the
    same command line (with the run folder named, so that restarted workers find it)."""
    from ..config import TrainConfig
    from ..training.configure import default_run_dir, make_config
    from ..training.distributed import check_world, launch_local

    argv = list(args.command_line)
    if args.resume:
        from ..models.checkpoint import load_checkpoint
        from ..run_folder import RunFolder

        last = RunFolder(Path(args.resume)).last
        if last.is_file():  # else the workers say there is nothing to resume
            stored = load_checkpoint(last)["config"]
            changed = {k: overrides[k] for k in ("device", "threads") if overrides[k] is not None}
            check_world(TrainConfig.from_dict(stored).updated(changed), args.nproc)
    else:
        cfg = make_config(args.config, recipe=args.recipe, model_args=model_args, **overrides)
        check_world(cfg, args.nproc)
        if not args.out:
            argv += ["--out", str(default_run_dir(cfg))]
    return launch_local(args.nproc, argv, max_restarts=args.max_restarts or 0)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..evaluation.metrics import format_split_report
    from ..evaluation.scoring import evaluate
    from ..runtime import set_threads

    set_threads(args.threads)
    result = evaluate(args.checkpoint, data_dir=args.data_dir, device=args.device)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"checkpoint: {result['checkpoint']}  model: {result['model']}  data: {result['data']}")
    print(format_split_report("test", result))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..models.registry import (
        count_parameters,
        create_model,
        describe_model,
        list_models,
        model_arguments,
        model_provider,
    )

    def arguments(name: str) -> str:
        return ", ".join(
            f"{k}={','.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
            for k, v in model_arguments(name).items()
        )

    def parameters(name: str) -> int | None:
        try:
            return count_parameters(create_model(name))
        except ConfigError as exc:  # a plugin that needs arguments, or a broken one
            print(f"warning: {exc}", file=sys.stderr)
            return None

    rows: list[dict[str, Any]] = [
        {
            "name": name,
            "parameters": parameters(name),
            "description": describe_model(name),
            "arguments": model_arguments(name),  # --model-arg keys with their defaults
            "provider": model_provider(name),  # the plugin package; null for built-in models
        }
        for name in list_models()
    ]
    bundled = _bundled_model()  # (architecture, label, test accuracy), or None
    for row in rows:  # which architecture the model shipped in the package is
        row["bundled"] = bundled[1] if bundled and bundled[0] == row["name"] else None
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    width = max(len(row["name"]) for row in rows)
    print(f"{'model':<{width}}  {'parameters':>10}  description [arguments]")
    for row in rows:
        origin = f" (from {row['provider']})" if row["provider"] else ""
        count = "-" if row["parameters"] is None else f"{row['parameters']:,}"
        print(
            f"{row['name']:<{width}}  {count:>10}  {row['description']}{origin}"
            f" [{arguments(row['name'])}]"
        )
    if bundled:
        accuracy = f", {bundled[2]:.2%} MNIST test accuracy" if bundled[2] is not None else ""
        print(f"\nused when no model is given: {bundled[1]}{accuracy}")
    return 0


def _bundled_model() -> tuple[str, str, float | None] | None:
    """The shipped model's architecture, label and test accuracy (None if it is missing)."""
    from ..bundled import BUNDLED_PT, bundled_label
    from ..errors import CheckpointError
    from ..models.checkpoint import load_checkpoint

    try:
        ckpt = load_checkpoint(BUNDLED_PT)
    except CheckpointError:
        return None
    name = str(ckpt["model"]["name"])
    test = (ckpt.get("metrics") or {}).get("test") or {}
    accuracy = test.get("accuracy") if isinstance(test, dict) else None
    label = bundled_label((ckpt.get("config") or {}).get("recipe"), name)
    return name, label, float(accuracy) if isinstance(accuracy, int | float) else None


def cmd_recipes(args: argparse.Namespace) -> int:
    from ..training.recipes import RECIPES

    if args.json:
        rows = [
            {"name": name, "description": description, "settings": dict(settings)}
            for name, (description, settings) in RECIPES.items()
        ]
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(n) for n in RECIPES)
    for name, (description, _) in RECIPES.items():
        print(f"{name:<{width}}  {description}")
    return 0
