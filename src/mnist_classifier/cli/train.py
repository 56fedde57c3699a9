"""``mnist-classifier train | evaluate | models``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .data import add_data_dir


def register(subparsers: Any) -> None:
    train = subparsers.add_parser(
        "train",
        help="train a classifier into a run folder",
        description="Train a classifier. Defaults are the seed recipe; a --recipe or --config "
        "sets a starting point and flags override it.",
    )
    opt = train.add_argument
    opt("--recipe", help="named preset (see `mnist-classifier recipes`)")
    opt("--config", metavar="FILE", help="TOML file setting any config key")
    opt("--model", help="registered model name (see `mnist-classifier models`)")
    opt("--optimizer", help="adam (default), adamw or sgd")
    opt("--lr", type=float, help="(peak) learning rate, default 1e-3")
    opt("--weight-decay", type=float, help="default 1e-4")
    opt("--batch-size", type=int, help="default 32")
    opt("--epochs", type=int, help="default 10")
    opt("--val-fraction", type=float, help="share held out for validation, default 0.2")
    opt("--schedule", help="learning-rate schedule: none (default), onecycle, cosine")
    opt("--label-smoothing", type=float, help="default 0")
    opt("--augment", help="none (default), shift, light, strong")
    opt("--ema", type=float, help="decay of a weight average used for evaluation, 0 = off")
    opt(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="test-time augmentation at evaluation (--no-tta turns a recipe's off)",
    )
    opt("--patience", type=int, help="early stopping after N epochs without a better val loss")
    opt("--seed", type=int, help="default 0")
    opt("--device", help="auto (default: cuda, then mps, then cpu), cpu, cuda, mps")
    opt("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    opt("--limit-train", type=int, help="train on the first N training images only")
    opt("--out", metavar="DIR", help="run folder (default runs/<recipe-or-model>-<time>)")
    opt("--resume", metavar="RUN", help="continue an interrupted run from its last checkpoint")
    opt("--no-report", action="store_true", help="skip plots and report.html at the end")
    add_data_dir(train)
    train.set_defaults(func=cmd_train)

    evaluate = subparsers.add_parser(
        "evaluate", help="test-set metrics of a run or checkpoint (a classification report)"
    )
    evaluate.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT")
    add_data_dir(evaluate)
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--json", action="store_true", help="write the metrics as JSON to stdout")
    evaluate.set_defaults(func=cmd_evaluate)

    models = subparsers.add_parser("models", help="list the registered models")
    models.set_defaults(func=cmd_models)

    recipes = subparsers.add_parser("recipes", help="list the named training recipes")
    recipes.set_defaults(func=cmd_recipes)


TRAIN_KEYS = (
    "model", "optimizer", "lr", "weight_decay", "batch_size", "epochs", "val_fraction",
    "schedule", "label_smoothing", "augment", "ema", "tta", "patience", "seed", "device",
    "threads", "limit_train", "data_dir",
)  # fmt: skip


def cmd_train(args: argparse.Namespace) -> int:
    from ..training.api import train

    overrides = {key: getattr(args, key) for key in TRAIN_KEYS}
    if args.resume:
        if args.recipe or args.config or args.out:
            from ..errors import ConfigError

            raise ConfigError(
                "--resume takes the run's stored config; drop --recipe/--config/--out"
            )
        run = train(resume=args.resume, **overrides)
    else:
        run = train(args.config, out=args.out, recipe=args.recipe, **overrides)
    if not args.no_report:
        from ..evaluation.report import write_report

        print(f"report: {write_report(run.path)}")
    print(f"run folder: {run.path}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..evaluation.metrics import format_split_report
    from ..training.api import evaluate

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
