"""Flags shared by several commands, with choices and defaults taken from the library.

Each shared flag is defined here once (one help text, one meaning), and every
flag that is an enumeration gets ``choices=`` from the constant the library
validates against, so the CLI cannot drift from it. Nothing here imports torch:
``mnist-classifier --help`` stays fast.
"""

from __future__ import annotations

import argparse
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


def _threads(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--threads takes a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"--threads must be at least 1, got {value}")
    return value


def add_threads(parser: argparse.ArgumentParser, *, default: int | None, default_text: str) -> None:
    """``--threads N``: the CPU threads torch uses for this command's work (runtime.py's policy
    decides when it is not given)."""
    parser.add_argument(
        "--threads",
        type=_threads,
        default=default,
        metavar="N",
        help=f"CPU threads torch uses for this command's work (default: {default_text})",
    )


def add_backend(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="run the model with PyTorch (default) or ONNX Runtime",
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
