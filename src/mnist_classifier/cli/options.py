"""Flags shared by several commands, with choices and defaults taken from the library.

Each shared flag is defined here once (one help text, one meaning), and every
flag that is an enumeration gets ``choices=`` from the constant the library
validates against, so the CLI cannot drift from it. Nothing here imports torch:
``mnist-classifier --help`` stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from ..config import AUGMENTS, OPTIMIZERS, SCHEDULES, TrainConfig
from ..errors import ConfigError
from ..inference import BACKENDS
from ..runtime import DEVICE_CHOICES, check_device_name

_DEFAULTS = TrainConfig()


def _device(text: str) -> str:
    try:
        return check_device_name(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_device(parser: argparse.ArgumentParser, default: str | None = "auto") -> None:
    parser.add_argument(
        "--device",
        type=_device,
        default=default,
        metavar="{" + ",".join(DEVICE_CHOICES) + "}",
        help="where the model runs: auto (default: cuda, then mps, then cpu), cpu, cuda, "
        "cuda:N or mps",
    )


def count_of_at_least_one(flag: str) -> Callable[[str], int]:
    """An argparse ``type`` for a count such as ``--threads`` or ``--workers``: a whole
    number of at least 1, anything else a one-line usage error naming ``flag``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes a whole number, not {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{flag} must be at least 1, got {value}")
        return value

    return parse


def add_threads(parser: argparse.ArgumentParser, *, default: int | None, default_text: str) -> None:
    """``--threads N``: the CPU threads torch uses for this command's work (runtime.py's policy
    decides when it is not given)."""
    parser.add_argument(
        "--threads",
        type=count_of_at_least_one("--threads"),
        default=default,
        metavar="N",
        help=f"CPU threads torch uses for this command's work (default: {default_text})",
    )


def add_backend(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=BACKENDS[0],
        help="what runs the model: auto (default: ONNX Runtime when installed, a checkpoint "
        "exported in memory and checked against PyTorch first; else PyTorch), torch or onnx",
    )


def add_model(parser: argparse.ArgumentParser) -> None:
    """``--model RUN_OR_CHECKPOINT``: the model to use instead of the one shipped in the package."""
    from .completion import complete_path

    complete_path(
        parser.add_argument(
            "--model",
            metavar="RUN_OR_CHECKPOINT",
            default=None,
            help="run folder, .pt or .onnx (default: the model shipped in the package)",
        )
    )


def add_training_choices(opt: Any, recipes: list[str]) -> None:
    """The enumerated training flags; ``None`` defaults, so a recipe or config file shows through."""
    opt("--recipe", choices=recipes, help="named preset (see `mnist-classifier recipes`)")
    opt(
        "--optimizer",
        choices=OPTIMIZERS,
        help=f"default {_DEFAULTS.optimizer}",
    )
    opt(
        "--schedule",
        choices=SCHEDULES,
        help=f"learning-rate schedule, default {_DEFAULTS.schedule}",
    )
    opt(
        "--augment",
        choices=AUGMENTS,
        help=f"batched augmentation preset, default {_DEFAULTS.augment}",
    )


def add_model_args(opt: Any) -> None:
    """``--model-arg KEY=VALUE`` (repeatable): one argument of the chosen model."""
    opt(
        "--model-arg",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        dest="model_arg",
        help="an argument of the model, repeatable: hidden=256,128 (a list), dropout=0.1, "
        "batch_norm=true, width=24; `mnist-classifier models` lists each model's arguments",
    )


def _scalar(text: str) -> Any:
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


def parse_model_args(items: list[str] | None) -> dict[str, Any] | None:
    """``["hidden=256,128", "dropout=0.1"]`` -> ``{"hidden": [256, 128], "dropout": 0.1}``.

    A value with a comma is a list; numbers, ``true`` and ``false`` are read as such. The
    model itself checks the keys and values (one line naming the key, exit 2)."""
    if not items:
        return None
    values: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key or not key.isidentifier():
            raise ConfigError(f"--model-arg {item!r}: expected KEY=VALUE, such as dropout=0.1")
        if not text.strip():
            raise ConfigError(f"--model-arg {key}: no value given")
        if "," in text:
            parts = [p for p in text.split(",") if p.strip()]
            values[key] = [_scalar(p) for p in parts]
        else:
            values[key] = _scalar(text)
    return values


def training_default(name: str) -> Any:
    """The seed recipe's value of a TrainConfig field, for help texts."""
    return getattr(_DEFAULTS, name)


def add_quiet(parser: argparse.ArgumentParser, what: str) -> None:
    """``-q/--quiet``: only results and errors; ``what`` says what else is left out."""
    parser.add_argument(
        "-q", "--quiet", action="store_true", help=f"print only results and errors (no {what})"
    )


def add_no_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (also TQDM_DISABLE=1; bars are drawn only on a terminal or in a "
        "notebook)",
    )
