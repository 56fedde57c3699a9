"""``mnist-classifier calibrate``: fit a run's temperature on its validation split, post hoc."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .completion import complete_path
from .data import add_data_dir
from .options import add_device, add_threads


def register(subparsers: Any) -> None:
    calibrate = subparsers.add_parser(
        "calibrate",
        help="fit the temperature of a run or checkpoint on its validation split",
        description="Temperature scaling after the fact: fit the one number that the logits "
        "are divided by on the validation split the checkpoint was trained with (its seed and "
        "validation fraction), store it in the checkpoint, and bring the run's metrics.json, "
        "predictions, plots and report up to date. Answers and accuracy do not change; "
        "probabilities (and so --min-confidence) do. The test set only reports the expected "
        "calibration error before and after. Training already does this for new runs.",
    )
    complete_path(calibrate.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT"))
    add_data_dir(calibrate)
    add_device(calibrate)
    add_threads(calibrate, default=None, default_text="one per core")
    calibrate.add_argument(
        "--json", action="store_true", help="write the temperature and the ECE as JSON to stdout"
    )
    calibrate.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from ..evaluation.calibration import calibrate_checkpoint
    from ..runtime import set_threads

    set_threads(args.threads)
    result = calibrate_checkpoint(
        args.checkpoint,
        data_dir=args.data_dir,
        device=args.device,
        log=None if args.json else print,
    )
    if args.json:
        shown = {
            "checkpoint": str(result.checkpoint),
            "temperature": result.temperature,
            **{
                split: {k: result.metrics[split][k] for k in ("ece", "ece_uncalibrated", "loss")}
                for split in ("val", "test")
            },
            "written": [str(p) for p in result.written],
        }
        print(json.dumps(shown, indent=2))
        return 0
    print(result.summary())
    return 0
