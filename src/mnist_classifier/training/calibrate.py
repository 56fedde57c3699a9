"""The end of a run: the best checkpoint's temperature, fitted on validation, and its scores.

:func:`calibrate_final` is what :meth:`Trainer.finish <.loop.Trainer.finish>` calls once
the best checkpoint has been scored on validation at temperature 1: rank 0 fits
the temperature on the validation split (:mod:`mnist_classifier.evaluation.calibration`),
every rank gets it, and the test split is scored through the deployed model at that
temperature. The other set of probabilities of each split is derived (without test-time
augmentation a rescaling of the log-probabilities, exact up to rounding; with it, one more
pass through the deployed model). Accuracy does not change; the loss becomes the
calibrated NLL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.batches import Split
from ..evaluation import calibration
from ..evaluation.scoring import loss_and_accuracy, predict_view_logits
from ..models.deployed import DeployedModel
from . import distributed
from .distributed import DistContext


@dataclass
class FinalScores:
    """The calibrated scores of the best checkpoint (see :func:`calibrate_final`)."""

    temperature: float
    val: dict[str, Any]  # metrics blocks with ece / ece_uncalibrated / loss_uncalibrated
    test: dict[str, Any] | None
    test_probs: Any  # calibrated test probabilities (N, 10) float32 numpy, or None
    block: dict[str, Any] | None  # metrics.json's "calibration" entry (needs the test set)
    checkpoint_details: dict[str, Any]  # stored beside the temperature in the checkpoint


def calibrate_final(
    ctx: DistContext,
    model: nn.Module,
    mean: float,
    std: float,
    batch_size: int,
    tta: bool,
    val: tuple[Split, torch.Tensor, float],
    test: Split | None,
) -> FinalScores:
    """Fit the temperature on ``val`` = (split, log-probabilities at T = 1, loss), then score
    ``val`` and the ``test`` split (or None) calibrated.

    The test split is scored through the deployed model at the fitted temperature, so its
    stored metrics are what ``evaluate`` and ``predict`` give, to the last bit; its
    uncalibrated probabilities (for the ECE before) are derived from those without
    test-time augmentation, and scored once more with it."""
    val_split, val_lp, val_loss = val

    def fit() -> float:
        if tta:  # the views' own logits: log of averaged probabilities is not one softmax
            deployed = DeployedModel(model, mean, std, tta).to(val_split.images.device)
            logits = predict_view_logits(deployed, val_split.images, batch_size=batch_size)
        else:  # log-softmax differs from the logits by a shift per row: the same fit
            logits = val_lp
        return calibration.fit_temperature(logits, val_split.labels.cpu())

    temperature = float(ctx.run_on_main(fit))

    def rescored(split: Split, log_probs: torch.Tensor, from_t: float, to_t: float) -> torch.Tensor:
        """``log_probs`` of ``split`` at temperature ``from_t``, brought to ``to_t``."""
        if from_t == to_t:
            return log_probs
        if not tta:  # log_softmax(z / a) * a / b == z / b up to a shift per row
            return F.log_softmax(log_probs * (from_t / to_t), dim=1)
        return distributed.evaluate_split(ctx, model, split, mean, std, batch_size, tta, to_t)[2]

    def scores(
        split: Split, before: torch.Tensor, after: torch.Tensor
    ) -> tuple[dict[str, Any], Any]:
        labels = split.labels.cpu()
        probs = after.exp().numpy()
        block = calibration.calibrated_split_metrics(
            labels.numpy(),
            before.exp().numpy(),
            probs,
            loss_and_accuracy(before, labels)[0],
            loss_and_accuracy(after, labels)[0],
        )
        return block, probs

    val_block, _ = scores(val_split, val_lp, rescored(val_split, val_lp, 1.0, temperature))
    details = {
        "fitted_on": "validation",
        "val_nll_uncalibrated": float(val_loss),
        "val_nll": float(val_block["loss"]),
    }
    if test is None:
        return FinalScores(temperature, val_block, None, None, None, details)
    test_lp = distributed.evaluate_split(ctx, model, test, mean, std, batch_size, tta, temperature)[
        2
    ]
    test_block, test_probs = scores(test, rescored(test, test_lp, temperature, 1.0), test_lp)
    summary = calibration.calibration_block(
        temperature,
        (val_loss, float(val_block["loss"])),
        test.labels.cpu().numpy(),
        rescored(test, test_lp, temperature, 1.0).exp().numpy(),
        test_probs,
    )
    return FinalScores(temperature, val_block, test_block, test_probs, summary, details)
