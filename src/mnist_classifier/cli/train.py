"""``mnist-classifier train | evaluate | models``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..run_folder import REPORT_FILE
from .data import add_data_dir
from .options import add_device, add_threads, add_training_choices, training_default


def register(subparsers: Any) -> None:
    train = subparsers.add_parser(
        "train",
        help="train a classifier into a run folder",
        description="Train a classifier. Defaults are the seed recipe; a --recipe or --config "
        "sets a starting point and flags override it.",
    )
    from ..training.recipes import RECIPES

    d = training_default
    opt = train.add_argument
    add_training_choices(opt, list(RECIPES))
    opt("--config", metavar="FILE", help="TOML file setting any config key")
    opt(
        "--model",
        help=f"registered model name (see `mnist-classifier models`), default {d('model')}",
    )
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
    add_device(train, default=None)
    add_threads(
        train, default=None, default_text="1 for fully connected models on a CPU, else one per core"
    )
    opt("--limit-train", type=int, help="train on the first N training images only")
    opt("--out", metavar="DIR", help="run folder (default runs/<recipe-or-model>-<time>)")
    opt("--resume", metavar="RUN", help="continue an interrupted run from its last checkpoint")
    opt("--no-report", action="store_true", help=f"skip the plots and {REPORT_FILE} at the end")
    add_data_dir(train)
    add_distributed(train)
    train.set_defaults(func=cmd_train)

    evaluate = subparsers.add_parser(
        "evaluate", help="test-set metrics of a run or checkpoint (a classification report)"
    )
    evaluate.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT")
    add_data_dir(evaluate)
    add_device(evaluate)
    add_threads(evaluate, default=None, default_text="one per core")
    evaluate.add_argument("--json", action="store_true", help="write the metrics as JSON to stdout")
    evaluate.set_defaults(func=cmd_evaluate)

    models = subparsers.add_parser("models", help="list the registered models")
    models.set_defaults(func=cmd_models)

    recipes = subparsers.add_parser("recipes", help="list the named training recipes")
    recipes.set_defaults(func=cmd_recipes)


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


def cmd_train(args: argparse.Namespace) -> int:
    from ..errors import MnistClassifierError, TrainingInterrupted
    from ..training.api import train
    from ..training.distributed import is_main_process, launched_by_torchrun

    overrides = {key: getattr(args, key) for key in TRAIN_KEYS}
    if args.resume and (args.recipe or args.config or args.out):
        from ..errors import ConfigError

        raise ConfigError("--resume takes the run's stored config; drop --recipe/--config/--out")
    if args.nproc is not None and not launched_by_torchrun():
        return _launch(args, overrides)
    try:
        if args.resume:
            run = train(resume=args.resume, dist_backend=args.dist_backend, **overrides)
        else:
            run = train(
                args.config,
                out=args.out,
                recipe=args.recipe,
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
    if not args.no_report:
        from ..evaluation.report import write_report

        print(f"report: {write_report(run.path)}")
    print(f"run folder: {run.path}")
    return 0


def _launch(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
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
        cfg = make_config(args.config, recipe=args.recipe, **overrides)
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
    from ..models.registry import count_parameters, create_model, describe_model, list_models

    names = list_models()
    width = max(len(n) for n in names)
    print(f"{'model':<{width}}  {'parameters':>10}  description")
    for name in names:
        params = count_parameters(create_model(name))
        print(f"{name:<{width}}  {params:>10,}  {describe_model(name)}")
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    from ..training.recipes import RECIPES

    width = max(len(n) for n in RECIPES)
    for name, (description, _) in RECIPES.items():
        print(f"{name:<{width}}  {description}")
    return 0
